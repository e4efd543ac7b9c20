package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/brokerfs/brokerfs/encode"
)

// The Python scripts print one JSON object: the time inside Python around the load (numpy
// already imported), and n and sum to check what was read: n is the length of the first axis,
// sum the sum of element [i, 0, ...] over i (of a frame: n its rows, sum its element [0, 0]).
const pyCommon = `import sys, time, json
t0 = time.perf_counter()
import numpy as np
def out(t1, t2, a, frame=False):
    if frame:
        a = a.reshape(a.shape[-2], a.shape[-1])  # AD_HDF5 fields are (events, 1, y, x) with frame_per_point 1
        s = float(a[0, 0])
    else:
        s = float((a.reshape(a.shape[0], -1)[:, 0] if a.ndim > 1 else a).astype("f8").sum())
    print(json.dumps({"n": int(a.shape[0]), "sum": s, "dtype": str(a.dtype), "import_s": t1 - t0, "load_s": t2 - t1}))
`

// loadPy times np.load of a .npy: `full PATH` loads it, `frame PATH K` copies row K out of
// np.load(PATH, mmap_mode='r').
const loadPy = pyCommon + `t1 = time.perf_counter()
if sys.argv[1] == "full":
    a = np.load(sys.argv[2])
else:
    a = np.array(np.load(sys.argv[2], mmap_mode="r")[int(sys.argv[3])])
t2 = time.perf_counter()
out(t1, t2, a, sys.argv[1] == "frame")
`

// decodePy is the baseline: what a user without brokerfs does to get a field as a numpy
// array from a suitcase msgpack file (msgpack-numpy arrays decoded by an object hook).
const decodePy = pyCommon + `import msgpack
t1 = time.perf_counter()
def hook(d):
    if d.get(b"nd"):
        return np.frombuffer(d[b"data"], dtype=d[b"type"]).reshape(d[b"shape"])
    return d
field, xs = sys.argv[2], []
with open(sys.argv[1], "rb") as f:
    for name, doc in msgpack.Unpacker(f, raw=False, object_hook=hook, max_buffer_size=1 << 30):
        if name == "event_page":
            xs.extend(doc["data"][field])
        elif name == "event":
            xs.append(doc["data"][field])
a = np.stack(xs) if xs and isinstance(xs[0], np.ndarray) else np.array(xs)
t2 = time.perf_counter()
out(t1, t2, a)
`

// h5Py is the baseline of external frames: h5py opening the file and reading the whole
// dataset (`full PATH`) or frame K (`frame PATH K`).
const h5Py = pyCommon + `import h5py
t1 = time.perf_counter()
with h5py.File(sys.argv[2], "r") as f:
    ds = f["entry/data/data"]
    a = ds[()] if sys.argv[1] == "full" else ds[int(sys.argv[3])]
t2 = time.perf_counter()
out(t1, t2, a, sys.argv[1] == "frame")
`

// pyResult is one Python run: the time inside Python around the load and the process's wall time.
type pyResult struct {
	Load   float64 `json:"load_s"`
	Import float64 `json:"import_s"`
	N      int     `json:"n"`
	Sum    float64 `json:"sum"`
	Dtype  string  `json:"dtype"`
	wall   float64
}

