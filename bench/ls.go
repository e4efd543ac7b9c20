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

// benchLs times /bin/ls and /bin/ls -l of the mount's root over a catalog of b.runs small run
// files, against the same commands on the catalog directory itself.
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
	warmReps := max(b.reps, 5)
	timeN := func(n int, args ...string) ([]float64, error) {
		var ds []time.Duration
		for range n {
			d, err := timeCmd(ls, args...)
			if err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
		return secs(ds), nil
	}
	coldN := func(args ...string) ([]float64, error) {
		var xs []float64
		for range b.reps {
			b.dropCaches()
			x, err := timeN(1, args...)
			if err != nil {
				return nil, err
			}
			xs = append(xs, x...)
		}
		return xs, nil
	}

	// Baselines: the catalog directory itself.
	rawCold, err := coldN(dir)
	if err != nil {
		return err
	}
	rawWarm, err := timeN(warmReps, dir)
	if err != nil {
		return err
	}
	rawColdL, err := coldN("-l", dir)
	if err != nil {
		return err
	}
	rawWarmL, err := timeN(warmReps, "-l", dir)
	if err != nil {
		return err
	}

	// The baseline of a first mount: what reading every file's head costs, cold, with as many
	// threads as brokerfs reads heads with.
	var heads []float64
	for range b.reps {
		b.dropCaches()
		d, err := readHeads(dir, 4096, 32)
		if err != nil {
			return err
		}
		heads = append(heads, d.Seconds())
	}

	// brokerfs: cold listings, each on a fresh mount with the caches dropped before it
	// started (brokerfs lists the catalog as soon as the kernel asks for the root's
	// attributes, which it does at mount time: the cold ls waits for that listing). On the
	// first mount, listings after the list TTL expired (a rescan that stats the files) and
	// warm ones right after such a rescan, within the TTL. Each first mount has an empty cache
	// directory (no listing index); "from launch" adds the time from starting brokerfs to the
	// mount being up.
	var cold, coldLaunch, warm, expired, warmL []float64
	for rep := range b.reps {
		b.dropCaches()
		t0 := time.Now()
		m, err := b.lsMount(dir, "ls", filepath.Join(b.work, fmt.Sprintf("lscache-first-%d", rep)))
		if err != nil {
			return err
		}
		var stopPerf func()
		if rep == 0 {
			stopPerf = b.perfRecord(m.pid(), filepath.Join(b.out, "perf-ls-cold.data"))
		}
		x, err := timeN(1, m.dir)
		coldLaunch = append(coldLaunch, time.Since(t0).Seconds())
		if stopPerf != nil {
			stopPerf()
		}
		if err != nil {
			m.Close()
			return err
		}
		cold = append(cold, x...)
		if rep == 0 {
			if err := b.lsWarm(m, timeN, &expired, &warm, &warmL, warmReps); err != nil {
				m.Close()
				return err
			}
		}
		if err := m.Close(); err != nil {
			return err
		}
	}
	// Remounts: the listing index written by a first mount, the page cache dropped (the
	// index's pages too) before each.
	warmIx := filepath.Join(b.work, "lscache-warm")
	m, err := b.lsMount(dir, "ls-index", warmIx)
	if err != nil {
		return err
	}
	if err := b.checkListing(m.dir, b.runs+2); err != nil {
		m.Close()
		return err
	}
	if err := m.Close(); err != nil {
		return err
	}
	var remount []float64
	for range b.reps {
		b.dropCaches()
		t0 := time.Now()
		m, err := b.lsMount(dir, "ls-remount", warmIx)
		if err != nil {
			return err
		}
		_, err = timeN(1, m.dir)
		remount = append(remount, time.Since(t0).Seconds())
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	var coldL []float64
	for rep := range b.reps {
		b.dropCaches()
		m, err := b.lsMount(dir, "lsl", filepath.Join(b.work, fmt.Sprintf("lscache-firstl-%d", rep)))
		if err != nil {
			return err
		}
		x, err := timeN(1, "-l", m.dir)
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		coldL = append(coldL, x...)
	}

	n := fmt.Sprintf("%d runs", b.runs)
	b.timeRow(fmt.Sprintf("1. `ls` MNT, cold, first mount, %s%s", n, nOf(len(cold))), cold, rawCold, "`ls` catalog dir, cold", 0.5)
	b.timeRow(fmt.Sprintf("1. `ls` MNT from launching `brokerfs mount`, first mount (no listing index), cold%s", nOf(len(coldLaunch))),
		coldLaunch, heads, "first 4 KiB of every file, 32 threads, cold", 1.2*median(heads))
	b.timeRow(fmt.Sprintf("1. `ls` MNT from launching `brokerfs mount`, remount, listing index warm, cold%s", nOf(len(remount))),
		remount, rawCold, "`ls` catalog dir, cold", 0.3)
	b.timeRow(fmt.Sprintf("1. `ls` MNT, warm (within list TTL of a rescan)%s", nOf(len(warm))), warm, rawWarm, "`ls` catalog dir, warm", 0.05)
	b.timeRow(fmt.Sprintf("1. `ls` MNT, warm, list TTL expired (rescan)%s", nOf(len(expired))), expired, rawWarm, "`ls` catalog dir, warm", 0)
	b.timeRow(fmt.Sprintf("1. `ls -l` MNT, cold%s", nOf(len(coldL))), coldL, rawColdL, "`ls -l` catalog dir, cold", 2)
	b.timeRow(fmt.Sprintf("1. `ls -l` MNT, warm (2nd `ls -l` within list TTL)%s", nOf(len(warmL))), warmL, rawWarmL, "`ls -l` catalog dir, warm", 2)
	return nil
}

// lsMount mounts source with its listing index in cacheDir.
func (b *bench) lsMount(source, label, cacheDir string) (*mount, error) {
	b.nmount++
	dir := filepath.Join(b.work, "mnt", fmt.Sprintf("%d-%s", b.nmount, label))
	log := filepath.Join(b.out, fmt.Sprintf("brokerfs-%d-%s.log", b.nmount, label))
	return startMount(b.bin, source, dir, log, "--list-ttl", b.listTTL.String(), "--cache-dir", cacheDir)
}

// readHeads reads the first n bytes of every file in dir with the given number of threads
// and returns the wall time, listing included.
func readHeads(dir string, n, threads int) (time.Duration, error) {
	t0 := time.Now()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	work := make(chan string)
	errs := make(chan error, threads)
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			buf := make([]byte, n)
			for name := range work {
				f, err := os.Open(filepath.Join(dir, name))
				if err != nil {
					report(errs, err)
					continue
				}
				if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
					report(errs, err)
				}
				f.Close()
			}
		})
	}
	for _, e := range ents {
		work <- e.Name()
	}
	close(work)
	wg.Wait()
	d := time.Since(t0)
	select {
	case err := <-errs:
		return d, fmt.Errorf("read heads of %s: %w", dir, err)
	default:
	}
	return d, nil
}

