package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// benchLs times `ls` of the mount's root over a catalog of b.runs small run files, from
// launching brokerfs to the end of `ls`, with the page cache dropped before the launch: on a
// first mount (empty cache directory), against reading every file's first 4 KiB in parallel,
// and on a remount with the listing index warm.
func (b *bench) benchLs() error {
	dir := filepath.Join(b.data, fmt.Sprintf("runs-%d", b.runs))
	need := int64(b.runs) * 12 << 10
	if err := b.checkSpace(need); err != nil {
		return err
	}
	t := time.Now()
	reused, err := cached(dir, fmt.Sprintf("small-runs v1 n=%d", b.runs), func() error { return genSmallRuns(dir, b.runs) })
	if err != nil {
		return fmt.Errorf("generate runs: %w", err)
	}
	b.noteGen(dir, reused, t)
	const ls = "/bin/ls"

	// Baselines: every file's first 4 KiB read by headWorkers goroutines, and `ls` of the
	// catalog directory; cold.
	var heads, rawCold []float64
	for range b.reps {
		b.dropCaches()
		d, err := readHeads(dir, 4096, headWorkers)
		if err != nil {
			return err
		}
		heads = append(heads, d.Seconds())
		b.dropCaches()
		x, err := timeCmd(ls, dir)
		if err != nil {
			return err
		}
		rawCold = append(rawCold, x.Seconds())
	}

	// launchLs drops the caches, launches brokerfs on cacheDir and times `ls MNT` from the
	// launch; mounted is the launch-to-mount part.
	launchLs := func(label, cacheDir string, perfOut string) (total, mounted float64, warmLs []float64, err error) {
		b.dropCaches()
		m, err := b.mount(dir, label, cacheDir)
		if err != nil {
			return 0, 0, nil, err
		}
		defer m.Close()
		stopPerf := func() {}
		if perfOut != "" {
			stopPerf = b.perfRecord(m.pid(), perfOut)
		}
		_, err = timeCmd(ls, m.dir)
		end := time.Now()
		stopPerf()
		if err != nil {
			return 0, 0, nil, err
		}
		if err := b.checkListing(m.dir, b.runs+2); err != nil {
			return 0, 0, nil, err
		}
		for range 5 {
			d, err := timeCmd(ls, m.dir)
			if err != nil {
				return 0, 0, nil, err
			}
			warmLs = append(warmLs, d.Seconds())
		}
		return end.Sub(m.launched).Seconds(), m.mounted.Sub(m.launched).Seconds(), warmLs, m.Close()
	}
	var first, firstMount, remount, remountMount, warm []float64
	var warmCache string
	for rep := range b.reps {
		cacheDir := b.newCacheDir("ls")
		perfOut := ""
		if rep == 0 {
			perfOut = filepath.Join(b.out, "perf-ls-first.data")
		}
		x, mt, w, err := launchLs("ls-first", cacheDir, perfOut)
		if err != nil {
			return err
		}
		first, firstMount, warm = append(first, x), append(firstMount, mt), append(warm, w...)
		warmCache = cacheDir
	}
	for rep := range b.reps {
		perfOut := ""
		if rep == 0 {
			perfOut = filepath.Join(b.out, "perf-ls-remount.data")
		}
		x, mt, _, err := launchLs("ls-remount", warmCache, perfOut)
		if err != nil {
			return err
		}
		remount, remountMount = append(remount, x), append(remountMount, mt)
	}

	h := median(heads)
	f := median(first)
	b.add(row{
		name:  fmt.Sprintf("4. `ls` MNT of %d runs, first mount (empty cache dir), page cache dropped: launch → end of `ls`%s", b.runs, nOf(len(first))),
		got:   fmt.Sprintf("%s (launch → mounted %s)", fmtSec(f), fmtSec(median(firstMount))),
		base:  fmt.Sprintf("first 4 KiB of every file, %d goroutines, cold: %s; `ls` catalog dir, cold: %s", headWorkers, fmtSec(h), fmtSec(median(rawCold))),
		ratio: fmtRatio(f, h), target: "≤ 1.2×", missed: f > 1.2*h,
	})
	r := median(remount)
	b.add(row{
		name:  fmt.Sprintf("4. `ls` MNT, remount (listing index warm), page cache dropped: launch → end of `ls`%s", nOf(len(remount))),
		got:   fmt.Sprintf("%s (launch → mounted %s)", fmtSec(r), fmtSec(median(remountMount))),
		base:  fmt.Sprintf("`ls` catalog dir, cold: %s", fmtSec(median(rawCold))),
		ratio: fmtRatio(r, median(rawCold)), target: "≤ 300 ms", missed: r > 0.3,
	})
	b.timeRow(fmt.Sprintf("4. `ls` MNT again, same mount (within list TTL)%s", nOf(len(warm))), warm, rawCold, "`ls` catalog dir, cold", 0)
	return nil
}

// headWorkers is the parallelism of the baseline that reads every run file's head.
const headWorkers = 8

// readHeads reads the first n bytes of every file in dir with workers goroutines and returns
// the time taken, directory listing included.
func readHeads(dir string, n, workers int) (time.Duration, error) {
	t := time.Now()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, n)
			for i := w; i < len(ents); i += workers {
				f, err := os.Open(filepath.Join(dir, ents[i].Name()))
				if err != nil {
					errs <- err
					return
				}
				_, err = f.ReadAt(buf, 0)
				f.Close()
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return time.Since(t), <-errs
}

// timeRow adds a row comparing two samples of seconds; target 0 means none.
func (b *bench) timeRow(name string, got, base []float64, baseName string, target float64) {
	g, bs := median(got), median(base)
	r := row{name: name, got: fmtSec(g), base: fmt.Sprintf("%s: %s", baseName, fmtSec(bs)), ratio: fmtRatio(g, bs), target: "—"}
	if target > 0 {
		r.target = "≤ " + fmtSec(target)
		r.missed = g > target
	}
	b.add(r)
}

// checkListing checks that ls of dir lists want names.
func (b *bench) checkListing(dir string, want int) error {
	out, err := exec.Command("/bin/ls", dir).Output()
	if err != nil {
		return fmt.Errorf("ls %s: %w", dir, err)
	}
	if got := len(strings.Fields(string(out))); got != want {
		return fmt.Errorf("ls %s: %d entries, want %d", dir, got, want)
	}
	return nil
}

// checkSpace refuses to generate need bytes where fewer (plus 1 GB to spare) are free.
func (b *bench) checkSpace(need int64) error {
	free, _, err := statfsFree(b.data)
	if err != nil {
		return err
	}
	if free < need+1<<30 {
		return fmt.Errorf("%s has %d MB free; the catalog needs about %d MB and 1 GB to spare", b.data, free>>20, need>>20)
	}
	return nil
}

func (b *bench) noteGen(dir string, reused bool, t time.Time) {
	how := fmt.Sprintf("generated in %s", time.Since(t).Round(time.Millisecond))
	if reused {
		how = "reused from -cache"
	}
	b.note("catalog %s: %d MB on disk, %s", filepath.Base(dir), duSize(dir)>>20, how)
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", dir, how)
}
