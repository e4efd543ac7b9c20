package hdf5

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/brokerfs/brokerfs/handlers"
)

const python = "/usr/bin/python3"

type h5case struct {
	Name, File, Dtype string
	Shape             []int
	full              []byte
}

var (
	genOnce sync.Once
	genDir  string
	genErr  error
)

// testFiles generates the files once per test binary (h5py takes a while) into a directory
// removed by TestMain.
func testFiles(t testing.TB) (string, map[string]*h5case) {
	t.Helper()
	genOnce.Do(func() {
		genDir, genErr = os.MkdirTemp("", "brokerfs-hdf5-")
		if genErr != nil {
			return
		}
		out, err := exec.Command(python, filepath.Join("..", "testdata", "gen_hdf5.py"), genDir).CombinedOutput()
		if err != nil {
			genErr = fmt.Errorf("gen_hdf5.py (needs python3-h5py, python3-numpy): %v\n%s", err, out)
		}
	})
	if genErr != nil {
		t.Fatal(genErr)
	}
	b, err := os.ReadFile(filepath.Join(genDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var list []*h5case
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	m := map[string]*h5case{}
	for _, c := range list {
		if c.full, err = os.ReadFile(filepath.Join(genDir, c.Name+".full.bin")); err != nil {
			t.Fatal(err)
		}
		m[c.Name] = c
	}
	return genDir, m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if genDir != "" {
		os.RemoveAll(genDir)
	}
	os.Exit(code)
}

// rows returns frames [start, stop) of c as numpy holds them.
func (c *h5case) rows(start, stop int) []byte {
	row := len(c.full) / c.Shape[0]
	return c.full[start*row : stop*row]
}

func pn(i int) map[string]any { return map[string]any{"point_number": int64(i)} }

func TestSliceHandlers(t *testing.T) {
	dir, cases := testFiles(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		open handlers.Opener
		fpp  int
	}{
		{"ad_raw_u2", NewAD(Options{}), 1},
		{"ad_raw_u2", NewAD(Options{}), 2},
		{"ad_raw_u2", NewAD(Options{}), 3}, // 10 frames: the last point has one
		{"ad_gzip_u2", NewAD(Options{}), 1},
		{"ad_gzip_f4", NewAD(Options{}), 2},
		{"ad_multichunk_i4", NewAD(Options{ChunkCacheBytes: 4 << 20}), 2},
		{"ad_be_i2", NewAD(Options{}), 1},
		{"ad_u1_1d", NewAD(Options{}), 5},
		{"tpx_u2", NewTPX(Options{}), 2},
		{"ad_gzip_u2", NewADSWMR(Options{}), 2}, // SWMR-read of a file not written in SWMR mode
	} {
		c := cases[tc.name]
		t.Run(fmt.Sprintf("%s/fpp%d", tc.name, tc.fpp), func(t *testing.T) {
			h, err := tc.open(ctx, filepath.Join(dir, c.File), map[string]any{"frame_per_point": int64(tc.fpp)})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			n := c.Shape[0]
			points := (n + tc.fpp - 1) / tc.fpp
			for p := 0; p < points; p++ {
				dt, shape, err := h.Describe(ctx, pn(p))
				if err != nil {
					t.Fatal(err)
				}
				a, err := h.Read(ctx, pn(p))
				if err != nil {
					t.Fatal(err)
				}
				start, stop := p*tc.fpp, min((p+1)*tc.fpp, n)
				want := append([]int{stop - start}, c.Shape[1:]...)
				if a.Dtype != c.Dtype || dt != c.Dtype || !reflect.DeepEqual(a.Shape, want) || !reflect.DeepEqual(shape, want) {
					t.Fatalf("point %d: read %s %v, describe %s %v, want %s %v", p, a.Dtype, a.Shape, dt, shape, c.Dtype, want)
				}
				if !bytes.Equal(a.Data, c.rows(start, stop)) {
					t.Fatalf("point %d: data differs from numpy's", p)
				}
			}
			_, err = h.Read(ctx, pn(points))
			if !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), fmt.Sprintf("point_number %d", points)) ||
				!strings.Contains(err.Error(), fmt.Sprintf("has %d frames", n)) {
				t.Errorf("point past the end: %v", err)
			}
			if _, _, err := h.Describe(ctx, pn(-1)); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("negative point: %v", err)
			}
			files, err := h.Files([]map[string]any{pn(0), pn(1)})
			if err != nil || !reflect.DeepEqual(files, []string{filepath.Join(dir, c.File)}) {
				t.Errorf("files %v %v", files, err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	dir, _ := testFiles(t)
	ctx := context.Background()
	open := NewAD(Options{})

	_, err := open(ctx, filepath.Join(dir, "missing.h5"), nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.h5") {
		t.Errorf("missing file: %v", err)
	}

	h, err := open(ctx, filepath.Join(dir, "no_dataset.h5"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Read(ctx, pn(0))
	if !errors.Is(err, ErrNoDataset) || !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), "/entry/data/data") || !strings.Contains(err.Error(), "no_dataset.h5") {
		t.Errorf("missing dataset: %v", err)
	}
	if _, _, err := h.Describe(ctx, pn(0)); !errors.Is(err, ErrNoDataset) {
		t.Errorf("missing dataset, describe: %v", err)
	}
	h.Close()

	h, err = open(ctx, filepath.Join(dir, "strings.h5"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Read(ctx, pn(0)); !errors.Is(err, ErrType) {
		t.Errorf("string dataset: %v", err)
	}
	h.Close()

	// Describe reads headers only: it works where the data cannot be decoded.
	h, err = open(ctx, filepath.Join(dir, "unknown_filter.h5"), map[string]any{"frame_per_point": int64(2)})
	if err != nil {
		t.Fatal(err)
	}
	if dt, shape, err := h.Describe(ctx, pn(1)); err != nil || dt != "<u2" || !reflect.DeepEqual(shape, []int{2, 8, 8}) {
		t.Errorf("describe with an unknown filter: %s %v %v", dt, shape, err)
	}
	if _, err := h.Read(ctx, pn(1)); err == nil || !strings.Contains(err.Error(), "required filter") || !strings.Contains(err.Error(), "unknown_filter.h5") {
		t.Errorf("read with an unknown filter: %v", err)
	}
	h.Close()

	bad := filepath.Join(t.TempDir(), "bad.h5")
	os.WriteFile(bad, []byte("this is not an HDF5 file, not at all, no superblock here"), 0o644)
	_, err = open(ctx, bad, nil)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("not HDF5: %v", err)
	}

	if _, err := open(ctx, filepath.Join(dir, "ad_raw_u2.h5"), map[string]any{"frame_per_point": int64(0)}); err == nil {
		t.Error("frame_per_point 0: no error")
	}
	h, _ = open(ctx, filepath.Join(dir, "ad_raw_u2.h5"), nil)
	if _, err := h.Read(ctx, map[string]any{}); err == nil || !strings.Contains(err.Error(), "point_number") {
		t.Errorf("no point_number: %v", err)
	}
	h.Close()
	if _, err := h.Read(ctx, pn(0)); !errors.Is(err, errClosed) {
		t.Errorf("after close: %v", err)
	}
}

// TestNoStderr checks that failing libhdf5 calls on many OS threads print nothing: a
// thread-safe libhdf5 keeps its error-printing switch per thread.
func TestNoStderr(t *testing.T) {
	dir, _ := testFiles(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Dup2(int(w.Fd()), 2)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := NewAD(Options{})(context.Background(), filepath.Join(dir, "no_dataset.h5"), nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer h.Close()
			h.Read(context.Background(), pn(0))
			NewAD(Options{})(context.Background(), filepath.Join(dir, "manifest.json"), nil)
		}()
	}
	wg.Wait()
	syscall.Dup2(saved, 2)
	syscall.Close(saved)
	w.Close()
	var buf bytes.Buffer
	buf.ReadFrom(r)
	if buf.Len() > 0 {
		t.Errorf("libhdf5 printed to stderr:\n%s", buf.String())
	}
}

func TestXSP3(t *testing.T) {
	dir, cases := testFiles(t)
	ctx := context.Background()
	c := cases["xsp3_f8"]
	h, err := NewXSP3(Options{})(ctx, filepath.Join(dir, c.File), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	bins := c.Shape[2]
	spec := func(f, ch int) []byte {
		o := ((f*c.Shape[1] + ch) * bins) * 8
		return c.full[o : o+bins*8]
	}
	for f := 0; f < c.Shape[0]; f++ {
		for ch := 1; ch <= c.Shape[1]; ch++ {
			kw := map[string]any{"frame": int64(f), "channel": int64(ch)}
			a, err := h.Read(ctx, kw)
			if err != nil {
				t.Fatal(err)
			}
			dt, shape, _ := h.Describe(ctx, kw)
			if a.Dtype != "<f8" || dt != "<f8" || !reflect.DeepEqual(a.Shape, []int{bins}) || !reflect.DeepEqual(shape, a.Shape) {
				t.Fatalf("frame %d channel %d: %s %v / %s %v", f, ch, a.Dtype, a.Shape, dt, shape)
			}
			if !bytes.Equal(a.Data, spec(f, ch-1)) {
				t.Fatalf("frame %d channel %d differs", f, ch)
			}
		}
	}
	// numpy indexing: frame -1 is the last; channel 0 is index -1, the last channel.
	a, err := h.Read(ctx, map[string]any{"frame": int64(-1), "channel": int64(0)})
	if err != nil || !bytes.Equal(a.Data, spec(c.Shape[0]-1, c.Shape[1]-1)) {
		t.Errorf("negative indices: %v", err)
	}
	if _, err := h.Read(ctx, map[string]any{"frame": int64(c.Shape[0]), "channel": int64(1)}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("frame past the end: %v", err)
	}
	if _, err := h.Read(ctx, map[string]any{"frame": int64(0), "channel": int64(9)}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("channel past the end: %v", err)
	}

	one := cases["xsp3_onebin"]
	h2, err := NewXSP3(Options{})(ctx, filepath.Join(dir, one.File), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	a, err = h2.Read(ctx, map[string]any{"frame": int64(2), "channel": int64(2)})
	if err != nil || len(a.Shape) != 0 || !bytes.Equal(a.Data, one.full[(2*2+1)*8:(2*2+2)*8]) {
		t.Errorf("one bin squeezes to a scalar: %+v %v", a, err)
	}
}

func TestEiger(t *testing.T) {
	dir, cases := testFiles(t)
	ctx := context.Background()
	t.Logf("bitshuffle decoded by: %s", BitshuffleSource())
	for _, tc := range []struct {
		name string
		seq  int
		kw   map[string]any
	}{
		{"eiger_raw_3", 3, map[string]any{"images_per_file": int64(5)}},
		{"eiger_lz4_3", 3, map[string]any{"frame_per_point": int64(5)}},
		{"eiger_bslz4_3", 3, map[string]any{"images_per_file": int64(5), "frame_per_point": int64(1)}},
		{"eiger_bslz4_4", 4, map[string]any{"images_per_file": int64(4)}},
	} {
		c := cases[tc.name]
		t.Run(tc.name, func(t *testing.T) {
			prefix := filepath.Join(dir, strings.TrimSuffix(tc.name, fmt.Sprintf("_%d", tc.seq)))
			h, err := NewEiger(Options{})(ctx, prefix, tc.kw)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			kw := map[string]any{"seq_id": int64(tc.seq)}
			dt, shape, err := h.Describe(ctx, kw)
			if err != nil {
				t.Fatal(err)
			}
			a, err := h.Read(ctx, kw)
			if err != nil {
				t.Fatal(err)
			}
			if a.Dtype != c.Dtype || dt != c.Dtype || !reflect.DeepEqual(a.Shape, c.Shape) || !reflect.DeepEqual(shape, c.Shape) {
				t.Fatalf("read %s %v, describe %s %v, want %s %v", a.Dtype, a.Shape, dt, shape, c.Dtype, c.Shape)
			}
			if !bytes.Equal(a.Data, c.full) {
				t.Fatal("stack differs from numpy's")
			}
			// frame_num picks stack[frame_num % images_per_file].
			kw["frame_num"] = int64(6)
			ipf, _ := handlers.IntKwarg(tc.kw, "images_per_file", 0)
			if ipf == 0 {
				ipf, _ = handlers.IntKwarg(tc.kw, "frame_per_point", 0)
			}
			f, err := h.Read(ctx, kw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f.Data, c.rows(6%ipf, 6%ipf+1)) || !reflect.DeepEqual(f.Shape, c.Shape[1:]) {
				t.Errorf("frame_num 6: shape %v", f.Shape)
			}
			files, err := h.Files([]map[string]any{{"seq_id": int64(tc.seq)}})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := filepath.Glob(filepath.Join(dir, tc.name+"_*"))
			if len(files) < 2 || !reflect.DeepEqual(files, want) {
				t.Errorf("files %v, want %v", files, want)
			}
		})
	}

	// A data file that is not there (yet) is a missing file.
	tmp := t.TempDir()
	for _, n := range []string{"eiger_raw_3_master.h5", "eiger_raw_3_data_000001.h5", "eiger_raw_3_data_000002.h5"} {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		os.WriteFile(filepath.Join(tmp, n), b, 0o644)
	}
	h, _ := NewEiger(Options{})(ctx, filepath.Join(tmp, "eiger_raw"), map[string]any{"images_per_file": int64(5)})
	defer h.Close()
	_, err := h.Read(ctx, map[string]any{"seq_id": int64(3)})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "eiger_raw_3_data_000003.h5") {
		t.Errorf("missing data file: %v", err)
	}
	_, err = h.Read(ctx, map[string]any{"seq_id": int64(7)})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "eiger_raw_7_master.h5") {
		t.Errorf("missing master: %v", err)
	}
	if _, err := NewEiger(Options{})(ctx, "x", nil); err == nil {
		t.Error("no images_per_file: no error")
	}
}

// TestConcurrentReads reads different frames of one handler from many goroutines (run
// under -race).
func TestConcurrentReads(t *testing.T) {
	dir, cases := testFiles(t)
	ctx := context.Background()
	for _, name := range []string{"ad_gzip_u2", "ad_multichunk_i4"} {
		c := cases[name]
		h, err := NewAD(Options{})(ctx, filepath.Join(dir, c.File), nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, 1))
				for i := 0; i < 50; i++ {
					p := r.IntN(c.Shape[0])
					a, err := h.Read(ctx, pn(p))
					if err != nil {
						t.Error(err)
						return
					}
					if !bytes.Equal(a.Data, c.rows(p, p+1)) {
						t.Errorf("%s frame %d differs", name, p)
						return
					}
				}
			}(uint64(g))
		}
		wg.Wait()
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	}
	e, err := NewEiger(Options{})(ctx, filepath.Join(dir, "eiger_bslz4"), map[string]any{"images_per_file": int64(5)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			seq := 3 + g%2
			a, err := e.Read(ctx, map[string]any{"seq_id": int64(seq)})
			if err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(a.Data, cases[fmt.Sprintf("eiger_bslz4_%d", seq)].full) {
				t.Errorf("seq %d differs", seq)
			}
		}(g)
	}
	wg.Wait()
}

// TestSWMR reads a file a live h5py writer appends to in SWMR mode: frames appended after
// the handler opened the file are seen because each call refreshes the dataset.
func TestSWMR(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "live.h5")
	cmd := exec.Command(python, filepath.Join("..", "testdata", "swmr_writer.py"), path)
	stdin, _ := cmd.StdinPipe()
	pipe, _ := cmd.StdoutPipe()
	stdout := bufio.NewReader(pipe)
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	ready := func() {
		t.Helper()
		line, err := stdout.ReadString('\n')
		if err != nil || line != "ready\n" {
			msg, _ := os.ReadFile(stderr.Name())
			t.Fatalf("writer: %q %v\n%s", line, err, msg)
		}
	}
	ready() // 3 frames written
	ctx := context.Background()
	h, err := NewADSWMR(Options{})(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	frame := func(i int) []byte {
		b := make([]byte, 16*8*2)
		for k := 0; k < 16*8; k++ {
			v := uint16(i*1000 + k)
			b[2*k], b[2*k+1] = byte(v), byte(v>>8)
		}
		return b
	}
	for i := 0; i < 3; i++ {
		a, err := h.Read(ctx, pn(i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Data, frame(i)) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if _, err := h.Read(ctx, pn(3)); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("frame 3 before it is written: %v", err)
	}
	fmt.Fprintln(stdin, 2)
	ready()
	for i := 3; i < 5; i++ {
		_, shape, err := h.Describe(ctx, pn(i))
		if err != nil {
			t.Fatal(err)
		}
		a, err := h.Read(ctx, pn(i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Data, frame(i)) || !reflect.DeepEqual(shape, a.Shape) {
			t.Fatalf("appended frame %d differs", i)
		}
	}
}

// TestErrorStack checks that failures carry libhdf5's own reason.
func TestErrorStack(t *testing.T) {
	dir, _ := testFiles(t)
	ctx := context.Background()
	_, err := NewAD(Options{})(ctx, filepath.Join(dir, "manifest.json"), nil)
	if !errors.Is(err, errH5) || !strings.Contains(err.Error(), "file signature not found") {
		t.Errorf("not an HDF5 file: %v", err)
	}
	tmp := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(dir, "eiger_raw_3_master.h5"))
	os.WriteFile(filepath.Join(tmp, "eiger_raw_3_master.h5"), b, 0o644)
	for i := 1; i <= 3; i++ {
		os.WriteFile(filepath.Join(tmp, fmt.Sprintf("eiger_raw_3_data_%06d.h5", i)), []byte("not hdf5"), 0o644)
	}
	e, _ := NewEiger(Options{})(ctx, filepath.Join(tmp, "eiger_raw"), map[string]any{"images_per_file": int64(5)})
	defer e.Close()
	_, err = e.Read(ctx, map[string]any{"seq_id": int64(3)})
	if !strings.Contains(err.Error(), "unable to open external file") || !strings.Contains(err.Error(), "eiger_raw_3_data_000001.h5") {
		t.Errorf("broken data file: %v", err)
	}
}
