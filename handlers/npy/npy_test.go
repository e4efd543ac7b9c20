package npy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

const python = "/usr/bin/python3"

// genPython runs handlers/testdata/<script> OUTDIR with Debian's python3 and numpy; the
// tests need them (they are what writes the files real writers make), so their absence
// fails the test.
func genPython(t testing.TB, script string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(python, append([]string{filepath.Join("..", "testdata", script), dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s (needs python3-numpy): %v\n%s", python, script, err, out)
	}
	return dir
}

type npyCase struct {
	Name  string
	Dtype string
	Shape []int
}

func TestReadNumpyFiles(t *testing.T) {
	dir := genPython(t, "gen_npy.py")
	var cases []npyCase
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, c.Name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			h, err := OpenFile(ctx, filepath.Join(dir, c.Name+".npy"), nil)
			if err != nil {
				t.Fatal(err)
			}
			dt, shape, err := h.Describe(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, err := h.Read(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if a.Dtype != c.Dtype || dt != c.Dtype {
				t.Errorf("dtype: read %s, describe %s, numpy %s", a.Dtype, dt, c.Dtype)
			}
			if !sameShape(a.Shape, c.Shape) || !sameShape(shape, c.Shape) {
				t.Errorf("shape: read %v, describe %v, numpy %v", a.Shape, shape, c.Shape)
			}
			if !bytes.Equal(a.Data, want) {
				t.Errorf("data differs from numpy's (%d vs %d bytes)", len(a.Data), len(want))
			}
			// Frame-wise reads give the same rows.
			if len(c.Shape) > 0 && c.Shape[0] > 0 {
				fw, err := OpenFramewise(ctx, filepath.Join(dir, c.Name+".npy"), nil)
				if err != nil {
					t.Fatal(err)
				}
				row := len(want) / c.Shape[0]
				for _, i := range []int{0, c.Shape[0] - 1, -1} {
					f, err := fw.Read(ctx, map[string]any{"frame_no": int64(i)})
					if err != nil {
						t.Fatal(err)
					}
					j := (i + c.Shape[0]) % c.Shape[0]
					if !bytes.Equal(f.Data, want[j*row:(j+1)*row]) || !sameShape(f.Shape, c.Shape[1:]) {
						t.Errorf("frame_no %d: shape %v, data differs", i, f.Shape)
					}
					dt, shape, err := fw.Describe(ctx, map[string]any{"frame_no": int64(i)})
					if err != nil || dt != f.Dtype || !sameShape(shape, f.Shape) {
						t.Errorf("frame_no %d: describe %s %v %v, read %s %v", i, dt, shape, err, f.Dtype, f.Shape)
					}
				}
				_, err = fw.Read(ctx, map[string]any{"frame_no": int64(c.Shape[0])})
				if !errors.Is(err, ErrIndex) || !strings.Contains(err.Error(), "out of range") {
					t.Errorf("frame_no past the end: %v", err)
				}
			}
		})
	}
}

// sameShape treats nil and empty as equal.
func sameShape(a, b []int) bool { return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b)) }

