package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// loadPy times np.load of a .npy inside Python.
const loadPy = `import sys, time, json
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
a = np.load(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "n": int(a.shape[0]), "sum": float(a.sum()), "dtype": str(a.dtype)}))
`

// decodePy is the baseline: what a user without brokerfs does to get x as a numpy array from
// a suitcase msgpack file.
const decodePy = `import sys, time, json
t0 = time.perf_counter()
import numpy as np, msgpack
t1 = time.perf_counter()
xs = []
with open(sys.argv[1], "rb") as f:
    for name, doc in msgpack.Unpacker(f, raw=False):
        if name == "event_page":
            xs.extend(doc["data"]["x"])
        elif name == "event":
            xs.append(doc["data"]["x"])
a = np.array(xs)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "n": int(a.shape[0]), "sum": float(a.sum()), "dtype": str(a.dtype)}))
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

func (b *bench) runPy(script, arg string) (pyResult, error) {
	cmd := exec.Command(b.python, script, arg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0).Seconds()
	if err != nil {
		return pyResult{}, fmt.Errorf("%s %s: %w: %s", filepath.Base(script), arg, err, strings.TrimSpace(stderr.String()))
	}
	var r pyResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return pyResult{}, fmt.Errorf("%s: output %q: %w", filepath.Base(script), stdout.String(), err)
	}
	r.wall = wall
	return r, nil
}

// check verifies a result: n values of x, x[i] = i/2.
func (r pyResult) check(n int) error {
	want := 0.5 * float64(n) * float64(n-1) / 2
	if r.N != n || math.Abs(r.Sum-want) > 1e-9*math.Max(1, want) || r.Dtype != "float64" {
		return fmt.Errorf("read %d values of dtype %s summing to %g; want %d float64 summing to %g", r.N, r.Dtype, r.Sum, n, want)
	}
	return nil
}

// benchNumpy reads x of a run of b.events single-row event pages into numpy: through the
// mount (np.load) and, as the baseline, by decoding the msgpack file in Python.
func (b *bench) benchNumpy() error {
	if out, err := exec.Command(b.python, "-c", "import numpy, msgpack").CombinedOutput(); err != nil {
		return fmt.Errorf("%s lacks numpy or msgpack (scripts/setup.sh installs them): %v %s", b.python, err, out)
	}
	dir := filepath.Join(b.data, fmt.Sprintf("scalar-%d", b.events))
	if err := b.checkSpace(int64(b.events) * 210); err != nil {
		return err
	}
	path := filepath.Join(dir, scalarUID+".msgpack")
	t := time.Now()
	reused, err := cached(dir, fmt.Sprintf("scalar v1 n=%d", b.events), func() error { return genScalarRun(path, b.events) })
	if err != nil {
		return fmt.Errorf("generate scalar run: %w", err)
	}
	b.noteGen(dir, reused, t)
	loadScript, decodeScript := filepath.Join(b.work, "load.py"), filepath.Join(b.work, "decode.py")
	if err := os.WriteFile(loadScript, []byte(loadPy), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(decodeScript, []byte(decodePy), 0o644); err != nil {
		return err
	}
	run := func(script, arg string) (pyResult, error) {
		r, err := b.runPy(script, arg)
		if err == nil {
			err = r.check(b.events)
		}
		return r, err
	}
	var (
		baseWarm, baseCold, cold, freshWarm, warm []pyResult
	)
	// Baseline, page cache warm: one run to fill the cache, then the repetitions.
	if _, err := run(decodeScript, path); err != nil {
		return err
	}
	for range b.reps {
		r, err := run(decodeScript, path)
		if err != nil {
			return err
		}
		baseWarm = append(baseWarm, r)
	}
	for range b.reps {
		b.dropCaches()
		r, err := run(decodeScript, path)
		if err != nil {
			return err
		}
		baseCold = append(baseCold, r)
	}

	npy := func(m *mount) string { return filepath.Join(m.dir, scalarUID, "primary", "x.npy") }
	for rep := range b.reps {
		m, err := b.mount(dir, "numpy-cold")
		if err != nil {
			return err
		}
		b.dropCaches()
		stopPerf := func() {}
		if rep == 0 {
			stopPerf = b.perfRecord(m.pid(), filepath.Join(b.out, "perf-numpy-cold.data"))
		}
		r, err := run(loadScript, npy(m))
		stopPerf()
		if err != nil {
			m.Close()
			return err
		}
		cold = append(cold, r)
		if rep == 0 {
			for range b.reps {
				r, err := run(loadScript, npy(m))
				if err != nil {
					m.Close()
					return err
				}
				warm = append(warm, r)
			}
		}
		if err := m.Close(); err != nil {
			return err
		}
	}
	// A fresh mount with the catalog file in the page cache: brokerfs's own cost, without the
	// disk. The cold reads above left the file cached.
	for rep := range b.reps {
		m, err := b.mount(dir, "numpy-fresh")
		if err != nil {
			return err
		}
		stopPerf := func() {}
		if rep == 0 {
			stopPerf = b.perfRecord(m.pid(), filepath.Join(b.out, "perf-numpy-fresh.data"))
		}
		r, err := run(loadScript, npy(m))
		stopPerf()
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		freshWarm = append(freshWarm, r)
	}

	load := func(rs []pyResult) []float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, r.Load)
		}
		return xs
	}
	wall := func(rs []pyResult) []float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, r.wall)
		}
		return xs
	}
	mb := fileMB(path)
	ev := fmt.Sprintf("%dk events, %d MB", b.events/1000, mb)
	bw, bc := "Python msgpack decode, page cache warm", "Python msgpack decode, cold"
	b.pyRow(fmt.Sprintf("2. np.load x.npy (%s), cold: in Python%s", ev, nOf(len(cold))), load(cold), load(baseCold), bc, "≤ baseline")
	b.pyRow(fmt.Sprintf("2. np.load x.npy, cold: python3 process wall%s", nOf(len(cold))), wall(cold), wall(baseCold), bc, "≤ baseline")
	b.pyRow(fmt.Sprintf("2. np.load x.npy, fresh mount, page cache warm: in Python%s", nOf(len(freshWarm))), load(freshWarm), load(baseWarm), bw, "≤ baseline")
	b.pyRow(fmt.Sprintf("2. np.load x.npy, fresh mount, page cache warm: process wall%s", nOf(len(freshWarm))), wall(freshWarm), wall(baseWarm), bw, "≤ baseline")
	b.pyRow(fmt.Sprintf("2. np.load x.npy, warm (second read, same mount): in Python%s", nOf(len(warm))), load(warm), load(baseWarm), bw, "≤ 50 ms")
	b.pyRow(fmt.Sprintf("2. np.load x.npy, warm: process wall%s", nOf(len(warm))), wall(warm), wall(baseWarm), bw, "—")
	return nil
}

// pyRow adds a row; target is "≤ baseline", "≤ 50 ms" or "—".
func (b *bench) pyRow(name string, got, base []float64, baseName, target string) {
	g, bs := median(got), median(base)
	r := row{name: name, got: fmtSec(g), base: fmt.Sprintf("%s: %s", baseName, fmtSec(bs)), ratio: fmtRatio(g, bs), target: target}
	switch target {
	case "≤ baseline":
		r.missed = g > bs
	case "≤ 50 ms":
		r.missed = g > 0.05
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
