package hdf5

import (
	"context"
	"encoding/binary"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/npy"
)

// TestDirectChunkReads: frames read through raw chunks decoded in Go equal numpy's values
// and H5Dread's, for chunks of one frame and of several, edge chunks, shuffle with and
// without gzip, big-endian data, one-byte types, other filters (fall back) and chunks never
// written (fall back: fill values).
func TestDirectChunkReads(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(python, filepath.Join("..", "testdata", "gen_chunks.py"), dir).CombinedOutput(); err != nil {
		t.Fatalf("gen_chunks.py: %v\n%s", err, out)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.h5"))
	if len(names) < 9 {
		t.Fatalf("%d files", len(names))
	}
	ctx := context.Background()
	for _, file := range names {
		name := strings.TrimSuffix(filepath.Base(file), ".h5")
		want, err := npy.ReadFile(ctx, strings.TrimSuffix(file, ".h5")+".npy")
		if err != nil {
			t.Fatal(err)
		}
		frame := len(want.Data) / want.Shape[0]
		for _, fpp := range []int{1, 2, 3} {
			for _, direct := range []bool{true, false} {
				h, err := NewAD(Options{NoDirectChunkReads: !direct})(ctx, file, map[string]any{"frame_per_point": int64(fpp)})
				if err != nil {
					t.Fatal(err)
				}
				for p := 0; p*fpp < want.Shape[0]; p++ {
					a, err := h.Read(ctx, pn(p))
					if err != nil {
						t.Fatalf("%s fpp %d point %d: %v", name, fpp, p, err)
					}
					lo, hi := p*fpp*frame, min((p+1)*fpp*frame, len(want.Data))
					if string(a.Data) != string(want.Data[lo:hi]) || a.Dtype != want.Dtype {
						t.Errorf("%s fpp %d point %d direct=%v: %s differs from numpy's %s", name, fpp, p, direct, a.Dtype, want.Dtype)
					}
				}
				sl := h.(*slice)
				if d := sl.d.Load(); d != nil {
					usesDirect := d.chunk != nil
					wantDirect := direct && name != "lzf"
					if usesDirect != wantDirect {
						t.Errorf("%s direct=%v: chunk path %v", name, direct, usesDirect)
					}
				}
				h.Close()
			}
		}
	}
}

// TestDirectChunkConcurrent: many goroutines reading frames of one gzip file get the right
// bytes (pooled buffers and zlib readers are not shared).
func TestDirectChunkConcurrent(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(python, filepath.Join("..", "testdata", "gen_chunks.py"), dir).CombinedOutput(); err != nil {
		t.Fatalf("gen_chunks.py: %v\n%s", err, out)
	}
	ctx := context.Background()
	want, err := npy.ReadFile(ctx, filepath.Join(dir, "multi_frame_edges.npy"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewAD(Options{})(ctx, filepath.Join(dir, "multi_frame_edges.h5"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	frame := len(want.Data) / want.Shape[0]
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				p := (g + i) % want.Shape[0]
				a, err := h.Read(ctx, pn(p))
				if err != nil || string(a.Data) != string(want.Data[p*frame:(p+1)*frame]) {
					t.Errorf("goroutine %d frame %d: %v", g, p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestReadIntoAllocations: reading frames into the caller's buffer through the Filler
// allocates far less than a frame per read, raw or gzip (issue 8: no allocation per frame).
func TestReadIntoAllocations(t *testing.T) {
	dir := t.TempDir()
	script := `
import h5py, numpy as np, sys, os
a = (np.arange(8*256*256) % 65521).astype('<u2').reshape(8, 256, 256)
with h5py.File(os.path.join(sys.argv[1], 'raw.h5'), 'w') as f:
    f.create_dataset('/entry/data/data', data=a)
with h5py.File(os.path.join(sys.argv[1], 'gzip.h5'), 'w') as f:
    f.create_dataset('/entry/data/data', data=a, chunks=(1, 256, 256), compression='gzip', shuffle=True)
`
	if out, err := exec.Command(python, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	const frame = 256 * 256 * 2
	for _, kind := range []string{"raw", "gzip"} {
		reg := handlers.NewRegistry()
		reg.Register(SpecAD, NewAD(Options{}))
		f := handlers.NewFiller(handlers.FillerOptions{Registry: reg})
		res := &catalog.Resource{UID: kind, Spec: SpecAD, ResourcePath: filepath.Join(dir, kind+".h5")}
		ctx := context.Background()
		dst := make([]byte, frame)
		read := func(i int) {
			if err := f.ReadInto(ctx, res, fmt.Sprint(i), pn(i%8), dst, "<u2", []int{1, 256, 256}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 16 {
			read(i) // warm: open, pools
		}
		// The values: element k of frame i is (i*65536 + k) % 65521.
		if v := binary.LittleEndian.Uint16(dst[2*100:]); v != uint16((15%8*65536+100)%65521) {
			t.Errorf("%s: element 100 of frame 7 = %d", kind, v)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const n = 64
		for i := range n {
			read(i)
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / n; per > frame/8 {
			t.Errorf("%s: %d bytes allocated per frame read into the caller's buffer (frame: %d)", kind, per, frame)
		}
		f.Close()
	}
}
