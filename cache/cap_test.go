package cache

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestCapSmallerThanOneEntry(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir(), MaxBytes: 10000})
	mustBuild(t, s, "small", map[string]int{"a": 1000})
	b, err := s.Build("big")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reserve(20000); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve beyond the cap: %v, want ErrFull", err)
	}
	b.Abort()
	if _, err := s.Lookup("small"); err != nil {
		t.Fatalf("a hopeless reservation evicted an entry: %v", err)
	}
	// Writing without reserving: Commit reserves what was written, and fails.
	b, _ = s.Build("big")
	f, _ := b.Create("a")
	f.Write(make([]byte, 20000))
	if _, err := b.Commit(nil); !errors.Is(err, ErrFull) {
		t.Fatalf("Commit beyond the cap: %v, want ErrFull", err)
	}
	if d := builderDirs(t, s.Dir()); len(d) != 0 {
		t.Fatalf("temp dirs left: %v", d)
	}
	if _, err := s.Lookup("big"); !isMiss(err) {
		t.Fatalf("Lookup: %v", err)
	}
	if st := s.Stats(); st.Reserved != 0 || st.Entries != 1 {
		t.Fatalf("Stats %+v", st)
	}
	// The manifest counts: an entry whose data alone fits exactly does not.
	if _, err := build(s, "exact", map[string]int{"a": 10000}); !errors.Is(err, ErrFull) {
		t.Fatalf("data filling the whole cap, plus a manifest: %v, want ErrFull", err)
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	clk := newClock()
	s := openStore(t, Options{Dir: t.TempDir(), MaxBytes: 3 * 4500, Now: clk.Now})
	files := map[string]int{"a": 4000}
	for _, k := range []string{"k1", "k2", "k3"} {
		mustBuild(t, s, k, files)
		clk.Add(time.Minute)
	}
	if _, err := s.Lookup("k1"); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	mustBuild(t, s, "k4", files)
	for k, want := range map[string]bool{"k1": true, "k2": false, "k3": true, "k4": true} {
		_, err := s.Lookup(k)
		if got := err == nil; got != want {
			t.Errorf("%s present %v, want %v (%v)", k, got, want, err)
		}
	}
	if ev := s.Stats().Evictions; ev != 1 {
		t.Fatalf("%d evictions, want 1", ev)
	}
}

// buildLoad builds n entries of random sizes under prefix, ignoring ErrFull, and returns the first
// other error.
func buildLoad(s *Store, prefix string, n int, maxFile int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		files := map[string]int{"a.npy": r.IntN(maxFile), "b.csv": r.IntN(maxFile / 4)}
		key := fmt.Sprintf("%s-%d", prefix, i)
		e, err := build(s, key, files)
		if errors.Is(err, ErrFull) {
			continue
		}
		if err != nil {
			return fmt.Errorf("build %s: %w", key, err)
		}
		for name, n := range files {
			got, err := readEntryFile(e, name)
			if err != nil && !isMiss(err) { // evicted by another builder meanwhile: a miss
				return err
			}
			if err == nil && string(got) != string(content(key, name, n)) {
				return fmt.Errorf("%s/%s: wrong content", key, name)
			}
		}
	}
	return nil
}

