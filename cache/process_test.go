package cache

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

const helperEnv = "BROKERFS_CACHE_HELPER"

// churnFiles are the files of churn key i: deterministic, so any process can check them.
func churnFiles(i int) map[string]int {
	return map[string]int{"a.npy": 1000 + (i*7919)%60000, "b.csv": (i * 104729) % 9000}
}

const (
	sparseUnits = 64
	sparseUnit  = 4096
)

// TestHelperProcess is not a test: it is the other process of the multi-process tests, run by
// startHelper as a re-executed test binary.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("the other process of multi-process tests")
	}
	dir := os.Getenv("CACHE_DIR")
	ready := os.Getenv("CACHE_READY")
	max, _ := strconv.ParseInt(os.Getenv("CACHE_MAX"), 10, 64)
	s, err := Open(Options{Dir: dir, MaxBytes: max, holdSync: os.Getenv("CACHE_HOLD_SYNC") != ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	signal := func(what string) { os.WriteFile(ready+"."+what, nil, 0o600) }
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	switch mode {
	case "load":
		signal("started")
		if err := buildLoad(s, os.Getenv("CACHE_PREFIX"), 15, 48<<10, 99); err != nil {
			fail(err)
		}
		if err := s.Close(); err != nil {
			fail(err)
		}
		os.Exit(0)
	case "unsynced":
		// Entries committed and never synced, then killed: a crash before the background sync.
		for k := range 6 {
			if _, err := build(s, fmt.Sprintf("u-%d", k), churnFiles(k)); err != nil {
				fail(err)
			}
		}
		signal("committed")
		select {}
	case "hang":
		b, err := s.Build("hung")
		if err != nil {
			fail(err)
		}
		f, _ := b.Create("a")
		if err := b.Reserve(1 << 20); err != nil {
			fail(err)
		}
		f.Write(make([]byte, 512<<10))
		signal("writing")
		select {}
	case "churn":
		for i := 0; ; i++ {
			k := i % 20
			if _, err := build(s, fmt.Sprintf("churn-%d", k), churnFiles(k)); err != nil {
				fail(err)
			}
			if i%7 == 3 {
				s.Remove(fmt.Sprintf("churn-%d", (k+5)%20))
			}
			if i == 0 {
				signal("committed")
			}
		}
	case "sparse":
		sp, err := s.OpenSparse("frames", []byte("hdr"), sparseUnits, sparseUnit)
		if err != nil {
			fail(err)
		}
		for u := range 16 {
			if err := sp.Fill(u, unitData(u, sparseUnit)); err != nil {
				fail(err)
			}
		}
		if err := sp.Sync(); err != nil {
			fail(err)
		}
		signal("synced")
		for u := 16; u < sparseUnits; u++ {
			if err := sp.Fill(u, unitData(u, sparseUnit)); err != nil {
				fail(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		select {}
	}
	fail(fmt.Errorf("unknown mode %q", mode))
}

type helper struct {
	cmd   *exec.Cmd
	ready string
	out   *bytes.Buffer
	done  chan error
}

// startHelper runs TestHelperProcess in mode in a child process on dir.
func startHelper(t *testing.T, mode, dir string, max int64, env ...string) *helper {
	t.Helper()
	h := &helper{ready: filepath.Join(t.TempDir(), "ready"), out: &bytes.Buffer{}, done: make(chan error, 1)}
	h.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	h.cmd.Env = append(os.Environ(), helperEnv+"="+mode, "CACHE_DIR="+dir, "CACHE_READY="+h.ready,
		"CACHE_MAX="+strconv.FormatInt(max, 10))
	h.cmd.Env = append(h.cmd.Env, env...)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		<-h.done
		if t.Failed() {
			t.Logf("helper %s output:\n%s", mode, h.out)
		}
		h.done <- nil
	})
	return h
}

// await waits for the helper's signal what.
func (h *helper) await(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(h.ready + "." + what); err == nil {
			return
		}
		select {
		case err := <-h.done:
			h.done <- err
			t.Fatalf("helper exited (%v) before %s:\n%s", err, what, h.out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("helper did not signal %s:\n%s", what, h.out)
}

// kill9 kills the helper with SIGKILL and waits for it.
func (h *helper) kill9(t *testing.T) {
	t.Helper()
	h.cmd.Process.Kill()
	<-h.done
	h.done <- nil
}

func TestCapAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	const max = 200 << 10
	s := openStore(t, Options{Dir: dir, MaxBytes: max})
	stop := make(chan struct{})
	peak := watchCap(t, dir, stop)
	h := startHelper(t, "load", dir, max, "CACHE_PREFIX=child")
	h.await(t, "started")
	var wg sync.WaitGroup
	var perr error
	wg.Go(func() { perr = buildLoad(s, "parent", 15, 48<<10, 7) })
	wg.Wait()
	err := <-h.done
	h.done <- err
	close(stop)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, h.out)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	p := <-peak
	st := s.Stats()
	t.Logf("peak %d of %d; %+v", p, max, st)
	if p > max || st.Bytes > max {
		t.Fatalf("disk use reached %d bytes, cap %d", p, max)
	}
	if got := diskUsage(dir); got != st.Bytes || st.Reserved != 0 {
		t.Fatalf("index %+v, disk %d", st, got)
	}
}

func TestKilledBuilderIsCleanedUp(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, MaxBytes: 1<<20 + 1000})
	h := startHelper(t, "hang", dir, 0)
	h.await(t, "writing")
	b, _ := s.Build("mine")
	if err := b.Reserve(100 << 10); err != ErrFull && !isFull(err) {
		t.Fatalf("Reserve while a live process holds the space: %v, want ErrFull", err)
	}
	if n := len(builderDirs(t, dir)); n != 2 {
		t.Fatalf("%d builder dirs, want the child's and ours", n)
	}
	h.kill9(t)
	// The dead process's reservation is swept when a reservation would otherwise fail.
	if err := b.Reserve(100 << 10); err != nil {
		t.Fatalf("Reserve after the holder died: %v", err)
	}
	if d := builderDirs(t, dir); len(d) != 1 {
		t.Fatalf("builder dirs after the sweep: %v, want only ours", d)
	}
	b.Abort()
	if d := builderDirs(t, dir); len(d) != 0 {
		t.Fatalf("builder dirs left: %v", d)
	}
	if st := s.Stats(); st.Reserved != 0 || st.Entries != 0 {
		t.Fatalf("Stats %+v", st)
	}
	if _, err := s.Lookup("hung"); !isMiss(err) {
		t.Fatalf("Lookup of the killed build: %v", err)
	}
	if locks := listDir(t, dir, tmpDir); len(locks) != 1 {
		t.Fatalf("tmp/ holds %v, want only our lock file", locks)
	}
}

