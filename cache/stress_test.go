package cache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Random operations of every kind from several goroutines and two Stores; afterwards the index and
// the disk agree, nothing is reserved, and whatever is served is right.
func TestRandomOperations(t *testing.T) {
	dir := t.TempDir()
	const max = 80 << 10
	stores := []*Store{openStore(t, Options{Dir: dir, MaxBytes: max}), openStore(t, Options{Dir: dir, MaxBytes: max})}
	stop := make(chan struct{})
	peak := watchCap(t, dir, stop)
	deadline := time.Now().Add(6 * time.Second)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 2))
			s := stores[g%2]
			for time.Now().Before(deadline) {
				k := r.IntN(10)
				key := fmt.Sprintf("k%d", k)
				files := map[string]int{"a": 1000 * (k + 1), "b": 7 * k}
				var err error
				switch op := r.IntN(20); {
				case op < 8:
					var e *Entry
					if e, err = s.Lookup(key); err == nil {
						for name, n := range files {
							got, err := readEntryFile(e, name)
							if err == nil && string(got) != string(content(key, name, n)) {
								t.Errorf("%s/%s: wrong content", key, name)
							}
						}
					}
				case op < 14:
					_, err = build(s, key, files)
				case op < 15:
					b, _ := s.Build(key)
					b.Create("a")
					b.Reserve(int64(r.IntN(50000)))
					b.Abort()
				case op < 17:
					var sp *Sparse
					sp, err = s.OpenSparse(fmt.Sprintf("s%d", k%3), make([]byte, 4096), 8, 4096)
					if err == nil {
						for u := range 8 {
							if r.IntN(2) == 0 {
								sp.Fill(u, unitData(u, 4096))
							}
						}
						err = sp.Close()
					}
				case op < 19:
					err = s.Remove(key)
				default:
					err = s.Clear()
				}
				if err != nil && !errors.Is(err, ErrMiss) && !errors.Is(err, ErrFull) && !errors.Is(err, ErrBusy) {
					t.Errorf("%v", err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if p := <-peak; p > max {
		t.Fatalf("disk use reached %d bytes, cap %d", p, max)
	}
	for _, s := range stores {
		s.flushAccesses()
	}
	st := stores[0].Stats()
	t.Logf("%+v / %+v", st, stores[1].Stats())
	if st.Evictions+stores[1].Stats().Evictions == 0 {
		t.Error("no evictions: the cap was never under pressure")
	}
	if st.Reserved != 0 || st.Bytes != diskUsage(dir) {
		t.Fatalf("Stats %+v, disk %d", st, diskUsage(dir))
	}
	if n := len(builderDirs(t, dir)) + len(listDir(t, dir, trashDir)); n != 0 {
		t.Fatalf("%d temp or trash dirs left", n)
	}
}
