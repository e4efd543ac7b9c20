// Command bench measures brokerfs through a real FUSE mount and prints a Markdown table of its
// figures beside baselines measured in the same run. It is run by scripts/bench.sh:
//
//	go run ./bench -out DIR -bin BROKERFS [-quick] [-runs N] [-events N] [-big-events N] [-big-width N]
//
// It generates synthetic catalogs on disk (suitcase msgpack files, written with
// catalog/msgpack's Writer), mounts them with the brokerfs binary as a child process and
// measures:
//
//  1. ls / ls -l of a catalog of many small runs (ls.go);
//  2. np.load of a field of a million single-row event pages, against Python decoding the
//     msgpack file itself (numpy.go);
//  3. sequential throughput of a ~2 GB .npy, against the same read from tmpfs, and
//  4. the brokerfs process's peak RSS and CPU time during that read (stream.go).
//
// "Cold" means a fresh brokerfs process and `echo 3 > /proc/sys/vm/drop_caches` before the
// measured operation. Every mount is unmounted at the end (SIGTERM, then a lazy unmount),
// on error and on a signal too (mount.go).
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
	events           int // events of the scalar run
	bigEvents        int // events of the array run
	bigWidth         int // float64 elements per event of the array run
	reps             int
	listTTL          time.Duration
	perf             bool
	only             map[string]bool

	rows       []row
	notes      []string
	dropFailed bool
	nmount     int
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
	flag.IntVar(&b.events, "events", 1_000_000, "events of the scalar run read by numpy")
	flag.IntVar(&b.bigEvents, "big-events", 60000, "events of the array run (the large .npy)")
	flag.IntVar(&b.bigWidth, "big-width", 4096, "float64 elements per event of the array run")
	flag.IntVar(&b.reps, "reps", 3, "repetitions of each measurement (median); cold ones need a fresh mount each")
	flag.DurationVar(&b.listTTL, "list-ttl", 2*time.Second, "brokerfs --list-ttl")
	flag.BoolVar(&b.perf, "perf", false, "record perf profiles of brokerfs during the cold reads into -out")
	only := flag.String("only", "ls,numpy,stream", "benchmarks to run, comma-separated: ls, numpy, stream")
	flag.Parse()
	if b.out == "" {
		fmt.Fprintln(os.Stderr, "bench: -out DIR is required")
		os.Exit(2)
	}
	if b.quick {
		b.runs, b.events, b.bigEvents, b.bigWidth, b.reps = 200, 20000, 2000, 4096, 1
	}
	b.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		b.only[strings.TrimSpace(s)] = true
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
	for _, s := range []step{{"ls", b.benchLs}, {"numpy", b.benchNumpy}, {"stream", b.benchStream}} {
		if !b.only[s.name] {
			continue
		}
		if interrupted.Load() {
			return errInterrupted
		}
		t := time.Now()
		fmt.Fprintf(os.Stderr, "bench: == %s\n", s.name)
		if err := s.fn(); err != nil {
			// Report what was measured; the other benchmarks still run.
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.name, err)
			b.note("benchmark %s failed: %v", s.name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
		fmt.Fprintf(os.Stderr, "bench: %s took %s\n", s.name, time.Since(t).Round(time.Second))
	}
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

// mount mounts source on a fresh mountpoint with a fresh brokerfs process.
func (b *bench) mount(source, label string) (*mount, error) {
	b.nmount++
	dir := filepath.Join(b.work, "mnt", fmt.Sprintf("%d-%s", b.nmount, label))
	log := filepath.Join(b.out, fmt.Sprintf("brokerfs-%d-%s.log", b.nmount, label))
	return startMount(b.bin, source, dir, log, "--list-ttl", b.listTTL.String())
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
	return fmt.Sprintf("-runs %d -events %d -big-events %d -big-width %d -reps %d", b.runs, b.events, b.bigEvents, b.bigWidth, b.reps)
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
