package builtin

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

var (
	smallOnce sync.Once
	smallDir  string
	smallErr  error
)

// smallFiles makes handlers/testdata/gen_hostile_small.py's files and a few FIFOs, once per
// process (fuzz workers each make their own), in a directory removed by TestMain.
func smallFiles(t testing.TB) string {
	t.Helper()
	smallOnce.Do(func() {
		if smallDir, smallErr = os.MkdirTemp("", "brokerfs-hostile-"); smallErr != nil {
			return
		}
		var out []byte
		out, smallErr = exec.Command(python, filepath.Join("..", "testdata", "gen_hostile_small.py"), smallDir).CombinedOutput()
		if smallErr != nil {
			smallErr = errors.New(smallErr.Error() + "\n" + string(out))
			return
		}
		for _, f := range []string{"ok/fifo.npy", "ok/fifo.h5", "ok/fifo_000000.tiff", "ok/seq_fifo.npy", "ok/fifo_1_master.h5"} {
			if smallErr = syscall.Mkfifo(filepath.Join(smallDir, f), 0o644); smallErr != nil {
				return
			}
		}
	})
	if smallErr != nil {
		t.Fatalf("gen_hostile_small.py: %v", smallErr)
	}
	return smallDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if smallDir != "" {
		os.RemoveAll(smallDir)
	}
	os.Exit(code)
}

const python = "/usr/bin/python3"

func newFiller(t testing.TB, roots []string) *handlers.Filler {
	t.Helper()
	reg := handlers.NewRegistry()
	if err := Register(reg, Options{}); err != nil {
		t.Fatal(err)
	}
	return handlers.NewFiller(handlers.FillerOptions{Registry: reg, AllowedRoots: roots, Retry: time.Millisecond,
		CallTimeout: 5 * time.Second, NegativeTTL: -1})
}

type hcase struct {
	name     string
	spec     string
	path     string
	rkw, dkw map[string]any
}

func (c hcase) read(t *testing.T, f *handlers.Filler) (*catalog.NDArray, error) {
	t.Helper()
	res := &catalog.Resource{UID: c.name, Spec: c.spec, ResourcePath: c.path, ResourceKwargs: c.rkw}
	start := time.Now()
	a, err := f.Read(context.Background(), res, c.name+"/0", c.dkw)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("%s: %v", c.name, d)
	}
	return a, err
}