func TestSeq(t *testing.T) {
	dir := genPython(t, "gen_npy.py")
	ctx := context.Background()
	r := handlers.NewRegistry()
	if err := r.Register(SpecSeq, OpenSeq); err != nil {
		t.Fatal(err)
	}
	h, err := r.Open(ctx, SpecSeq, filepath.Join(dir, "seq"), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for i := int64(0); i < 3; i++ {
		a, err := h.Read(ctx, map[string]any{"index": i})
		if err != nil {
			t.Fatal(err)
		}
		if a.Dtype != "<u2" || !reflect.DeepEqual(a.Shape, []int{4, 4}) || a.Data[0] != byte(i) || a.Data[30] != byte(i) {
			t.Errorf("index %d: %s %v % x", i, a.Dtype, a.Shape, a.Data[:4])
		}
	}
	files, err := h.Files([]map[string]any{{"index": int64(0)}, {"index": int64(2)}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "seq_0.npy"), filepath.Join(dir, "seq_2.npy")}
	if !reflect.DeepEqual(files, want) {
		t.Errorf("files %v, want %v", files, want)
	}
	_, err = h.Read(ctx, map[string]any{"index": int64(9)})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "seq_9.npy") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := h.Read(ctx, map[string]any{}); err == nil {
		t.Error("no index: no error")
	}
	// The resource kwarg root goes in front of a relative path.
	h2, _ := OpenSeq(ctx, "seq", map[string]any{"root": dir})
	if _, err := h2.Read(ctx, map[string]any{"index": int64(1)}); err != nil {
		t.Error(err)
	}
	if _, err := OpenFile(ctx, filepath.Join(dir, "nope.npy"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("npy of a missing file: %v", err)
	}
}

// TestDescribeReadsHeaderOnly: Describe answers from the header of a file whose data is
// cut short; Read says it is truncated.
func TestDescribeReadsHeaderOnly(t *testing.T) {
	dir := genPython(t, "gen_npy.py")
	b, _ := os.ReadFile(filepath.Join(dir, "u2_c.npy"))
	cut := filepath.Join(t.TempDir(), "cut.npy")
	os.WriteFile(cut, b[:200], 0o644)
	ctx := context.Background()
	h, err := OpenFile(ctx, cut, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dt, shape, err := h.Describe(ctx, nil); err != nil || dt != "<u2" || !reflect.DeepEqual(shape, []int{3, 5, 7}) {
		t.Errorf("describe: %s %v %v", dt, shape, err)
	}
	if _, err := h.Read(ctx, nil); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("read: %v", err)
	}
}

func TestPyStr(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{{int64(3), "3"}, {2.0, "2.0"}, {0.5, "0.5"}, {1e16, "1e+16"}, {"a", "a"}, {int64(-1), "-1"}} {
		if got, err := PyStr(c.v); err != nil || got != c.want {
			t.Errorf("PyStr(%v) = %q, %v; want %q", c.v, got, err, c.want)
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	for _, c := range []struct{ name, file string }{
		{"magic", "NOTNUMPY"},
		{"short", "\x93NUMPY\x01"},
		{"version", "\x93NUMPY\x09\x00\x10\x00{}"},
		{"structured", "\x93NUMPY\x01\x00\x40\x00{'descr': [('a', '<u2')], 'fortran_order': False, 'shape': (2,), }"},
		{"string", "\x93NUMPY\x01\x00\x30\x00{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }"},
		{"negative", "\x93NUMPY\x01\x00\x30\x00{'descr': '<u2', 'fortran_order': False, 'shape': (-2,), }"},
		{"truncated", "\x93NUMPY\x01\x00\x3a\x00{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }\nab"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(c.file))
			if !errors.Is(err, ErrFormat) {
				t.Errorf("err = %v, want ErrFormat", err)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	a := &catalog.NDArray{Dtype: "<u2", Shape: []int{2, 3}, Data: []byte{1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0}}
	b, err := Read(bytes.NewReader(Encode(a)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip: %+v != %+v", b, a)
	}
	if n := len(Encode(a)) - len(a.Data); n%64 != 0 {
		t.Errorf("header of %d bytes is not 64-aligned", n)
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add(Encode(&catalog.NDArray{Dtype: "<f8", Shape: []int{3}, Data: make([]byte, 24)}))
	f.Add([]byte("\x93NUMPY\x03\x00\x20\x00\x00\x00{'descr':'>i4','fortran_order':True,'shape':(1,2)}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Read(bytes.NewReader(b))
		if err == nil && int64(len(a.Data)) != int64(a.Len())*int64(elemSize(a.Dtype)) {
			t.Fatalf("%d bytes for %s %v", len(a.Data), a.Dtype, a.Shape)
		}
	})
}

func elemSize(dt string) int {
	_, n, _, _ := ParseDescr(dt)
	return n
}
