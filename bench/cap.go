package main

import (
	"fmt"
	"sync"
	"time"
)

// benchCap reads the wide field, larger than the cap, on a first mount whose --cache-max is
// b.capBytes, sampling the disk use of its cache directory at 20 Hz; the read is checked row
// by row, then repeated (now a re-read over an entry that could not be kept).
func (b *bench) benchCap() error {
	dir, _, err := b.wideRun()
	if err != nil {
		return err
	}
	cacheDir := b.newCacheDir("cap")
	m, err := b.mount(dir, "cap", cacheDir, "--cache-max", fmt.Sprintf("%dK", b.capBytes>>10))
	if err != nil {
		return err
	}
	defer m.Close()
	var (
		mu      sync.Mutex
		maxUse  int64
		samples int
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			u := duSize(cacheDir)
			mu.Lock()
			maxUse = max(maxUse, u)
			samples++
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tk.C:
			}
		}
	}()
	b.dropCaches()
	var walls []float64
	for range 2 {
		r, err := b.readWide(b.wideNPY(m))
		if err != nil {
			close(done)
			wg.Wait()
			return err
		}
		walls = append(walls, r.wall.Seconds())
	}
	close(done)
	wg.Wait()
	final := duSize(cacheDir)
	if err := m.Close(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	b.add(row{
		name: fmt.Sprintf("5. cache disk use (du of --cache-dir, %d samples at 20 Hz) while reading the %.0f MB wide field twice, --cache-max %d MiB",
			samples, float64(b.wideSize())/1e6, b.capBytes>>20),
		got:    fmt.Sprintf("max %.1f MiB (at the end %.1f MiB); reads correct, %s and %s", float64(maxUse)/(1<<20), float64(final)/(1<<20), fmtSec(walls[0]), fmtSec(walls[1])),
		base:   fmt.Sprintf("--cache-max: %d MiB", b.capBytes>>20),
		ratio:  fmtRatio(float64(maxUse), float64(b.capBytes)),
		target: "≤ 1× at every sample",
		missed: maxUse > b.capBytes,
	})
	return nil
}