func TestCapUnderConcurrentBuilders(t *testing.T) {
	const max = 300 << 10
	s := openStore(t, Options{Dir: t.TempDir(), MaxBytes: max})
	stop := make(chan struct{})
	peak := watchCap(t, s.Dir(), stop)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 12 {
		wg.Go(func() { errs <- buildLoad(s, fmt.Sprintf("g%d", g), 15, 64<<10, uint64(g)) })
	}
	// Sparse files filled meanwhile, pinned while open, evictable once closed.
	for g := range 2 {
		wg.Go(func() { errs <- fillLoad(s, fmt.Sprintf("frames%d", g), 6) })
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p := <-peak
	st := s.Stats()
	t.Logf("peak %d of %d bytes; %+v", p, max, st)
	if p > max {
		t.Fatalf("disk use reached %d bytes, cap %d", p, max)
	}
	if st.Evictions == 0 || st.Bytes > max || st.Reserved != 0 {
		t.Fatalf("Stats %+v", st)
	}
	if got := diskUsage(s.Dir()); got != st.Bytes {
		t.Fatalf("index says %d bytes, disk has %d", st.Bytes, got)
	}
}

func TestTwoStoresShareTheCapAndLRU(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	const max = 200 << 10
	a := openStore(t, Options{Dir: dir, MaxBytes: max, Now: clk.Now})
	b := openStore(t, Options{Dir: dir, MaxBytes: max, Now: clk.Now})

	// LRU by the last access of either Store.
	files := map[string]int{"a": 60 << 10}
	for _, k := range []string{"k1", "k2", "k3"} {
		mustBuild(t, a, k, files)
		clk.Add(time.Minute)
	}
	if _, err := b.Lookup("k1"); err != nil {
		t.Fatal(err)
	}
	// b writes the access in the background, within a second; then a's eviction sees it.
	lookedUp := clk.Now()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		infos, err := a.Entries()
		if err != nil {
			t.Fatal(err)
		}
		if infos[0].Key == "k1" && infos[0].LastAccess.Equal(lookedUp) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's access never reached the index: %+v", infos)
		}
	}
	clk.Add(time.Minute)
	mustBuild(t, a, "k4", files)
	if _, err := a.Lookup("k2"); !isMiss(err) {
		t.Fatalf("k2 (least recently used) survived: %v", err)
	}
	for _, k := range []string{"k1", "k3", "k4"} {
		if _, err := a.Lookup(k); err != nil {
			t.Fatalf("%s evicted: %v", k, err)
		}
	}

	// The cap holds with both building at once.
	stop := make(chan struct{})
	peak := watchCap(t, dir, stop)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Go(func() { errs <- buildLoad(s, fmt.Sprintf("s%d", g), 12, 48<<10, uint64(g)) })
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if p := <-peak; p > max {
		t.Fatalf("disk use reached %d bytes, cap %d", p, max)
	}
	if sa, sb := a.Stats(), b.Stats(); sa.Bytes != sb.Bytes || sa.Bytes != diskUsage(dir) {
		t.Fatalf("Stores disagree: %+v vs %+v, disk %d", sa, sb, diskUsage(dir))
	}
}

func TestSameKeyCommittedTwice(t *testing.T) {
	dir := t.TempDir()
	a := openStore(t, Options{Dir: dir})
	b := openStore(t, Options{Dir: dir})
	files := map[string]int{"a": 5000}
	ba, _ := a.Build("k")
	bb, _ := b.Build("k")
	for _, bl := range []*Builder{ba, bb} {
		f, _ := bl.Create("a")
		bl.Reserve(5000)
		f.Write(content("k", "a", 5000))
	}
	ea, err := ba.Commit([]byte("meta:k"))
	if err != nil {
		t.Fatal(err)
	}
	eb, err := bb.Commit([]byte("meta:k"))
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, ea, files)
	checkEntry(t, eb, files)
	if st := a.Stats(); st.Entries != 1 || st.Reserved != 0 || st.Bytes != diskUsage(dir) {
		t.Fatalf("Stats %+v, disk %d", st, diskUsage(dir))
	}
	if d := builderDirs(t, dir); len(d) != 0 {
		t.Fatalf("temp dirs left: %v", d)
	}
}

