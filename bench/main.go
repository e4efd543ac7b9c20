// Command bench measures brokerfs through a real FUSE mount and prints a Markdown table of its
// figures beside baselines measured in the same run. It is run by scripts/bench.sh:
//
//	go run ./bench -out DIR -bin BROKERFS [-quick] [-only ls,numpy,wide,hdf5,cap] [-cache DIR]
//
// It generates synthetic catalogs on disk (suitcase msgpack files, written with
// catalog/msgpack's Writer; HDF5 files written by Python's h5py), mounts them with the brokerfs
// binary as a child process, each mount with a --cache-dir of the benchmark's own, and measures
// (the targets of issue 8):
//
//  1. wide: the first sequential read of a wide .npy (float64[4096] per event in 100-row
//     event pages) against Python decoding the msgpack file, and re-reads after a remount
//     against the same bytes on tmpfs, with whether FUSE passthrough served them (wide.go);
//  2. numpy: np.load of a 1M-event scalar field (10k-event pages and one-row pages) on a
//     fresh mount against Python decoding the file, and after a remount (numpy.go);
//  3. hdf5: an AD_HDF5 field of 512×512 uint16 frames, raw and gzip: the whole field and one
//     frame through mmap, against h5py (hdf5.go);
//  4. ls: ls of many small runs timed from launching the mount, with the listing index warm
//     and on a first mount, against reading every file's first 4 KiB in parallel (ls.go);
//  5. cap: cache disk use sampled at 20 Hz while a field larger than --cache-max is read, and
//     brokerfs's VmHWM over every mount of the run (cap.go).
//
// "Cold" means `echo 3 > /proc/sys/vm/drop_caches` before the measured operation; "first
// mount" an empty cache directory; "remount" a new brokerfs process on the warm cache
// directory. Every mount is unmounted at the end (SIGTERM, then a lazy unmount), on error and
// on a signal too (mount.go).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type bench struct {
	bin, out, python string
	work             string // temporary directory of this run: mountpoints, scratch
	data             string // generated catalogs: under work, or -cache
	keepData         bool
	quick            bool
	runs             int // small runs for ls
	events           int // events of the scalar runs
	pageEvents       int // rows per event_page of the paged scalar run
	bigEvents        int // events of the wide run
	bigWidth         int // float64 elements per event of the wide run
	bigPage          int // rows per event_page of the wide run
	frames           int // frames of the AD_HDF5 runs
	frameSide        int // frames are frameSide × frameSide uint16
	hdf5Comps        []string
	capBytes         int64
	reps             int
	listTTL          time.Duration
	perf             bool
	only             map[string]bool

	rows       []row
	notes      []string
	dropFailed bool
	nmount     int
	ncache     int
	shmFile    string // tmpfs baseline file to remove at exit
	started    time.Time
}

// row is one line of the results table.
type row struct {
	name, got, base, ratio, target string
	missed                         bool
}

