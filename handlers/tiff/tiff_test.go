package tiff

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/brokerfs/brokerfs/handlers"
)

const python = "/usr/bin/python3"

var (
	genOnce sync.Once
	genDir  string
	genErr  error
)

// testFiles runs handlers/testdata/gen_tiff.py once (Pillow and numpy from Debian's python3
// write the frames; their absence fails the tests).
func testFiles(t testing.TB) string {
	t.Helper()
	genOnce.Do(func() {
		if genDir, genErr = os.MkdirTemp("", "brokerfs-tiff-"); genErr != nil {
			return
		}
		out, err := exec.Command(python, filepath.Join("..", "testdata", "gen_tiff.py"), genDir).CombinedOutput()
		if err != nil {
			genErr = fmt.Errorf("gen_tiff.py (needs python3-pil, python3-numpy): %v\n%s", err, out)
		}
	})
	if genErr != nil {
		t.Fatal(genErr)
	}
	return genDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if genDir != "" {
		os.RemoveAll(genDir)
	}
	os.Exit(code)
}

type series struct {
	Name, Template, Dtype string
	FrameShape            []int `json:"frame_shape"`
	Frames                int
}

func TestADTIFF(t *testing.T) {
	dir := testFiles(t)
	var list []series
	b, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range list {
		stack, err := os.ReadFile(filepath.Join(dir, s.Name+".stack.bin"))
		if err != nil {
			t.Fatal(err)
		}
		frame := len(stack) / s.Frames
		for _, fpp := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/fpp%d", s.Name, fpp), func(t *testing.T) {
				h, err := Open(ctx, dir, map[string]any{"template": s.Template, "filename": s.Name, "frame_per_point": int64(fpp)})
				if err != nil {
					t.Fatal(err)
				}
				defer h.Close()
				for p := 0; p < s.Frames/fpp; p++ {
					kw := map[string]any{"point_number": int64(p)}
					dt, shape, err := h.Describe(ctx, kw)
					if err != nil {
						t.Fatal(err)
					}
					a, err := h.Read(ctx, kw)
					if err != nil {
						t.Fatal(err)
					}
					want := append([]int{fpp}, s.FrameShape...)
					if a.Dtype != s.Dtype || dt != s.Dtype || !reflect.DeepEqual(a.Shape, want) || !reflect.DeepEqual(shape, want) {
						t.Fatalf("point %d: read %s %v, describe %s %v, want %s %v", p, a.Dtype, a.Shape, dt, shape, s.Dtype, want)
					}
					if !bytes.Equal(a.Data, stack[p*fpp*frame:(p+1)*fpp*frame]) {
						t.Fatalf("point %d: data differs from numpy's", p)
					}
				}
				files, err := h.Files([]map[string]any{{"point_number": int64(1)}})
				if err != nil || len(files) != fpp || files[0] != pyName(t, s.Template, dir+"/", s.Name, fpp) {
					t.Errorf("files %v %v", files, err)
				}
				_, err = h.Read(ctx, map[string]any{"point_number": int64(s.Frames)})
				if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), s.Name) {
					t.Errorf("point past the last file: %v", err)
				}
			})
		}
	}
}

func pyName(t *testing.T, tmpl, dir, name string, j int) string {
	s, err := PyFormat(tmpl, dir, name, int64(j))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBrokenFiles(t *testing.T) {
	dir := testFiles(t)
	for name, want := range map[string]string{
		"multipage.tiff": "multi-page",
		"tiled.tiff":     "tiled",
		"truncated.tiff": "past the end",
		"notatiff.tiff":  "byte-order mark",
	} {
		_, err := (&handler{g: handlers.GuardOf(context.Background())}).readInfoFile(filepath.Join(dir, name))
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want ErrFormat saying %q", name, err, want)
		}
	}
	ctx := context.Background()
	if _, err := Open(ctx, dir, map[string]any{"template": "%s%s", "filename": "x"}); err == nil {
		t.Error("template with two conversions for three values: no error")
	}
	if _, err := Open(ctx, dir, map[string]any{"filename": "x"}); err == nil {
		t.Error("no template: no error")
	}
	h, _ := Open(ctx, dir, map[string]any{"template": "%s%s_%05d.tiff", "filename": "pil_u2_raw"})
	if _, err := h.Read(ctx, map[string]any{"point_number": int64(-1)}); err == nil {
		t.Error("negative point_number: no error")
	}
}