func TestKilledMidCommitNeverServesTorn(t *testing.T) {
	dir := t.TempDir()
	for round := range 4 {
		h := startHelper(t, "churn", dir, 400<<10)
		h.await(t, "committed")
		time.Sleep(time.Duration(50+round*120) * time.Millisecond)
		h.kill9(t)

		s, err := Open(Options{Dir: dir, MaxBytes: 400 << 10, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		hits := 0
		for k := range 20 {
			e, err := s.Lookup(fmt.Sprintf("churn-%d", k))
			if isMiss(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			checkEntry(t, e, churnFiles(k))
			hits++
		}
		st := s.Stats()
		t.Logf("round %d: %d entries served, %+v", round, hits, st)
		if hits == 0 {
			t.Fatal("no entry survived: the test proves nothing")
		}
		if d := builderDirs(t, dir); len(d) != 0 {
			t.Fatalf("builder dirs of the dead process left: %v", d)
		}
		if n := len(listDir(t, dir, trashDir)); n != 0 {
			t.Fatalf("trash left: %d", n)
		}
		if got := diskUsage(dir); got != st.Bytes || st.Reserved != 0 {
			t.Fatalf("index %+v, disk %d", st, got)
		}
		s.Close()
	}
}

func TestKilledSparseKeepsOnlyDurableMarks(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "sparse", dir, 0)
	h.await(t, "synced")
	time.Sleep(100 * time.Millisecond)
	h.kill9(t)
	s := openStore(t, Options{Dir: dir})
	sp, err := s.OpenSparse("frames", []byte("hdr"), sparseUnits, sparseUnit)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	marked := 0
	for u := range sparseUnits {
		if !sp.Filled(u) {
			if u < 16 {
				t.Fatalf("unit %d was synced but is not marked", u)
			}
			continue
		}
		marked++
		got := make([]byte, sparseUnit)
		if _, err := sp.File().ReadAt(got, 3+int64(u)*sparseUnit); err != nil || !bytes.Equal(got, unitData(u, sparseUnit)) {
			t.Fatalf("unit %d is marked but its data is wrong (%v)", u, err)
		}
	}
	t.Logf("%d units marked after the kill", marked)
	// The rest can be filled.
	for u := range sparseUnits {
		if err := sp.Fill(u, unitData(u, sparseUnit)); err != nil {
			t.Fatal(err)
		}
	}
	if !sp.Complete() {
		t.Fatal("not complete")
	}
}

// Opening a Store sweeps only dead processes' leftovers, never a live Store's builder.
func TestOpenKeepsLiveBuilders(t *testing.T) {
	dir := t.TempDir()
	a := openStore(t, Options{Dir: dir, MaxBytes: 1 << 20})
	b, err := a.Build("k")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := b.Create("a")
	b.Reserve(1000)
	f.Write(content("k", "a", 1000))
	for range 2 {
		other := openStore(t, Options{Dir: dir, MaxBytes: 1 << 20})
		if err := other.Clear(); err != nil {
			t.Fatal(err)
		}
		if st := other.Stats(); st.Reserved != 1000 {
			t.Fatalf("a live builder's reservation was swept: %+v", st)
		}
		other.Close()
	}
	e, err := b.Commit([]byte("meta:k"))
	if err != nil {
		t.Fatalf("Commit after others opened the dir: %v", err)
	}
	checkEntry(t, e, map[string]int{"a": 1000})
}