func main() {
	b := &bench{started: time.Now()}
	flag.StringVar(&b.out, "out", "", "directory for results.md, brokerfs logs and profiles (required)")
	flag.StringVar(&b.bin, "bin", "", "brokerfs binary (default: go build ./cmd/brokerfs into -out)")
	flag.StringVar(&b.python, "python", "/usr/bin/python3", "Python with numpy and msgpack")
	workParent := flag.String("work", "", "parent of the temporary directory for catalogs and mountpoints; must be a disk, not tmpfs (default: $TMPDIR, else /var/tmp)")
	cache := flag.String("cache", "", "keep generated catalogs in this directory and reuse them in later runs")
	flag.BoolVar(&b.keepData, "keep", false, "keep the generated catalogs (printed at exit)")
	flag.BoolVar(&b.quick, "quick", false, "tiny sizes, one repetition: a smoke run for CI")
	flag.IntVar(&b.runs, "runs", 10000, "runs in the ls catalog")
	flag.IntVar(&b.events, "events", 1_000_000, "events of the scalar runs read by numpy")
	flag.IntVar(&b.pageEvents, "page-events", 10_000, "rows per event_page of the paged scalar run")
	flag.IntVar(&b.bigEvents, "big-events", 8000, "events of the wide run")
	flag.IntVar(&b.bigWidth, "big-width", 4096, "float64 elements per event of the wide run")
	flag.IntVar(&b.bigPage, "big-page", 100, "rows per event_page of the wide run")
	flag.IntVar(&b.frames, "frames", 1000, "frames of the AD_HDF5 runs")
	flag.IntVar(&b.frameSide, "frame-side", 512, "AD_HDF5 frames are N×N uint16")
	hdf5Comp := flag.String("hdf5-comp", "raw,gzip", "AD_HDF5 storage to benchmark, comma-separated: raw, gzip")
	flag.Int64Var(&b.capBytes, "cap", 64<<20, "--cache-max of the cap benchmark, in bytes (smaller than the wide field)")
	flag.IntVar(&b.reps, "reps", 3, "repetitions of each measurement (median); cold ones need a fresh mount each")
	flag.DurationVar(&b.listTTL, "list-ttl", 2*time.Second, "brokerfs --list-ttl")
	flag.BoolVar(&b.perf, "perf", false, "record perf profiles of brokerfs during the cold reads into -out")
	only := flag.String("only", "wide,numpy,hdf5,ls,cap", "benchmarks to run, comma-separated: wide, numpy, hdf5, ls, cap")
	flag.Parse()
	if b.out == "" {
		fmt.Fprintln(os.Stderr, "bench: -out DIR is required")
		os.Exit(2)
	}
	if b.quick {
		b.runs, b.events, b.pageEvents, b.bigEvents, b.frames, b.frameSide, b.reps = 200, 20000, 1000, 400, 40, 256, 1
		b.capBytes = 4 << 20
	}
	b.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		b.only[strings.TrimSpace(s)] = true
	}
	for _, c := range strings.Split(*hdf5Comp, ",") {
		switch c = strings.TrimSpace(c); c {
		case "raw", "gzip":
			b.hdf5Comps = append(b.hdf5Comps, c)
		default:
			fmt.Fprintf(os.Stderr, "bench: -hdf5-comp %q: want raw or gzip\n", c)
			os.Exit(2)
		}
	}

	err := b.setup(*workParent, *cache)
	mainDone := make(chan struct{})
	if err == nil {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			s := <-sigs
			fmt.Fprintf(os.Stderr, "bench: %v: unmounting and cleaning up\n", s)
			interrupted.Store(true)
			closeAllMounts() // the benchmark's next step fails at once
			select {
			case <-mainDone:
			case <-time.After(20 * time.Second):
				b.cleanup()
				os.Exit(130)
			}
		}()
		err = b.runAll()
	}
	closeAllMounts()
	b.cleanup()
	close(mainDone)
	if interrupted.Load() {
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// interrupted is set by a signal: long loops (generation) stop, no new mount starts.
var interrupted atomic.Bool

var errInterrupted = errors.New("interrupted")

// runAll runs the chosen benchmarks; a panic still reaches main's cleanup.
func (b *bench) runAll() (err error) {
	defer func() {
		if p := recover(); p != nil {
			closeAllMounts()
			panic(p)
		}
	}()
	b.note("machine: %s", machine())
	type step struct {
		name string
		fn   func() error
	}
	var errs []error
	for _, s := range []step{{"wide", b.benchWide}, {"numpy", b.benchNumpy}, {"hdf5", b.benchHDF5}, {"ls", b.benchLs}, {"cap", b.benchCap}} {
		if !b.only[s.name] {
			continue
		}
		if interrupted.Load() {
			return errInterrupted
		}
		t := time.Now()
		fmt.Fprintf(os.Stderr, "bench: == %s\n", s.name)
		load0 := loadAvg()
		if err := s.fn(); err != nil {
			// Report what was measured; the other benchmarks still run.
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.name, err)
			b.note("benchmark %s failed: %v", s.name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
		fmt.Fprintf(os.Stderr, "bench: %s took %s\n", s.name, time.Since(t).Round(time.Second))
		b.note("%s took %s; load average (1 min) %s at its start, %s at its end", s.name, time.Since(t).Round(time.Second), load0, loadAvg())
	}
	b.peakRow()
	b.report()
	return errors.Join(errs...)
}

func (b *bench) setup(workParent, cache string) error {
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark mounts FUSE file systems and drops the page cache")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse: %w", err)
	}
	if workParent == "" {
		workParent = os.TempDir()
		if _, tmpfs, err := statfsFree(workParent); err == nil && tmpfs {
			workParent = "/var/tmp" // catalogs must be on a disk for the cold figures
		}
	}
	if _, tmpfs, err := statfsFree(workParent); err != nil {
		return err
	} else if tmpfs {
		b.note("the work directory %s is on tmpfs: cold figures do not include disk reads", workParent)
	}
	var err error
	if b.work, err = os.MkdirTemp(workParent, "brokerfs-bench-"); err != nil {
		return err
	}
	b.data = filepath.Join(b.work, "data")
	if cache != "" {
		b.data, b.keepData = cache, true
	}
	if err := os.MkdirAll(b.data, 0o755); err != nil {
		return err
	}
	if b.bin == "" {
		b.bin = filepath.Join(b.out, "brokerfs")
		fmt.Fprintln(os.Stderr, "bench: go build -o", b.bin, "./cmd/brokerfs")
		cmd := exec.Command("go", "build", "-o", b.bin, "./cmd/brokerfs")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build brokerfs: %w", err)
		}
	}
	if b.bin, err = filepath.Abs(b.bin); err != nil {
		return err
	}
	return nil
}

