package encode

import (
	"encoding/binary"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"
)

// TestFloat16AgainstNumpy checks the float16 conversions against numpy's own casts: every
// one of the 65536 half bit patterns to float64, and float64 and float32 values (random bit
// patterns over the half range, ties, overflow edges, subnormals) to float16.
func TestFloat16AgainstNumpy(t *testing.T) {
	if _, err := ParseDtype("<f2"); err != nil {
		t.Fatal(err)
	}
	// Every half to float64: numpy's values as float64 bit patterns.
	out := runPython(t, `
import numpy as np, sys
h = np.arange(65536, dtype='<u2').view('<f2').astype('<f8')
sys.stdout.write(h.view('<u8').tobytes().hex())
`)
	want := mustHex(t, out)
	src := make([]byte, 2*65536)
	for i := range 65536 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	dst := make([]byte, 8*65536)
	if err := Convert(dst, mustDtype(t, "<f8"), src, mustDtype(t, "<f2")); err != nil {
		t.Fatal(err)
	}
	for i := range 65536 {
		g, w := binary.LittleEndian.Uint64(dst[8*i:]), binary.LittleEndian.Uint64(want[8*i:])
		gf, wf := math.Float64frombits(g), math.Float64frombits(w)
		if g != w && !(math.IsNaN(gf) && math.IsNaN(wf)) {
			t.Fatalf("half %#04x: got %v (%#x), numpy %v (%#x)", i, gf, g, wf, w)
		}
	}

	// float64 and float32 to half.
	rng := rand.New(rand.NewSource(1))
	var vals []float64
	vals = append(vals, []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1.0 / 3, 65504, 65519.99, 65520, 65536, 1e300,
		-1e300, math.Inf(1), math.Inf(-1), 5.960464477539063e-08, 2.9802322387695312e-08, 2.98023223876953125e-08 * 1.0000001,
		6.097555160522461e-05, 6.103515625e-05, 2049, 2051, 4097, 1e-8, 5e-324, 1e-310, 1.00048828125, 1.00146484375}...)
	for range 3000 {
		// Random values spread over the half range and a little beyond, in both signs.
		e := rng.Intn(50) - 35
		v := math.Ldexp(1+rng.Float64(), e)
		if rng.Intn(2) == 0 {
			v = -v
		}
		vals = append(vals, v)
		// Exact ties between two halves: a half with one more bit set halfway.
		h := uint16(rng.Intn(0x7c00))
		lo, hi := halfToFloat(h), halfToFloat(h+1)
		if !math.IsInf(hi, 0) {
			vals = append(vals, (lo+hi)/2)
		}
	}
	in := make([]byte, 8*len(vals))
	var hex strings.Builder
	for i, v := range vals {
		binary.LittleEndian.PutUint64(in[8*i:], math.Float64bits(v))
	}
	for _, b := range in {
		hex.WriteString(strconv.FormatUint(uint64(b)|0x100, 16)[1:])
	}
	out = runPython(t, `
import numpy as np, sys, warnings
warnings.simplefilter('ignore')
a = np.frombuffer(bytes.fromhex(sys.argv[1]), dtype='<f8')
sys.stdout.write(a.astype('<f2').view('<u2').tobytes().hex() + ' ' + a.astype('<f4').astype('<f2').view('<u2').tobytes().hex())
`, hex.String())
	fields := strings.Fields(out)
	want64, want32 := mustHex(t, fields[0]), mustHex(t, fields[1])
	got := make([]byte, 2*len(vals))
	if err := Convert(got, mustDtype(t, "<f2"), in, mustDtype(t, "<f8")); err != nil {
		t.Fatal(err)
	}
	f32 := make([]byte, 4*len(vals))
	if err := Convert(f32, mustDtype(t, "<f4"), in, mustDtype(t, "<f8")); err != nil {
		t.Fatal(err)
	}
	got32 := make([]byte, 2*len(vals))
	if err := Convert(got32, mustDtype(t, ">f2"), f32, mustDtype(t, "<f4")); err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if g, w := binary.LittleEndian.Uint16(got[2*i:]), binary.LittleEndian.Uint16(want64[2*i:]); g != w {
			t.Errorf("float64 %v (%#x) to half: got %#04x, numpy %#04x", v, math.Float64bits(v), g, w)
		}
		if g, w := binary.BigEndian.Uint16(got32[2*i:]), binary.LittleEndian.Uint16(want32[2*i:]); g != w {
			t.Errorf("float32 of %v to half: got %#04x, numpy %#04x", v, g, w)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestFloat16Ints checks integer <-> half conversions against numpy.
func TestFloat16Ints(t *testing.T) {
	ints := []int64{0, 1, -1, 2047, 2048, 2049, 2050, 2051, 4097, 65504, 65519, 65520, -65520, 100000, math.MaxInt64, math.MinInt64}
	out := runPython(t, `
import numpy as np, sys, warnings
warnings.simplefilter('ignore')
a = np.array([int(x) for x in sys.argv[1].split(',')], dtype='<i8')
h = a.astype('<f2')
sys.stdout.write(h.view('<u2').tobytes().hex() + ' ' + np.array([1.5, -2.75, 65504, 300.25, -0.0], dtype='<f2').astype('<i4').tobytes().hex())
`, joinInts(ints))
	fields := strings.Fields(out)
	want := mustHex(t, fields[0])
	got := make([]byte, 2*len(ints))
	if err := Convert(got, mustDtype(t, "<f2"), i64s(ints...), mustDtype(t, "<i8")); err != nil {
		t.Fatal(err)
	}
	for i, v := range ints {
		if g, w := binary.LittleEndian.Uint16(got[2*i:]), binary.LittleEndian.Uint16(want[2*i:]); g != w {
			t.Errorf("int %d to half: got %#04x, numpy %#04x", v, g, w)
		}
	}
	halfs := []uint16{0x3e00, 0xc180, 0x7bff, 0x5cb1, 0x8000} // 1.5 -2.75 65504 300.25 -0
	src := make([]byte, 2*len(halfs))
	for i, h := range halfs {
		binary.LittleEndian.PutUint16(src[2*i:], h)
	}
	gi := make([]byte, 4*len(halfs))
	if err := Convert(gi, mustDtype(t, "<i4"), src, mustDtype(t, "<f2")); err != nil {
		t.Fatal(err)
	}
	if w := mustHex(t, fields[1]); string(gi) != string(w) {
		t.Errorf("half to int32: got % x, numpy % x", gi, w)
	}
}

// TestFloat16CSV checks that a half is written with the shortest digits numpy's repr uses.
func TestFloat16CSV(t *testing.T) {
	halfs := []uint16{0x2e66, 0x3c00, 0x7bff, 0x0001, 0x3555, 0xd640, 0x0400}
	var args []string
	for _, h := range halfs {
		args = append(args, strconv.Itoa(int(h)))
	}
	out := runPython(t, `
import numpy as np, sys
a = np.array([int(x) for x in sys.argv[1].split(',')], dtype='<u2').view('<f2')
print('\n'.join(repr(float(x)) if False else np.format_float_positional(x, unique=True, trim='0') if 1e-4 <= abs(x) < 1e16 else np.format_float_scientific(x, unique=True, trim='-', exp_digits=2) for x in a))
`, strings.Join(args, ","))
	want := strings.Fields(out)
	dt := mustDtype(t, "<f2")
	e, _ := dt.elem()
	for i, h := range halfs {
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], h)
		got, _ := appendValue(nil, b[:], e, nil)
		w := want[i]
		if !strings.ContainsAny(w, ".e") {
			w += ".0"
		}
		if strings.HasSuffix(w, ".") {
			w += "0"
		}
		if string(got) != w {
			t.Errorf("half %#04x: csv %q, numpy %q", h, got, w)
		}
	}
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(s, ",")
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	s = strings.TrimSpace(s)
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatalf("hex: %v", err)
		}
		b[i] = byte(v)
	}
	return b
}