func TestRemoveAndClear(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	files := map[string]int{"a": 100}
	for _, k := range []string{"k1", "k2", "k3"} {
		mustBuild(t, s, k, files)
	}
	if err := s.Remove("k1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("never"); err != nil {
		t.Fatalf("Remove of an absent key: %v", err)
	}
	if _, err := s.Lookup("k1"); !isMiss(err) {
		t.Fatalf("removed entry: %v", err)
	}
	sp, err := s.OpenSparse("frames", make([]byte, 64), 4, 100)
	if err != nil {
		t.Fatal(err)
	}
	sp.Fill(0, make([]byte, 100))
	mustBuild(t, s, "frames", files) // an entry of the same key
	if err := s.Remove("frames"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove of an open sparse file: %v, want ErrBusy", err)
	}
	if _, err := s.Lookup("frames"); err != nil {
		t.Fatalf("a Remove that failed removed the entry of the same key: %v", err)
	}
	if err := s.Remove("frames"); !errors.Is(err, ErrBusy) {
		t.Fatal(err)
	}
	// An evicted entry's open files keep working.
	e, err := s.Lookup("k2")
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.Open("a")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f); err != nil || string(got) != string(content("k2", "a", 100)) {
		t.Fatalf("reading a file of a cleared entry: %v", err)
	}
	if _, err := e.Open("a"); !isMiss(err) {
		t.Fatalf("Open through a cleared entry: %v, want ErrMiss", err)
	}
	infos, err := s.Entries()
	if err != nil || len(infos) != 1 || infos[0].Key != "frames" || !infos[0].Sparse || infos[0].Size != 164 {
		t.Fatalf("after Clear: %+v, %v", infos, err)
	}
	if !sp.Filled(0) {
		t.Fatal("Clear reset an open sparse file")
	}
	sp.Close()
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 || diskUsage(s.Dir()) != 0 {
		t.Fatalf("after the second Clear: %+v, disk %d", st, diskUsage(s.Dir()))
	}
}

func TestTemporary(t *testing.T) {
	s, err := Open(Options{Temporary: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	mustBuild(t, s, "k", map[string]int{"a": 10})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without a Dir succeeded")
	}
	if _, err := lstat(dir); err == nil {
		t.Fatalf("temporary dir %s left", dir)
	}
	if _, err := s.Lookup("k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lookup after Close: %v", err)
	}
}

// Readers racing builders that evict: whatever opens reads whole and right, or is a miss.
func TestReadersDuringEviction(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir(), MaxBytes: 200 << 10})
	files := func(i int) map[string]int { return map[string]int{"a.npy": 20000 + i*1000, "b": 5000} }
	done := make(chan struct{})
	var wg sync.WaitGroup
	var served, missed [3]int
	for r := range 3 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				i := n % 12
				e, err := s.Lookup(fmt.Sprintf("k%d", i))
				if err != nil {
					if !isMiss(err) {
						t.Error(err)
					}
					missed[r]++
					continue
				}
				for name, size := range files(i) {
					got, err := readEntryFile(e, name)
					if isMiss(err) {
						missed[r]++
						continue
					}
					if err != nil || string(got) != string(content(e.Key, name, size)) {
						t.Errorf("%s/%s: %v, or wrong content", e.Key, name, err)
						return
					}
					served[r]++
				}
			}
		})
	}
	for round := range 4 {
		for i := range 12 {
			if _, err := build(s, fmt.Sprintf("k%d", i), files(i)); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	close(done)
	wg.Wait()
	t.Logf("served %v, missed %v, %+v", served, missed, s.Stats())
	if served[0]+served[1]+served[2] == 0 || s.Stats().Evictions == 0 {
		t.Fatal("the race did not happen: no reads served or no evictions")
	}
}

// fillLoad opens sparse files of 24 units of 4 KiB, fills them, checks them and closes them, rounds
// times; ErrFull is a skipped unit.
func fillLoad(s *Store, key string, rounds int) error {
	for round := range rounds {
		sp, err := s.OpenSparse(fmt.Sprintf("%s-%d", key, round%3), make([]byte, 4096), 24, 4096)
		if errors.Is(err, ErrFull) {
			continue
		}
		if err != nil {
			return err
		}
		for u := range 24 {
			if err := sp.Fill(u, unitData(u, 4096)); err != nil && !errors.Is(err, ErrFull) {
				sp.Close()
				return err
			}
		}
		for u := range 24 {
			if !sp.Filled(u) {
				continue
			}
			got := make([]byte, 4096)
			if _, err := sp.File().ReadAt(got, 4096+int64(u)*4096); err != nil || string(got) != string(unitData(u, 4096)) {
				sp.Close()
				return fmt.Errorf("%s unit %d: %v, or wrong content", key, u, err)
			}
		}
		if err := sp.Close(); err != nil {
			return err
		}
	}
	return nil
}
