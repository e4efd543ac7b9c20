package nodes

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/memory"
	"github.com/brokerfs/brokerfs/handlers"
)

// fakeFrames is a handler whose datum point_number n is a (1, 2, 3) uint16 frame of
// 100*n + i; it counts its reads.
type fakeFrames struct {
	path  string
	reads *atomic.Int64
	fail  bool
}

func (h *fakeFrames) Describe(context.Context, map[string]any) (string, []int, error) {
	return "<u2", []int{1, 2, 3}, nil
}

func (h *fakeFrames) Read(_ context.Context, kw map[string]any) (*catalog.NDArray, error) {
	h.reads.Add(1)
	if h.fail {
		return nil, fmt.Errorf("open %s: %w", h.path, os.ErrNotExist)
	}
	n, _ := handlers.IntKwarg(kw, "point_number", -1)
	a := &catalog.NDArray{Dtype: "<u2", Shape: []int{1, 2, 3}, Data: make([]byte, 12)}
	for i := 0; i < 6; i++ {
		binary.LittleEndian.PutUint16(a.Data[2*i:], uint16(100*n+i))
	}
	return a, nil
}

func (h *fakeFrames) Files(kw []map[string]any) ([]string, error) { return []string{h.path}, nil }
func (h *fakeFrames) Close() error                                { return nil }

func externalTree(t *testing.T, fail bool, mods ...func(*Config)) (*tree, *atomic.Int64, *[]string) {
	reads := &atomic.Int64{}
	var paths []string
	reg := handlers.NewRegistry()
	reg.Register("AD_HDF5", func(_ context.Context, path string, _ map[string]any) (handlers.Handler, error) {
		paths = append(paths, path)
		return &fakeFrames{path: path, reads: reads, fail: fail}, nil
	})
	cat, err := memory.New(catalogtest.Runs()...)
	if err != nil {
		t.Fatal(err)
	}
	rm, _ := handlers.ParseRootMap([]string{"/old/root=/new/place"})
	tr := newTree(t, cat, func(c *Config) {
		c.Filler = handlers.NewFiller(handlers.FillerOptions{Registry: reg, RootMap: rm, Logger: c.Logger, Retry: 1})
		t.Cleanup(func() { c.Filler.Close() })
		for _, m := range mods {
			m(c)
		}
	})
	return tr, reads, &paths
}

func TestExternalField(t *testing.T) {
	tr, reads, paths := externalTree(t, false)
	p := catalogtest.UIDAssets + "/primary/img.npy"
	// Lookup (which stats the file) needs no fill.
	tr.mustLookup(p)
	if reads.Load() != 0 {
		t.Errorf("lookup filled %d datums", reads.Load())
	}
	descr, shape, data := parseNPY(t, tr.mustRead(p))
	if descr != "<u2" || shape != "3, 1, 2, 3" {
		t.Fatalf("img: %s (%s)", descr, shape)
	}
	for i := 0; i < 18; i++ {
		if got, want := binary.LittleEndian.Uint16(data[2*i:]), uint16(100*(i/6)+i%6); got != want {
			t.Errorf("img flat[%d] = %d, want %d", i, got, want)
		}
	}
	if got := fmt.Sprint(*paths); got != "[/new/place/data/img.h5]" {
		t.Errorf("handler opened %s, want the root-mapped path once", got)
	}
	if got := tr.list(catalogtest.UIDAssets); !contains(got, "files.txt") {
		t.Errorf("run dir lacks files.txt: %v", got)
	}
	if got := string(tr.mustRead(catalogtest.UIDAssets + "/files.txt")); got != "/new/place/data/img.h5\n" {
		t.Errorf("files.txt = %q", got)
	}
}