// runPy runs a Python script with args and parses its JSON line; wall is the process's
// wall time (interpreter start, imports and exit included).
func (b *bench) runPy(script string, args ...string) (pyResult, error) {
	cmd := exec.Command(b.python, append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0).Seconds()
	if err != nil {
		return pyResult{}, fmt.Errorf("%s %s: %w: %s", filepath.Base(script), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	var r pyResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return pyResult{}, fmt.Errorf("%s: output %q: %w", filepath.Base(script), stdout.String(), err)
	}
	r.wall = wall
	return r, nil
}

// check verifies a result: n rows of dtype whose first elements sum to sum.
func (r pyResult) check(n int, sum float64, dtype string) error {
	if r.N != n || math.Abs(r.Sum-sum) > 1e-9*math.Max(1, math.Abs(sum)) || r.Dtype != dtype {
		return fmt.Errorf("read %d rows of dtype %s summing to %g; want %d %s summing to %g", r.N, r.Dtype, r.Sum, n, dtype, sum)
	}
	return nil
}

// scripts writes the Python scripts into the work directory once.
func (b *bench) script(name, text string) (string, error) {
	p := filepath.Join(b.work, name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return p, os.WriteFile(p, []byte(text), 0o644)
}

// benchNumpy reads x of a run of b.events events into numpy, for two layouts of the same
// values (b.pageEvents-row event pages and one-row pages): through the mount (np.load) on a
// first mount (empty cache) and after a remount (warm cache), and, as the baseline, by decoding
// the msgpack file in Python.
func (b *bench) benchNumpy() error {
	if out, err := exec.Command(b.python, "-c", "import numpy, msgpack").CombinedOutput(); err != nil {
		return fmt.Errorf("%s lacks numpy or msgpack (scripts/setup.sh installs them): %v %s", b.python, err, out)
	}
	for _, page := range []int{b.pageEvents, 1} {
		if err := b.benchNumpyPages(page); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) benchNumpyPages(page int) error {
	dir := filepath.Join(b.data, fmt.Sprintf("scalar-%d-p%d", b.events, page))
	if err := b.checkSpace(int64(b.events) * 210); err != nil {
		return err
	}
	path := filepath.Join(dir, scalarUID+".msgpack")
	t := time.Now()
	reused, err := cached(dir, fmt.Sprintf("scalar v2 n=%d page=%d", b.events, page), func() error { return genScalarRun(path, b.events, page) })
	if err != nil {
		return fmt.Errorf("generate scalar run: %w", err)
	}
	b.noteGen(dir, reused, t)
	loadScript, err := b.script("load.py", loadPy)
	if err != nil {
		return err
	}
	decodeScript, err := b.script("decode.py", decodePy)
	if err != nil {
		return err
	}
	want := 0.5 * float64(b.events) * float64(b.events-1) / 2
	check := func(r pyResult, err error) (pyResult, error) {
		if err == nil {
			err = r.check(b.events, want, "float64")
		}
		return r, err
	}
	decode := func() (pyResult, error) { return check(b.runPy(decodeScript, path, "x")) }
	load := func(m *mount) (pyResult, error) {
		return check(b.runPy(loadScript, "full", filepath.Join(m.dir, scalarUID, "primary", "x.npy")))
	}
	label := fmt.Sprintf("numpy-p%d", page)

	var baseWarm, baseCold, cold, fresh, remount, remountCold []pyResult
	for range b.reps {
		b.dropCaches()
		r, err := decode()
		if err != nil {
			return err
		}
		baseCold = append(baseCold, r)
	}
	for range b.reps {
		r, err := decode() // the cold runs left the file in the page cache
		if err != nil {
			return err
		}
		baseWarm = append(baseWarm, r)
	}
	// First mounts: an empty cache directory each, the page cache dropped (cold) or holding the
	// catalog file (brokerfs's own cost).
	var warmCache string
	for rep := range 2 * b.reps {
		cacheDir := b.newCacheDir(label)
		m, err := b.mount(dir, label+"-first", cacheDir)
		if err != nil {
			return err
		}
		isCold := rep < b.reps
		if isCold {
			b.dropCaches()
		}
		stopPerf := func() {}
		if rep == 0 {
			stopPerf = b.perfRecord(m.pid(), filepath.Join(b.out, fmt.Sprintf("perf-%s-cold.data", label)))
		}
		r, err := load(m)
		stopPerf()
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if isCold {
			cold = append(cold, r)
		} else {
			fresh = append(fresh, r)
		}
		warmCache = cacheDir
	}
	// Remounts on the warm cache: the page cache holding the cache file, and dropped.
	for rep := range 2 * b.reps {
		m, err := b.mount(dir, label+"-remount", warmCache)
		if err != nil {
			return err
		}
		isCold := rep >= b.reps
		if isCold {
			b.dropCaches()
		}
		r, err := load(m)
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if isCold {
			remountCold = append(remountCold, r)
		} else {
			remount = append(remount, r)
		}
	}

	// Same-run reference for the remount: np.load of a .npy of the same size straight from
	// the cache directory (one of the run's cached columns), page cache warm.
	var direct []pyResult
	if f := sameSizeFile(filepath.Join(warmCache, "entries"), b.npySize("<f8", b.events)); f != "" {
		for i := range b.reps + 1 {
			r, err := b.runPy(loadScript, "full", f)
			if err != nil {
				return err
			}
			if i > 0 {
				direct = append(direct, r)
			}
		}
	}

	mb := fileMB(path)
	pages := fmt.Sprintf("%d-event pages", page)
	if page == 1 {
		pages = "one-row pages"
	}
	ev := fmt.Sprintf("%dk events in %s, %d MB", b.events/1000, pages, mb)
	bw, bc := "Python msgpack decode, page cache warm", "Python msgpack decode, cold"
	n := fmt.Sprintf(" (%s)", pages)
	b.pyRow(fmt.Sprintf("2. np.load x.npy (%s), first mount, cold: in Python%s", ev, nOf(len(cold))), inPy(cold), inPy(baseCold), bc, "≤ 0.5×")
	b.pyRow(fmt.Sprintf("2. np.load x.npy%s, first mount, cold: python3 process wall%s", n, nOf(len(cold))), wallOf(cold), wallOf(baseCold), bc, "≤ 0.5×")
	b.pyRow(fmt.Sprintf("2. np.load x.npy%s, first mount, page cache warm: in Python%s", n, nOf(len(fresh))), inPy(fresh), inPy(baseWarm), bw, "≤ 0.5×")
	if len(direct) > 0 {
		bd := "np.load of an equal-size cached column straight from the cache dir (ext4), page cache warm"
		b.pyRow(fmt.Sprintf("2. np.load x.npy%s, remount (warm cache), page cache warm: in Python%s", n, nOf(len(remount))), inPy(remount), inPy(direct), bd, "≤ 20 ms")
		b.pyRow(fmt.Sprintf("2. np.load x.npy%s, remount, page cache warm: python3 process wall%s", n, nOf(len(remount))), wallOf(remount), wallOf(direct), bd, "—")
	} else {
		b.note("no cached column of x.npy's size found under %s: the remount rows compare with the Python decode", warmCache)
		b.pyRow(fmt.Sprintf("2. np.load x.npy%s, remount (warm cache), page cache warm: in Python%s", n, nOf(len(remount))), inPy(remount), inPy(baseWarm), bw, "≤ 20 ms")
		b.pyRow(fmt.Sprintf("2. np.load x.npy%s, remount, page cache warm: python3 process wall%s", n, nOf(len(remount))), wallOf(remount), wallOf(baseWarm), bw, "—")
	}
	b.pyRow(fmt.Sprintf("2. np.load x.npy%s, remount, page cache dropped: in Python%s", n, nOf(len(remountCold))), inPy(remountCold), inPy(baseCold), bc, "—")
	b.pyRow(fmt.Sprintf("2. np.load x.npy%s, remount, page cache dropped: python3 process wall%s", n, nOf(len(remountCold))), wallOf(remountCold), wallOf(baseCold), bc, "—")
	return nil
}

func inPy(rs []pyResult) []float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, r.Load)
	}
	return xs
}