// TestDescribeReadsHeaderOnly corrupts a frame's compressed strips: Describe, which reads
// the IFD only, still answers; Read fails.
func TestDescribeReadsHeaderOnly(t *testing.T) {
	dir := testFiles(t)
	tmp := t.TempDir()
	b, err := os.ReadFile(filepath.Join(dir, "pil_u2_tiff_lzw_00000.tiff"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := ReadInfo(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for s, off := range in.offsets {
		for k := uint64(0); k < in.counts[s]; k++ {
			b[off+k] = 0xFF
		}
	}
	os.WriteFile(filepath.Join(tmp, "c_00000.tiff"), b, 0o644)
	ctx := context.Background()
	h, _ := Open(ctx, tmp, map[string]any{"template": "%s%s_%05d.tiff", "filename": "c"})
	kw := map[string]any{"point_number": int64(0)}
	if dt, shape, err := h.Describe(ctx, kw); err != nil || dt != "<u2" || !reflect.DeepEqual(shape, []int{1, 24, 20}) {
		t.Errorf("describe: %s %v %v", dt, shape, err)
	}
	if _, err := h.Read(ctx, kw); err == nil || !strings.Contains(err.Error(), "c_00000.tiff") {
		t.Errorf("read of corrupt strips: %v", err)
	}
}

func TestPyFormatMatchesPython(t *testing.T) {
	dir := testFiles(t)
	var cases []struct {
		Template string
		J        int64
		Want     string
	}
	b, _ := os.ReadFile(filepath.Join(dir, "pyformat.json"))
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		got, err := PyFormat(c.Template, "/d/", "f", c.J)
		if err != nil || got != c.Want {
			t.Errorf("%q %% (..., %d) = %q, %v; Python: %q", c.Template, c.J, got, err, c.Want)
		}
	}
	for _, bad := range []string{"%s%s", "%s%s%d%d", "%s%s%q", "%s%d%d", "%(a)s%s%d", "%s%s%"} {
		if got, err := PyFormat(bad, "/d/", "f", int64(1)); err == nil {
			t.Errorf("%q: %q, no error", bad, got)
		}
	}
}

// TestConcurrentReads reads frames of one handler from many goroutines.
func TestConcurrentReads(t *testing.T) {
	dir := testFiles(t)
	ctx := context.Background()
	stack, _ := os.ReadFile(filepath.Join(dir, "pil_u2_tiff_lzw.stack.bin"))
	h, err := Open(ctx, dir, map[string]any{"template": "%s%s_%05d.tiff", "filename": "pil_u2_tiff_lzw"})
	if err != nil {
		t.Fatal(err)
	}
	frame := len(stack) / 6
	var wg sync.WaitGroup
	for g := 0; g < 12; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				p := (g + i) % 6
				a, err := h.Read(ctx, map[string]any{"point_number": int64(p)})
				if err != nil || !bytes.Equal(a.Data, stack[p*frame:(p+1)*frame]) {
					t.Errorf("frame %d: %v", p, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func FuzzReadInfo(f *testing.F) {
	dir := testFiles(f)
	for _, n := range []string{"pil_u2_raw_00000.tiff", "pil_f4_pred3_00000.tiff", "raw_u2_bigtiff_00000.tiff", "pil_i4_tiff_lzw_000000.tif"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := ReadInfo(bytes.NewReader(b), int64(len(b)))
		if err != nil || in.Size() > 1<<22 {
			return
		}
		_ = ReadImage(bytes.NewReader(b), in, make([]byte, in.Size()))
	})
}

// TestHugeDimensions: width x height that overflows 64 bits is refused, not wrapped.
func TestHugeDimensions(t *testing.T) {
	// A little-endian BigTIFF (LONG8 tags) with one IFD: width and height 2^34, one strip of
	// one byte. 2^34 * 2^34 wraps to 0 in 64 bits.
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("II")
	le(uint16(43))
	le(uint16(8))
	le(uint16(0))
	le(uint64(16)) // first IFD
	entries := []struct {
		tag, typ uint16
		val      uint64
	}{{256, 16, 1 << 34}, {257, 16, 1 << 34}, {258, 3, 16}, {273, 16, 0}, {277, 3, 1}, {278, 16, 1 << 34}, {279, 16, 1}}
	le(uint64(len(entries)))
	for _, e := range entries {
		le(e.tag)
		le(e.typ)
		le(uint64(1))
		le(e.val)
	}
	le(uint64(0))
	r := bytes.NewReader(b.Bytes())
	if in, err := ReadInfo(r, int64(b.Len())); !errors.Is(err, ErrFormat) {
		t.Errorf("2^34 x 2^34: %+v, %v", in, err)
	}
}