// cleanup removes the work directory unless a mount is still inside it (it would be walked).
func (b *bench) cleanup() {
	if b.shmFile != "" {
		os.Remove(b.shmFile)
	}
	if b.work == "" {
		return
	}
	if ents, err := os.ReadDir(filepath.Join(b.work, "mnt")); err == nil {
		for _, e := range ents {
			d := filepath.Join(b.work, "mnt", e.Name())
			if ok, _ := isMounted(d); ok {
				fmt.Fprintf(os.Stderr, "bench: %s is still mounted; leaving %s in place\n", d, b.work)
				return
			}
		}
	}
	if b.keepData {
		os.RemoveAll(filepath.Join(b.work, "mnt"))
		if !strings.HasPrefix(b.data, b.work) {
			os.RemoveAll(b.work)
		}
		fmt.Fprintln(os.Stderr, "bench: generated catalogs kept in", b.data)
		return
	}
	os.RemoveAll(b.work)
}

// mount mounts source on a fresh mountpoint with a fresh brokerfs process whose persistent
// cache is cacheDir (a directory of the benchmark's own: see newCacheDir).
func (b *bench) mount(source, label, cacheDir string, extra ...string) (*mount, error) {
	b.nmount++
	dir := filepath.Join(b.work, "mnt", fmt.Sprintf("%d-%s", b.nmount, label))
	log := filepath.Join(b.out, fmt.Sprintf("brokerfs-%d-%s.log", b.nmount, label))
	args := append([]string{"--list-ttl", b.listTTL.String(), "--cache-dir", cacheDir}, extra...)
	return startMount(label, b.bin, source, dir, log, args...)
}

// newCacheDir returns a new, empty cache directory on the work disk.
func (b *bench) newCacheDir(label string) string {
	b.ncache++
	d := filepath.Join(b.work, "cache", fmt.Sprintf("%d-%s", b.ncache, label))
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(err)
	}
	return d
}