// report keeps the first errors; the rest are dropped, not waited on.
func report(errs chan error, err error) {
	select {
	case errs <- err:
	default:
	}
}

// lsWarm measures, on a mount whose first listing is done: ls after the list TTL expired, ls
// within the TTL of such a rescan, and ls -l within the TTL of a previous ls -l.
func (b *bench) lsWarm(m *mount, timeN func(int, ...string) ([]float64, error), expired, warm, warmL *[]float64, warmReps int) error {
	if err := b.checkListing(m.dir, b.runs+2); err != nil {
		return err
	}
	var last time.Time
	for range b.reps {
		time.Sleep(b.listTTL + 300*time.Millisecond)
		last = time.Now()
		x, err := timeN(1, m.dir)
		if err != nil {
			return err
		}
		*expired = append(*expired, x...)
	}
	// The listing was cached during the last rescan: warm runs must end within the TTL of its start.
	x, err := timeN(warmReps, m.dir)
	if err != nil {
		return err
	}
	*warm = x
	if d := time.Since(last); d > b.listTTL {
		b.note("the warm `ls` runs ended %s after the rescan that cached the listing began, beyond --list-ttl %s", d.Round(time.Millisecond), b.listTTL)
	}
	for range b.reps {
		time.Sleep(b.listTTL + 300*time.Millisecond)
		t := time.Now()
		if _, err := timeN(1, "-l", m.dir); err != nil {
			return err
		}
		x, err := timeN(1, "-l", m.dir)
		if err != nil {
			return err
		}
		*warmL = append(*warmL, x...)
		if d := time.Since(t); d > b.listTTL {
			b.note("a warm `ls -l` ended %s after the `ls -l` that filled the caches began, beyond --list-ttl %s", d.Round(time.Millisecond), b.listTTL)
		}
	}
	return nil
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
