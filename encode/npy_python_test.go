package encode

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// python is the interpreter with numpy and pandas that the tests check against. A missing
// interpreter or module fails the tests: they are the only check against the real readers.
const python = "/usr/bin/python3"

func runPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	out, err := exec.Command(python, append([]string{"-c", script}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", python, err, out)
	}
	return string(out)
}

// quietNaN is the NaN NumPy and Python make; math.NaN has another payload, which would make
// the byte comparison with np.save fail for no good reason.
var quietNaN = math.Float64frombits(0x7ff8000000000000)

// Element values cycle through these, chosen for their edges.
var (
	testFloats = []float64{0.1, math.Copysign(0, -1), 1.0 / 3, 1e-300, 5e-324, math.Inf(1), math.Inf(-1),
		quietNaN, 1e22, 295.5, 0, -2.5, 1e300, 16777217}
	testInts = []int64{0, 1, -1, math.MinInt64, math.MaxInt64, 42, -128, 127, 255, 256, 65535, -32769, 1 << 40}
	testUint = []uint64{0, 1, math.MaxUint64, 255, 256, 65535, 1 << 32, 1<<63 + 5}
)

// npyTestValue stores element i of a test array of dtype e at the start of b with the Put
// functions, and returns the value as the Python side builds it: a JSON number, bool,
// string, or a string of a float ("NaN", "+Inf", "1e-300"), or a pair of them for complex.
func npyTestValue(t *testing.T, b []byte, dt Dtype, e elem, i int) any {
	t.Helper()
	var err error
	var v any
	switch e.kind {
	case 'b':
		err, v = PutBool(b, dt, i%3 == 0), i%3 == 0
	case 'i':
		x := testInts[i%len(testInts)]
		// NumPy refuses out-of-range Python ints; pass the wrapped value it would store.
		shift := uint(64 - 8*e.size)
		err, v = PutInt(b, dt, x), x<<shift>>shift
	case 'u':
		x := testUint[i%len(testUint)]
		err, v = PutUint(b, dt, x), x&(math.MaxUint64>>(64-8*e.size))
	case 'f':
		x := testFloats[i%len(testFloats)]
		err, v = PutFloat(b, dt, x), strconv.FormatFloat(x, 'g', -1, 64)
	case 'c':
		re, im := testFloats[i%len(testFloats)], testFloats[(i+3)%len(testFloats)]
		half := e.size / 2
		err = PutFloat(b[:half], Dtype{Descr: fmt.Sprintf("<f%d", half), Size: half}, re)
		if err == nil {
			err = PutFloat(b[half:], Dtype{Descr: fmt.Sprintf("<f%d", half), Size: half}, im)
		}
		v = []string{strconv.FormatFloat(re, 'g', -1, 64), strconv.FormatFloat(im, 'g', -1, 64)}
	case 'U':
		s := randomStrings[i%len(randomStrings)]
		PutUnicode(b, s, e.size/4)
		v = s // NumPy truncates to the width as PutUnicode does
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type npyPythonCase struct {
	File   string `json:"file"`
	Descr  string `json:"descr"`
	Shape  []int  `json:"shape"`
	Values []any  `json:"values"`
}

// TestNumpyLoads writes a .npy file for every dtype and shape class and has NumPy load it,
// with and without mmap, and compare with values computed here; NumPy's np.save of those
// values must also give the same bytes.
func TestNumpyLoads(t *testing.T) {
	dir := t.TempDir()
	descrs := []string{"|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f4", "<f8",
		"<c8", "<c16", "<U1", "<U5"}
	shapes := []struct {
		rows     int
		rowShape []int
	}{{7, nil}, {5, []int{3}}, {4, []int{2, 3}}, {3, []int{2, 1, 2}}, {0, []int{3}}, {6, []int{0}}, {0, nil}}
	var cases []npyPythonCase
	for _, descr := range descrs {
		for _, sh := range shapes {
			dt := mustDtype(t, descr)
			e, _ := dt.elem()
			n := sh.rows * prod(sh.rowShape)
			data := make([]byte, n*dt.Size)
			values := make([]any, n)
			for i := range n {
				values[i] = npyTestValue(t, data[i*dt.Size:], dt, e, i)
			}
			a := newMemArray(dt, sh.rowShape, sh.rows, data)
			file := filepath.Join(dir, fmt.Sprintf("%s_%d_%d.npy", strings.Trim(descr, "<|"), sh.rows, len(sh.rowShape)))
			writeNPY(t, file, NewNPY(a))
			cases = append(cases, npyPythonCase{file, descr, append([]int{sh.rows}, sh.rowShape...), values})
		}
	}
	// <U0: NumPy itself never makes one (np.array([''], 'U0') is <U1) but loads it.
	writeNPY(t, filepath.Join(dir, "U0.npy"), NewNPY(newMemArray(Dtype{"<U0", 0}, nil, 3, nil)))
	cases = append(cases, npyPythonCase{filepath.Join(dir, "U0.npy"), "<U0", []int{3}, []any{"", "", ""}})

	spec := filepath.Join(dir, "cases.json")
	js, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec, js, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runPython(t, numpyLoadScript, spec)
	t.Log(strings.TrimSpace(out))
}

const numpyLoadScript = `
import io, json, sys
import numpy as np
import numpy.lib.format as fmt

cases = json.load(open(sys.argv[1]))
bad = 0
for c in cases:
    dt, shape, vals = np.dtype(c['descr']), tuple(c['shape']), c['values']
    with np.errstate(over='ignore'):  # 1e300 -> float32 is inf, as PutFloat makes it
        if dt.kind == 'f':
            exp = np.array([float(v) for v in vals], dtype=dt)
        elif dt.kind == 'c':
            exp = np.array([complex(float(a), float(b)) for a, b in vals], dtype=dt)
        else:
            exp = np.array(vals, dtype=dt)
    exp = exp.reshape(shape)
    raw = open(c['file'], 'rb').read()
    for mode in (None, 'r'):
        a = np.load(c['file'], mmap_mode=mode)
        ok = a.dtype == dt and a.shape == shape
        if ok and dt.kind in 'fc':
            ok = (np.array_equal(a, exp, equal_nan=True)
                  and np.array_equal(np.signbit(a.real), np.signbit(exp.real))
                  and np.array_equal(np.signbit(a.imag), np.signbit(exp.imag)))
        elif ok:
            ok = np.array_equal(a, exp)
        if not ok:
            bad += 1
            print('MISMATCH', c['file'], mode, a.dtype, a.shape, a.ravel()[:8], exp.ravel()[:8])
    want = io.BytesIO()
    if dt.itemsize == 0:
        fmt._write_array_header(want, {'descr': c['descr'], 'fortran_order': False, 'shape': shape})
    else:
        np.save(want, exp)
    if raw != want.getvalue():
        bad += 1
        print('BYTES DIFFER from np.save', c['file'], raw[:128], want.getvalue()[:128])
print(len(cases), 'files checked with numpy', np.__version__)
sys.exit(1 if bad else 0)
`

func writeNPY(t *testing.T, file string, n *NPY) {
	t.Helper()
	buf := make([]byte, n.Size())
	if k, err := n.ReadAt(context.Background(), buf, 0); k != len(buf) || err != nil {
		t.Fatalf("read %s: %d of %d bytes, %v", file, k, len(buf), err)
	}
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNumpyHeaderVersion2 checks headers around the 65535-byte limit of format 1.0 against
// NumPy's own header writer, and has NumPy parse the 2.0 ones. Such headers need thousands
// of dimensions, more than NumPy's 32 allow in an array, so NumPy parses the header only
// (and np.load would want max_header_size raised above its 10000-byte default anyway).
func TestNumpyHeaderVersion2(t *testing.T) {
	dir := t.TempDir()
	ones := func(k int) []int {
		s := make([]int, k)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	// The first number of dimensions that needs version 2.0.
	k := 1
	for NPYHeader(Dtype{"<f8", 8}, ones(k))[6] == 1 {
		k += 100
	}
	for NPYHeader(Dtype{"<f8", 8}, ones(k-1))[6] == 2 {
		k--
	}
	var args []string
	for _, dims := range []int{k - 1, k} {
		for _, descr := range []string{"<f8", "<U12"} {
			file := filepath.Join(dir, fmt.Sprintf("%s_%d.hdr", strings.Trim(descr, "<"), dims))
			if err := os.WriteFile(file, NPYHeader(mustDtype(t, descr), ones(dims)), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, file, descr, strconv.Itoa(dims))
		}
	}
	t.Log(strings.TrimSpace(runPython(t, numpyHeaderScript, args...)))
}

const numpyHeaderScript = `
import io, sys, warnings
import numpy as np
import numpy.lib.format as fmt

warnings.simplefilter('ignore', UserWarning)  # "Stored array in format 2.0"
args, bad, v2 = sys.argv[1:], 0, 0
for i in range(0, len(args), 3):
    file, descr, dims = args[i], args[i+1], int(args[i+2])
    shape = (1,) * dims
    raw = open(file, 'rb').read()
    want = io.BytesIO()
    fmt._write_array_header(want, {'descr': descr, 'fortran_order': False, 'shape': shape})
    if raw != want.getvalue():
        bad += 1
        print('DIFFER', file, len(raw), len(want.getvalue()), raw[:12], want.getvalue()[:12])
        continue
    f = io.BytesIO(raw)
    version = fmt.read_magic(f)
    if version == (2, 0):
        v2 += 1
        got = fmt.read_array_header_2_0(f, max_header_size=1 << 20)
    else:
        got = fmt.read_array_header_1_0(f, max_header_size=1 << 20)
    if got != (shape, False, np.dtype(descr)) or f.tell() != len(raw) or len(raw) % 64:
        bad += 1
        print('PARSE', file, version, f.tell(), len(raw))
print(len(args) // 3, 'headers equal to numpy', np.__version__ + ',', v2, 'of them version 2.0')
sys.exit(1 if bad or not v2 else 0)
`