// TestHostileKwargs covers issue 9 items 1 to 4 for the TIFF and NPY handlers (HDF5 has
// its own in handlers/hdf5): sizes from documents, paths built from kwargs, FIFOs and index
// overflow. Each refusal is checked to be one: without allowed roots the same documents
// read the secret.
func TestHostileKwargs(t *testing.T) {
	dir := smallFiles(t)
	ok, sub := filepath.Join(dir, "ok"), filepath.Join(dir, "ok", "sub")
	tiff := func(fn string, fpp any) map[string]any {
		return map[string]any{"template": "%s%s_%6.6d.tiff", "filename": fn, "frame_per_point": fpp}
	}
	pn := func(n int64) map[string]any { return map[string]any{"point_number": n} }
	guarded := newFiller(t, []string{ok})
	defer guarded.Close()
	open := newFiller(t, nil)
	defer open.Close()

	for _, c := range []struct {
		hcase
		want   error
		secret bool // without roots the case reads the secret
	}{
		{hcase{"fpp 2**40", "AD_TIFF", ok, tiff("img", int64(1)<<40), pn(0)}, handlers.ErrTooLarge, false},
		{hcase{"fpp 2**40 float", "AD_TIFF", ok, tiff("img", float64(1<<40)), pn(0)}, handlers.ErrTooLarge, false},
		{hcase{"fpp 1e300", "AD_TIFF", ok, tiff("img", 1e300), pn(0)}, nil, false},
		{hcase{"pn 2**62 fpp 4", "AD_TIFF", ok, tiff("img", int64(4)), pn(1 << 62)}, handlers.ErrOverflow, false},
		{hcase{"pn max fpp 1", "AD_TIFF", ok, tiff("img", int64(1)), pn(math.MaxInt64)}, handlers.ErrOverflow, false},
		{hcase{"tiff ../../secret", "AD_TIFF", sub, tiff("../../secret/img", int64(1)), pn(0)}, handlers.ErrNotAllowed, true},
		{hcase{"tiff abs filename", "AD_TIFF", ok, tiff(filepath.Join(dir, "secret", "img"), int64(1)), pn(0)}, nil, false},
		{hcase{"tiff fifo", "AD_TIFF", ok, tiff("fifo", int64(1)), pn(0)}, handlers.ErrNotRegular, false},
		{hcase{"npy_seq dir/../../../secret", "NPY_SEQ", filepath.Join(sub, "x"), nil, map[string]any{"index": "dir/../../../secret/secret"}}, handlers.ErrNotAllowed, true},
		{hcase{"npy_seq fifo", "NPY_SEQ", filepath.Join(ok, "seq"), nil, map[string]any{"index": "fifo"}}, handlers.ErrNotRegular, false},
		{hcase{"npy_seq root kwarg", "NPY_SEQ", "seq", map[string]any{"root": filepath.Join(dir, "secret")}, map[string]any{"index": "x"}}, handlers.ErrNotAllowed, false},
		{hcase{"npy fifo", "npy", filepath.Join(ok, "fifo.npy"), nil, nil}, handlers.ErrNotRegular, false},
		{hcase{"npy_FRAMEWISE fifo", "npy_FRAMEWISE", filepath.Join(ok, "fifo.npy"), nil, map[string]any{"frame_no": int64(0)}}, handlers.ErrNotRegular, false},
		{hcase{"npy /dev/zero", "npy", "/dev/zero", nil, nil}, handlers.ErrNotAllowed, false},
		{hcase{"AD_HDF5 fifo", "AD_HDF5", filepath.Join(ok, "fifo.h5"), nil, pn(0)}, handlers.ErrNotRegular, false},
		{hcase{"AD_HDF5 pn 2**62", "AD_HDF5", filepath.Join(ok, "ad.h5"), map[string]any{"frame_per_point": int64(4)}, pn(1 << 62)}, handlers.ErrOverflow, false},
		{hcase{"AD_EIGER fifo", "AD_EIGER", filepath.Join(ok, "fifo"), map[string]any{"images_per_file": int64(1)}, map[string]any{"seq_id": int64(1)}}, handlers.ErrNotRegular, false},
		{hcase{"XSP3 frame 2**62", "XSP3", filepath.Join(ok, "xsp3.h5"), nil, map[string]any{"frame": int64(1 << 62), "channel": int64(1)}}, nil, false},
	} {
		a, err := c.read(t, guarded)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v %v, want an error wrapping %v", c.name, a, err, c.want)
		}
		if c.secret {
			a, err := c.read(t, open)
			if err != nil || !bytes.Contains(a.Data, []byte{0x92, 0x10}) {
				t.Errorf("%s without allowed roots: %v %v, want the secret (4242)", c.name, a, err)
			}
		}
	}
}

// TestHugeNpyHeader: a .npy header may claim any shape; a tiny file claiming 2**60 bytes is
// an error, not an allocation.
func TestHugeNpyHeader(t *testing.T) {
	dir := t.TempDir()
	hdr := "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1048576), }"
	for len(hdr)%64 != 63-10 {
		hdr += " "
	}
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(hdr)+1))
	b.WriteString(hdr + "\n")
	b.Write(make([]byte, 64))
	p := filepath.Join(dir, "huge.npy")
	os.WriteFile(p, b.Bytes(), 0o644)
	f := newFiller(t, nil)
	defer f.Close()
	for _, c := range []hcase{
		{"npy huge", "npy", p, nil, nil},
		{"framewise huge", "npy_FRAMEWISE", p, nil, map[string]any{"frame_no": int64(3)}},
	} {
		if a, err := c.read(t, f); err == nil {
			t.Errorf("%s: %v", c.name, a.Shape)
		}
	}
}

