package hdf5

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	h5 "gonum.org/v1/hdf5"

	"github.com/brokerfs/brokerfs/handlers"
)

// Benchmarks of the read path: one 512x512 uint16 frame, and 100 frames one after another,
// from a contiguous (raw) and a gzip-chunked file, through the AD_HDF5 handler and, as
// baselines measured in the same run, gonum's direct hyperslab read into one reused buffer
// (gonum-ns/op) and into a new buffer per read as the handler must (gonum-fresh-ns/op:
// page-faulting fresh memory costs a raw read more than the read itself), and h5py
// (h5py-ns/op, data[i:i+1]).
//
//	go test -run XXX -bench . -benchtime 2s ./handlers/hdf5/

const benchFrames = 100

func benchFiles(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if out, err := exec.Command(python, filepath.Join("..", "testdata", "bench_hdf5.py"), "gen", dir).CombinedOutput(); err != nil {
		b.Fatalf("bench_hdf5.py gen (needs python3-h5py): %v\n%s", err, out)
	}
	return dir
}

// h5pyTimes runs the h5py baseline on file.
func h5pyTimes(b *testing.B, file string) (frame, stack float64) {
	b.Helper()
	out, err := exec.Command(python, filepath.Join("..", "testdata", "bench_hdf5.py"), "time", file).Output()
	if err != nil {
		b.Fatalf("bench_hdf5.py time: %v", err)
	}
	var r struct{ FrameNs, Stack100Ns float64 }
	if err := json.Unmarshal(out, &struct {
		FrameNs    *float64 `json:"frame_ns"`
		Stack100Ns *float64 `json:"stack100_ns"`
	}{&r.FrameNs, &r.Stack100Ns}); err != nil {
		b.Fatal(err)
	}
	return r.FrameNs, r.Stack100Ns
}

// gonumDirect reads frame i with gonum alone: the baseline without the handler.
type gonumDirect struct {
	f  *h5.File
	ds *h5.Dataset
}

func openDirect(b *testing.B, path string) *gonumDirect {
	f, err := h5.OpenFile(path, h5.F_ACC_RDONLY)
	if err != nil {
		b.Fatal(err)
	}
	ds, err := f.OpenDataset("/entry/data/data")
	if err != nil {
		b.Fatal(err)
	}
	return &gonumDirect{f, ds}
}

func (g *gonumDirect) read(i int, buf []uint16) {
	fsp := g.ds.Space()
	defer fsp.Close()
	fsp.SelectHyperslab([]uint{uint(i), 0, 0}, nil, []uint{1, 512, 512}, nil)
	msp, _ := h5.CreateSimpleDataspace([]uint{1, 512, 512}, nil)
	defer msp.Close()
	if err := g.ds.ReadSubset(&buf, msp, fsp); err != nil {
		panic(err)
	}
}

func (g *gonumDirect) close() { g.ds.Close(); g.f.Close() }

func BenchmarkRead(b *testing.B) {
	dir := benchFiles(b)
	ctx := context.Background()
	const frameBytes = 512 * 512 * 2
	for _, kind := range []string{"raw", "gzip"} {
		file := filepath.Join(dir, kind+".h5")
		h5pyFrame, h5pyStack := h5pyTimes(b, file)
		h, err := NewAD(Options{})(ctx, file, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < benchFrames; i++ { // warm the page cache and open the dataset
			if _, err := h.Read(ctx, pn(i)); err != nil {
				b.Fatal(err)
			}
		}
		direct := openDirect(b, file)
		buf := make([]uint16, 512*512)

		// One frame per op, cycling through the frames so a chunk cache cannot help.
		b.Run("frame/"+kind, func(b *testing.B) {
			b.SetBytes(frameBytes)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := h.Read(ctx, pn(i%benchFrames)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(h5pyFrame, "h5py-ns/op")
			b.ReportMetric(frameNs(b, func(i int) { direct.read(i%benchFrames, buf) }), "gonum-ns/op")
			b.ReportMetric(frameNs(b, func(i int) { direct.read(i%benchFrames, make([]uint16, 512*512)) }), "gonum-fresh-ns/op")
		})
		b.Run("stack100/"+kind, func(b *testing.B) {
			b.SetBytes(benchFrames * frameBytes)
			for i := 0; i < b.N; i++ {
				for k := 0; k < benchFrames; k++ {
					if _, err := h.Read(ctx, pn(k)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(h5pyStack, "h5py-ns/op")
			b.ReportMetric(100*frameNs(b, func(i int) { direct.read(i%benchFrames, buf) }), "gonum-ns/op")
			b.ReportMetric(100*frameNs(b, func(i int) { direct.read(i%benchFrames, make([]uint16, 512*512)) }), "gonum-fresh-ns/op")
		})
		direct.close()
		h.Close()
	}
}

// frameNs times fn over 300 calls (the gonum baseline: testing.Benchmark cannot run inside
// a benchmark).
func frameNs(b *testing.B, fn func(i int)) float64 {
	const n = 300
	t := time.Now()
	for i := 0; i < n; i++ {
		fn(i)
	}
	return float64(time.Since(t).Nanoseconds()) / n
}

// BenchmarkConcurrentGzip: 4 readers reading frames of the gzip file at once, each frame a
// different chunk, through H5Dread (decompression inside libhdf5's global lock, so readers
// take turns) and through direct chunk reads (raw chunk under the lock, inflated by zlib
// outside it). ns/op is per frame; on n cores the direct path can approach n times faster.
//
//	go test -run XXX -bench ConcurrentGzip -benchtime 200x ./handlers/hdf5/
func BenchmarkConcurrentGzip(b *testing.B) {
	dir := benchFiles(b)
	ctx := context.Background()
	file := filepath.Join(dir, "gzip.h5")
	for _, mode := range []struct {
		name string
		o    Options
	}{{"H5Dread", Options{NoDirectChunkReads: true}}, {"direct", Options{}}} {
		for _, readers := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/readers=%d", mode.name, readers), func(b *testing.B) {
				h, err := mode.o.open(ctx, file)
				if err != nil {
					b.Fatal(err)
				}
				defer h.Close()
				for i := 0; i < benchFrames; i++ { // warm the page cache, open the dataset
					if _, err := h.Read(ctx, pn(i)); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(512 * 512 * 2)
				b.ReportAllocs()
				b.ResetTimer()
				var next atomic.Int64
				var wg sync.WaitGroup
				for range readers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1) - 1
							if i >= int64(b.N) {
								return
							}
							if _, err := h.Read(ctx, pn(int(i%benchFrames))); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}

func (o Options) open(ctx context.Context, file string) (handlers.Handler, error) {
	return NewAD(o)(ctx, file, nil)
}
