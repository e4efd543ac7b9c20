package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
)

// TestListingIndexKill: the first listing of a large catalog (1200 runs: heads read in
// batches, the listing index written a second after the listing was served) survives brokerfs
// dying by SIGKILL before the index is written and while it is being written: every next
// mount on the same cache directory lists exactly the runs the directory holds, also after
// the directory changed between a kill and the next mount (one run file removed, one added),
// and a run listed opens. The expected names are the uids the test wrote.
func TestListingIndexKill(t *testing.T) {
	t.Parallel()
	src, cache := t.TempDir(), t.TempDir()
	const n = 1200
	want := map[string]bool{}
	write := func(i int) string {
		uid := fmt.Sprintf("kill%05d", i)
		docs := []catalog.Document{
			{Name: "start", Doc: map[string]any{"uid": uid, "time": 1700000000.0 + float64(i), "scan_id": int64(i + 1), "plan_name": "count"}},
			{Name: "stop", Doc: map[string]any{"uid": uid + "-stop", "run_start": uid, "time": 1700000000.5 + float64(i), "exit_status": "success", "num_events": map[string]any{}}},
		}
		path := filepath.Join(src, uid+".msgpack")
		if err := msgpack.WriteRun(path, docs); err != nil {
			t.Fatal(err)
		}
		want[uid] = true
		return path
	}
	for i := range n {
		write(i)
	}
	check := func(what, mnt string) {
		t.Helper()
		ents, err := os.ReadDir(mnt)
		if err != nil {
			t.Fatalf("%s: ls: %v", what, err)
		}
		var got, missing []string
		for _, e := range ents {
			if e.Name() == "by-scan-id" || e.Name() == "latest" {
				continue
			}
			got = append(got, e.Name())
			if !want[e.Name()] {
				t.Errorf("%s: %s listed, but no file holds it", what, e.Name())
			}
		}
		for uid := range want {
			if !slices.Contains(got, uid) {
				missing = append(missing, uid)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			t.Errorf("%s: %d runs of %d missing, e.g. %s", what, len(missing), len(want), missing[0])
		}
	}
	wal := filepath.Join(cache, "listing.sqlite-wal")
	size := func() int64 {
		fi, err := os.Stat(wal)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	kill := func(s *server) {
		t.Helper()
		s.checked = true
		if !s.kill() {
			t.FailNow()
		}
		detach(s.mnt)
	}

	// Killed right after the first listing was served: nothing written yet.
	s := startServer(t, src, "--cache-dir", cache)
	check("first mount", s.mnt)
	kill(s)

	// Killed while the index is being written (as soon as the write-ahead log grows), a few
	// times, each mount starting from what the last one left.
	for try := range 3 {
		s := startServer(t, src, "--cache-dir", cache)
		check(fmt.Sprintf("mount %d after a kill", try+2), s.mnt)
		before := size()
		deadline := time.Now().Add(10 * time.Second)
		for size() == before && time.Now().Before(deadline) {
			time.Sleep(200 * time.Microsecond)
		}
		kill(s)
		t.Logf("try %d: killed with the write-ahead log at %d bytes (%d before)", try, size(), before)
	}

	// The directory changes while no brokerfs runs: one run goes, one comes.
	gone := filepath.Join(src, "kill00007.msgpack")
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	delete(want, "kill00007")
	write(n)
	s = startServer(t, src, "--cache-dir", cache)
	check("mount after the directory changed", s.mnt)
	if b, err := os.ReadFile(filepath.Join(s.mnt, fmt.Sprintf("kill%05d", n), "start.json")); err != nil || !strings.Contains(string(b), `"plan_name"`) {
		t.Errorf("the new run's start.json: %v %q", err, b)
	}
	s.stop(syscall.SIGTERM)

	// A clean unmount writes the index; the next mount lists from it, still right.
	s = startServer(t, src, "--cache-dir", cache)
	check("remount from a complete index", s.mnt)
	s.stop(syscall.SIGTERM)
}