// TestExternalLazy: a read of one frame's bytes fills that datum and no other.
func TestExternalLazy(t *testing.T) {
	tr, reads, _ := externalTree(t, false)
	f := tr.mustLookup(catalogtest.UIDAssets + "/primary/img.npy").(*file)
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	// Row 2 is bytes [hdr+24, hdr+36); with a cache the header fills a page of its own, so
	// that mmap'ed frames start on page boundaries.
	pre := make([]byte, 10)
	res, errno := f.Read(context.Background(), fh, pre, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	pre, _ = res.Bytes(pre)
	hdr := int64(10 + binary.LittleEndian.Uint16(pre[8:]))
	if hdr != 4096 {
		t.Errorf("header of %d bytes, want 4096", hdr)
	}
	buf := make([]byte, 12)
	res, errno = f.Read(context.Background(), fh, buf, hdr+24)
	if errno != 0 {
		t.Fatal(errno)
	}
	b, _ := res.Bytes(buf)
	if got := binary.LittleEndian.Uint16(b); got != 200 {
		t.Errorf("frame 2 starts with %d, want 200", got)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("reading one frame made %d handler reads, want 1", n)
	}
	// Read again: served from the cache.
	f.Read(context.Background(), fh, buf, hdr+24)
	if n := reads.Load(); n != 1 {
		t.Errorf("second read of a frame made %d handler reads in all, want 1", n)
	}
}

// TestExternalErrors: a failing handler gives EIO and one log line naming the resource, its
// spec and the path after root_map; other fields stay readable; the failure is not cached.
func TestExternalErrors(t *testing.T) {
	tr, reads, _ := externalTree(t, true)
	if _, errno := tr.read(catalogtest.UIDAssets+"/primary/img.npy", 4096); errno != syscall.EIO {
		t.Fatalf("errno %v, want EIO", errno)
	}
	logs := tr.logs.String()
	if strings.Count(logs, "\n") != 1 {
		t.Errorf("want one log line, have %q", logs)
	}
	for _, want := range []string{"9f8e7d6c-0000-4000-8000-0000000000aa", "AD_HDF5", "/new/place/data/img.h5", "after root_map", catalogtest.UIDAssets + "/primary/img.npy"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q: %s", want, logs)
		}
	}
	before := reads.Load()
	tr.read(catalogtest.UIDAssets+"/primary/img.npy", 4096)
	if reads.Load() == before {
		t.Errorf("a failed fill was cached")
	}
	if _, errno := tr.read(catalogtest.UIDAssets+"/primary/time.npy", 4096); errno != 0 {
		t.Errorf("time.npy beside a failing field: %v", errno)
	}
}

func TestUnknownSpec(t *testing.T) {
	cat, _ := memory.New(catalogtest.Runs()...)
	tr := newTree(t, cat, nil)
	_, errno := tr.read(catalogtest.UIDAssets+"/primary/img.npy", 4096)
	if errno != syscall.EIO || !strings.Contains(tr.logs.String(), "unknown handler spec") {
		t.Errorf("unknown spec: errno %v, log %q", errno, tr.logs.String())
	}
}

// TestExternalCacheFails: when a filled frame cannot be kept in the cache (here: the store is
// closed under the mount; else a full cache or an unavailable index), the read is served
// straight from the handler, with one log line, not failed.
func TestExternalCacheFails(t *testing.T) {
	if withoutCache {
		t.Skip("needs a cache")
	}
	var store *cache.Store
	tr, reads, _ := externalTree(t, false, func(c *Config) { store = c.Cache })
	p := catalogtest.UIDAssets + "/primary/img.npy"
	f := tr.mustLookup(p).(*file)
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	store.Close()
	for pass := 0; pass < 2; pass++ {
		buf := make([]byte, 4096+36)
		res, errno := f.Read(context.Background(), fh, buf, 0)
		if errno != 0 {
			t.Fatalf("read with the cache closed: %v\n%s", errno, tr.logString())
		}
		b, _ := res.Bytes(buf)
		if len(b) != len(buf) {
			t.Fatalf("read %d bytes, want %d", len(b), len(buf))
		}
		for i := 0; i < 18; i++ {
			if got, want := binary.LittleEndian.Uint16(b[4096+2*i:]), uint16(100*(i/6)+i%6); got != want {
				t.Fatalf("pass %d: img flat[%d] = %d, want %d", pass, i, got, want)
			}
		}
	}
	if reads.Load() == 0 {
		t.Error("no handler reads")
	}
	if n := strings.Count(tr.logString(), "serving without it"); n != 1 || !tr.logged("field=img") {
		t.Errorf("%d log lines say the cache is not used, want 1:\n%s", n, tr.logString())
	}
}
