package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// genH5Py writes the AD_HDF5 file: N frames of S×S uint16 (noise and a moving spot, as a
// detector sees), chunked one frame per chunk, gzip-compressed (level 4, AD's default) or
// not. Pixel [0, 0] of frame k is k, so that a reader can check which frame it got.
const genH5Py = `import sys, numpy as np, h5py
path, n, s, comp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(7)
y, x = np.mgrid[0:s, 0:s]
with h5py.File(path, "w") as f:
    kw = {"compression": "gzip", "compression_opts": 4} if comp == "gzip" else {}
    ds = f.create_group("entry").create_group("data").create_dataset("data", (n, s, s), dtype="<u2", chunks=(1, s, s), **kw)
    for k in range(n):
        cx, cy = (k * 7) % s, (k * 3) % s
        fr = rng.integers(90, 130, size=(s, s), dtype=np.uint16)
        fr += (4000 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 50.0)).astype(np.uint16)
        fr[0, 0] = k
        ds[k] = fr
`

// benchHDF5 reads an AD_HDF5 field of b.frames frames, raw and gzip: the whole field with
// np.load and one frame through np.load(mmap_mode='r')[k], on first mounts (empty cache dir),
// cold, against h5py reading the dataset or the frame, cold.
func (b *bench) benchHDF5() error {
	if out, err := exec.Command(b.python, "-c", "import numpy, h5py").CombinedOutput(); err != nil {
		return fmt.Errorf("%s lacks numpy or h5py (scripts/setup.sh installs them): %v %s", b.python, err, out)
	}
	for _, comp := range b.hdf5Comps {
		if err := b.benchHDF5Comp(comp); err != nil {
			return fmt.Errorf("%s: %w", comp, err)
		}
	}
	return nil
}

func (b *bench) benchHDF5Comp(comp string) error {
	n, side := b.frames, b.frameSide
	frameBytes := int64(side * side * 2)
	if err := b.checkSpace(int64(n) * frameBytes); err != nil {
		return err
	}
	uid := rawUID
	if comp == "gzip" {
		uid = gzipUID
	}
	dir := filepath.Join(b.data, fmt.Sprintf("hdf5-%s-%d-%d", comp, n, side))
	runDir, h5Dir := filepath.Join(dir, "runs"), filepath.Join(dir, "frames")
	h5 := filepath.Join(h5Dir, "cam_000000.h5")
	gen, err := b.script("gen_h5.py", genH5Py)
	if err != nil {
		return err
	}
	t := time.Now()
	reused, err := cached(dir, fmt.Sprintf("hdf5 v1 %s n=%d side=%d", comp, n, side), func() error {
		for _, d := range []string{runDir, h5Dir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if out, err := exec.Command(b.python, gen, h5, fmt.Sprint(n), fmt.Sprint(side), comp).CombinedOutput(); err != nil {
			return fmt.Errorf("gen_h5.py: %v: %s", err, out)
		}
		return genDetectorRun(filepath.Join(runDir, uid+".msgpack"), uid, h5Dir, filepath.Base(h5), n, side)
	})
	if err != nil {
		return fmt.Errorf("generate AD_HDF5 run: %w", err)
	}
	b.noteGen(dir, reused, t)
	loadScript, err := b.script("load.py", loadPy)
	if err != nil {
		return err
	}
	h5Script, err := b.script("h5.py", h5Py)
	if err != nil {
		return err
	}
	k := n/2 + 7
	wantWhole := float64(n) * float64(n-1) / 2
	checkWhole := func(r pyResult, err error) (pyResult, error) {
		if err == nil {
			err = r.check(n, wantWhole, "uint16")
		}
		return r, err
	}
	checkFrame := func(r pyResult, err error) (pyResult, error) {
		if err == nil {
			err = r.check(side, float64(k), "uint16")
		}
		return r, err
	}

	var h5Whole, h5Frame, whole, frame []pyResult
	var frameFilled []int64
	for range b.reps {
		b.dropCaches()
		r, err := checkWhole(b.runPy(h5Script, "full", h5))
		if err != nil {
			return err
		}
		h5Whole = append(h5Whole, r)
		b.dropCaches()
		r, err = checkFrame(b.runPy(h5Script, "frame", h5, fmt.Sprint(k)))
		if err != nil {
			return err
		}
		h5Frame = append(h5Frame, r)
	}
	npy := func(m *mount) string { return filepath.Join(m.dir, uid, "primary", "cam_image.npy") }
	label := "hdf5-" + comp
	for rep := range b.reps {
		// The whole field.
		cacheDir := b.newCacheDir(label)
		m, err := b.mount(runDir, label+"-whole", cacheDir)
		if err != nil {
			return err
		}
		b.dropCaches()
		stopPerf := func() {}
		if rep == 0 {
			stopPerf = b.perfRecord(m.pid(), filepath.Join(b.out, fmt.Sprintf("perf-%s-whole.data", label)))
		}
		r, err := checkWhole(b.runPy(loadScript, "full", npy(m)))
		stopPerf()
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		whole = append(whole, r)

		// One frame through mmap; then how much of the sparse cache file it filled.
		cacheDir = b.newCacheDir(label)
		m, err = b.mount(runDir, label+"-frame", cacheDir)
		if err != nil {
			return err
		}
		b.dropCaches()
		r, err = checkFrame(b.runPy(loadScript, "frame", npy(m), fmt.Sprint(k)))
		sparse := duSize(filepath.Join(cacheDir, "sparse"))
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		frame = append(frame, r)
		frameFilled = append(frameFilled, sparse)
	}

	mb := float64(int64(n)*frameBytes) / 1e6
	hw, g := median(inPy(h5Whole)), median(inPy(whole))
	b.add(row{
		name:   fmt.Sprintf("3. AD_HDF5 %s, %d frames %d×%d uint16 (%.0f MB): np.load whole field, first mount, cold: in Python%s", comp, n, side, side, mb, nOf(len(whole))),
		got:    fmt.Sprintf("%s (process wall %s)", fmtSec(g), fmtSec(median(wallOf(whole)))),
		base:   fmt.Sprintf("h5py reading the dataset, cold: %s (process wall %s)", fmtSec(hw), fmtSec(median(wallOf(h5Whole)))),
		ratio:  fmtRatio(g, hw),
		target: "≤ 1.25×",
		missed: g > 1.25*hw,
	})
	hf, f := median(inPy(h5Frame)), median(inPy(frame))
	var filled []float64
	for _, s := range frameFilled {
		filled = append(filled, float64(s))
	}
	b.add(row{
		name: fmt.Sprintf("3. AD_HDF5 %s: one frame, np.load(mmap_mode='r')[%d], first mount, cold: in Python%s", comp, k, nOf(len(frame))),
		got: fmt.Sprintf("%s (process wall %s; sparse cache file filled: %.1f frames' worth of blocks)",
			fmtSec(f), fmtSec(median(wallOf(frame))), median(filled)/float64(frameBytes)),
		base:   fmt.Sprintf("h5py opening the file and reading frame %d, cold: %s (process wall %s)", k, fmtSec(hf), fmtSec(median(wallOf(h5Frame)))),
		ratio:  fmtRatio(f, hf),
		target: "≤ 2×",
		missed: f > 2*hf,
	})
	return nil
}