// TestReadIntoHandlers: ReadInto of real files, into the file's own dtype (direct) and into
// another (converted), against values computed by hand from what gen_hostile_small.py
// writes.
func TestReadIntoHandlers(t *testing.T) {
	dir := smallFiles(t)
	ok := filepath.Join(dir, "ok")
	f := newFiller(t, []string{ok})
	defer f.Close()
	ctx := context.Background()
	frames := func(first, n int) []float64 { // j*100 + arange(12) for frames first..first+n
		var v []float64
		for j := first; j < first+n; j++ {
			for k := range 12 {
				v = append(v, float64(j*100+k))
			}
		}
		return v
	}
	for _, c := range []struct {
		hcase
		shape []int
		want  []float64
	}{
		{hcase{"ad", "AD_HDF5", filepath.Join(ok, "ad.h5"), map[string]any{"frame_per_point": int64(2)}, map[string]any{"point_number": int64(1)}},
			[]int{2, 3, 4}, frames(2, 2)},
		{hcase{"tiff", "AD_TIFF", ok, map[string]any{"template": "%s%s_%6.6d.tiff", "filename": "img", "frame_per_point": int64(3)},
			map[string]any{"point_number": int64(1)}}, []int{3, 3, 4}, frames(3, 3)},
		{hcase{"whole", "npy", filepath.Join(ok, "whole.npy"), nil, nil}, []int{4, 2, 3}, seq(0, 24, 1)},
		{hcase{"framewise", "npy_FRAMEWISE", filepath.Join(ok, "whole.npy"), nil, map[string]any{"frame_no": int64(-1)}}, []int{2, 3}, seq(18, 24, 1)},
		{hcase{"big-endian", "npy", filepath.Join(ok, "big.npy"), nil, nil}, []int{3, 2}, seq(0, 6*70000, 70000)},
		{hcase{"seq", "NPY_SEQ", filepath.Join(ok, "seq"), nil, map[string]any{"index": int64(1)}}, []int{2, 3}, seq(10, 16, 1)},
		{hcase{"tpx", "TPX_HDF5", filepath.Join(ok, "tpx.h5"), map[string]any{"frame_per_point": int64(1)}, map[string]any{"point_number": int64(3)}},
			[]int{1, 2, 2}, seq(12, 16, 1)},
		{hcase{"xsp3", "XSP3", filepath.Join(ok, "xsp3.h5"), nil, map[string]any{"frame": int64(2), "channel": int64(2)}}, []int{5}, seq(25, 30, 1)},
		{hcase{"eiger", "AD_EIGER", filepath.Join(ok, "eiger"), map[string]any{"images_per_file": int64(2)}, map[string]any{"seq_id": int64(1)}},
			[]int{2, 2, 2}, seq(0, 8, 1)},
	} {
		res := &catalog.Resource{UID: c.name, Spec: c.spec, ResourcePath: c.path, ResourceKwargs: c.rkw}
		dtype, _, err := f.Describe(ctx, res, c.dkw)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, descr := range []string{dtype, "<f8", "<i8"} {
			n := len(c.want)
			size := map[string]int{"<f8": 8, "<i8": 8}[descr]
			if size == 0 {
				size = int(dtype[2] - '0')
			}
			dst := make([]byte, n*size)
			if err := f.ReadInto(ctx, res, c.name+"/0", c.dkw, dst, descr, c.shape); err != nil {
				t.Errorf("%s into %s: %v", c.name, descr, err)
				continue
			}
			for i, w := range c.want {
				if g := value(dst[i*size:], descr); g != w {
					t.Errorf("%s into %s: element %d = %v, want %v", c.name, descr, i, g, w)
					break
				}
			}
		}
		bad := append([]int{}, c.shape...)
		bad[0]++
		if err := f.ReadInto(ctx, res, c.name+"/0", c.dkw, make([]byte, 8*len(c.want)/c.shape[0]*bad[0]), "<f8", bad); !errors.Is(err, handlers.ErrShape) {
			t.Errorf("%s: wrong shape %v: %v", c.name, bad, err)
		}
	}
}

func seq(from, to, step int) []float64 {
	var v []float64
	for x := from; x < to; x += step {
		v = append(v, float64(x))
	}
	return v
}

// value decodes one little-endian element of the descrs the test uses.
func value(b []byte, descr string) float64 {
	switch descr[1:] {
	case "f8":
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	case "i8":
		return float64(int64(binary.LittleEndian.Uint64(b)))
	case "f4":
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case "u4":
		return float64(binary.LittleEndian.Uint32(b))
	case "i2":
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case "u2":
		return float64(binary.LittleEndian.Uint16(b))
	}
	panic(descr)
}