// peakRow reports the largest VmHWM of any brokerfs process of the run, and per benchmark.
func (b *bench) peakRow() {
	mountsMu.Lock()
	ps := slices.Clone(peaks)
	mountsMu.Unlock()
	if len(ps) == 0 {
		return
	}
	byLabel := map[string]int64{}
	var order []string
	var top peak
	for _, p := range ps {
		if _, ok := byLabel[p.label]; !ok {
			order = append(order, p.label)
		}
		byLabel[p.label] = max(byLabel[p.label], p.kb)
		if p.kb > top.kb {
			top = p
		}
	}
	var parts []string
	for _, l := range order {
		parts = append(parts, fmt.Sprintf("%s %s", l, fmtMiB(byLabel[l])))
	}
	b.add(row{
		name:   fmt.Sprintf("5. brokerfs peak RSS (VmHWM), largest of all %d mounts of this run", len(ps)),
		got:    fmt.Sprintf("%s (%s)", fmtMiB(top.kb), top.label),
		base:   "per mount label: " + strings.Join(parts, ", "),
		ratio:  "—",
		target: "≤ 256 MiB",
		missed: top.kb > 256<<10,
	})
}

func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

func (b *bench) add(r row) {
	b.rows = append(b.rows, r)
	fmt.Fprintf(os.Stderr, "bench: %s: %s (baseline %s, %s, target %s)\n", r.name, r.got, r.base, r.ratio, r.target)
}

// report prints the table to stdout and writes it to OUT/results.md.
func (b *bench) report() {
	var s strings.Builder
	fmt.Fprintf(&s, "brokerfs benchmarks, %s (%s)\n\n", time.Now().Format("2006-01-02 15:04 MST"), b.sizes())
	s.WriteString("| benchmark | brokerfs | baseline (same run) | ratio | target |\n")
	s.WriteString("|---|---|---|---|---|\n")
	var missed []string
	for _, r := range b.rows {
		t := r.target
		if r.missed {
			t += " **missed**"
			missed = append(missed, r.name)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", r.name, r.got, r.base, r.ratio, t)
	}
	s.WriteString("\nratio: brokerfs ÷ baseline (times: lower is better; throughput: higher is better). ")
	s.WriteString("Cold: fresh brokerfs process and drop_caches before the operation.\n")
	if len(missed) > 0 {
		fmt.Fprintf(&s, "\nMissed targets: %s.\n", strings.Join(missed, "; "))
	}
	if len(b.notes) > 0 {
		s.WriteString("\nNotes:\n")
		for _, n := range b.notes {
			fmt.Fprintf(&s, "- %s\n", n)
		}
	}
	fmt.Fprintf(&s, "\nTotal benchmark time %s.\n", time.Since(b.started).Round(time.Second))
	fmt.Print(s.String())
	if err := os.WriteFile(filepath.Join(b.out, "results.md"), []byte(s.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}

func (b *bench) sizes() string {
	return fmt.Sprintf("-runs %d -events %d -page-events %d -big-events %d -big-width %d -big-page %d -frames %d -frame-side %d -cap %d -reps %d",
		b.runs, b.events, b.pageEvents, b.bigEvents, b.bigWidth, b.bigPage, b.frames, b.frameSide, b.capBytes, b.reps)
}

// machine describes the host: cores, CPU model, memory, kernel, Go.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		if f := strings.Fields(l); len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf("%.0f GiB RAM, ", float64(kb)/(1<<20))
			}
		}
	}
	var u syscall.Utsname
	kernel := "?"
	if syscall.Uname(&u) == nil {
		var sb strings.Builder
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			sb.WriteByte(byte(c))
		}
		kernel = sb.String()
	}
	return fmt.Sprintf("%d cores, %s, %sLinux %s, %s", runtime.NumCPU(), model, mem, kernel, runtime.Version())
}

// Formatting.

func fmtSec(s float64) string {
	switch {
	case s < 0.01:
		return fmt.Sprintf("%.1f ms", s*1000)
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

func fmtRatio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func fmtMBps(v float64) string { return fmt.Sprintf("%.0f MB/s", v) }

func fmtMiB(kb int64) string { return fmt.Sprintf("%.0f MiB", float64(kb)/1024) }

// n is a sample's description: "median of N" when N > 1.
func nOf(k int) string {
	if k > 1 {
		return fmt.Sprintf(" (median of %d)", k)
	}
	return ""
}

// loadAvg is the 1-minute load average: the machine is shared, and the figures move with it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