func wallOf(rs []pyResult) []float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, r.wall)
	}
	return xs
}

// pyRow adds a row; target is "≤ R×" (of the baseline), "≤ N ms" or "—".
func (b *bench) pyRow(name string, got, base []float64, baseName, target string) {
	g, bs := median(got), median(base)
	r := row{name: name, got: fmtSec(g), base: fmt.Sprintf("%s: %s", baseName, fmtSec(bs)), ratio: fmtRatio(g, bs), target: target}
	var x float64
	switch {
	case strings.HasSuffix(target, "×"):
		if _, err := fmt.Sscanf(target, "≤ %f×", &x); err == nil {
			r.missed = g > x*bs
		}
	case strings.HasSuffix(target, " ms"):
		if _, err := fmt.Sscanf(target, "≤ %f ms", &x); err == nil {
			r.missed = g > x/1000
		}
	}
	b.add(r)
}

func fileMB(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size() / 1e6
}

// npySize is the size of a .npy of n rows of dtype.
func (b *bench) npySize(dtype string, n int) int64 {
	dt, err := encode.ParseDtype(dtype)
	if err != nil {
		panic(err)
	}
	return int64(len(encode.NPYHeader(dt, []int{n}))) + int64(dt.Size)*int64(n)
}

// sameSizeFile is a regular file of exactly size bytes under dir ("" if none).
func sameSizeFile(dir string, size int64) string {
	var found string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Size() == size {
			found = p
		}
		return nil
	})
	return found
}
