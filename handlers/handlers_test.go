package handlers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

func TestParseRootMap(t *testing.T) {
	rm, err := ParseRootMap([]string{"/old=/new", "/a/b/=rel/dir", "C:\\data=/mnt/c=d"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rm) != `map[/a/b/:rel/dir /old:/new C:\data:/mnt/c=d]` {
		t.Errorf("root map = %v", rm)
	}
	for _, bad := range [][]string{{"noequals"}, {"=/new"}, {"/old="}, {"/x=/a", "/x=/b"}} {
		if _, err := ParseRootMap(bad); err == nil {
			t.Errorf("ParseRootMap(%q) accepted", bad)
		}
	}
}

// TestResolve follows databroker: exact match on the root, os.path.join semantics.
func TestResolve(t *testing.T) {
	rm := RootMap{"/old": "/new", "/trail/": "/t2"}
	for _, tc := range []struct {
		root, path, want string
		mapped           bool
	}{
		{"/old", "a/b.h5", "/new/a/b.h5", true},
		{"/old/", "a/b.h5", "/old/a/b.h5", false}, // "/old/" is not "/old"
		{"/trail/", "x.h5", "/t2/x.h5", true},
		{"/old", "/abs/x.h5", "/abs/x.h5", true}, // an absolute resource_path wins
		{"", "rel/x.h5", "rel/x.h5", false},
		{"/elsewhere/", "x.h5", "/elsewhere/x.h5", false},
	} {
		got, mapped := rm.Resolve(tc.root, tc.path)
		if got != tc.want || mapped != tc.mapped {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q, %v", tc.root, tc.path, got, mapped, tc.want, tc.mapped)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	open := func(context.Context, string, map[string]any) (Handler, error) { return nil, nil }
	if err := r.Register("AD_HDF5", open); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("AD_HDF5", open); err == nil {
		t.Error("duplicate Register accepted")
	}
	if _, err := r.Open(context.Background(), "NOPE", "/x", nil); !errors.Is(err, ErrUnknownSpec) {
		t.Errorf("unknown spec: %v", err)
	}
	if fmt.Sprint(r.Specs()) != "[AD_HDF5]" {
		t.Errorf("Specs = %v", r.Specs())
	}
}

// counting is a handler whose datum n is a 2-byte array holding n, after `failures` failed
// reads with a missing-file error.
type counting struct {
	reads    atomic.Int64
	failures atomic.Int64
	block    chan struct{}
	closed   atomic.Bool
}

func (h *counting) Describe(context.Context, map[string]any) (string, []int, error) {
	return "<u2", []int{1}, nil
}

func (h *counting) Read(_ context.Context, kw map[string]any) (*catalog.NDArray, error) {
	h.reads.Add(1)
	if h.block != nil {
		<-h.block
	}
	if h.failures.Add(-1) >= 0 {
		return nil, fmt.Errorf("open /x: %w", os.ErrNotExist)
	}
	n, _ := IntKwarg(kw, "n", 0)
	return &catalog.NDArray{Dtype: "<u2", Shape: []int{1}, Data: []byte{byte(n), 0}}, nil
}

func (h *counting) Files([]map[string]any) ([]string, error) { return []string{"/x"}, nil }
func (h *counting) Close() error                             { h.closed.Store(true); return nil }

func newTestFiller(h *counting, o FillerOptions) *Filler {
	reg := NewRegistry()
	reg.Register("C", func(context.Context, string, map[string]any) (Handler, error) { return h, nil })
	o.Registry = reg
	return NewFiller(o)
}

var res = &catalog.Resource{UID: "r1", Spec: "C", Root: "/data", ResourcePath: "f.h5"}

func TestFillerRetryAndNoFailureCache(t *testing.T) {
	h := &counting{}
	h.failures.Store(2)
	f := newTestFiller(h, FillerOptions{Retry: 2 * time.Second})
	defer f.Close()
	a, err := f.Read(context.Background(), res, "r1/5", map[string]any{"n": int64(5)})
	if err != nil || a.Data[0] != 5 || h.reads.Load() != 3 {
		t.Fatalf("transient failures were not retried: %v, reads %d", err, h.reads.Load())
	}
	// A short retry window: the failure is returned, and not cached.
	h2 := &counting{}
	h2.failures.Store(100)
	f2 := newTestFiller(h2, FillerOptions{Retry: time.Millisecond, NegativeTTL: -1})
	defer f2.Close()
	if _, err := f2.Read(context.Background(), res, "r1/1", nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want the missing-file error, got %v", err)
	}
	var re *ResourceError
	if _, err := f2.Read(context.Background(), res, "r1/1", nil); !errors.As(err, &re) || re.Path != "/data/f.h5" || re.Spec != "C" {
		t.Errorf("error %v does not name the resource's path and spec", err)
	}
	if h2.reads.Load() < 2 {
		t.Errorf("a failed fill was cached: %d reads", h2.reads.Load())
	}
}

func TestFillerSharesOneFill(t *testing.T) {
	h := &counting{block: make(chan struct{})}
	f := newTestFiller(h, FillerOptions{})
	defer f.Close()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.Read(context.Background(), res, "r1/0", nil); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(h.block)
	wg.Wait()
	if n := h.reads.Load(); n != 1 {
		t.Errorf("8 concurrent readers of one datum made %d reads, want 1", n)
	}
}

func TestFillerCacheBound(t *testing.T) {
	h := &counting{}
	f := newTestFiller(h, FillerOptions{CacheBytes: 4 * 66}) // room for 4 datums of 2+64 bytes
	defer f.Close()
	for i := 0; i < 6; i++ {
		f.Read(context.Background(), res, fmt.Sprint(i), map[string]any{"n": int64(i)})
	}
	f.mu.Lock()
	n, bytes := len(f.cache), f.bytes
	f.mu.Unlock()
	if n != 4 || bytes != 4*66 {
		t.Errorf("cache holds %d datums, %d bytes; want 4, %d", n, bytes, 4*66)
	}
	before := h.reads.Load()
	f.Read(context.Background(), res, "5", map[string]any{"n": int64(5)}) // newest: cached
	f.Read(context.Background(), res, "0", map[string]any{"n": int64(0)}) // oldest: evicted
	if got := h.reads.Load() - before; got != 1 {
		t.Errorf("%d reads, want 1 (only the evicted datum)", got)
	}
}

func TestFillerClosesIdleHandlers(t *testing.T) {
	h := &counting{}
	f := newTestFiller(h, FillerOptions{IdleClose: 50 * time.Millisecond})
	defer f.Close()
	f.Read(context.Background(), res, "0", nil)
	deadline := time.Now().Add(5 * time.Second)
	for !h.closed.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !h.closed.Load() {
		t.Error("idle handler not closed")
	}
}

func TestAllowedRoots(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ok"), 0o755)
	os.Symlink("/etc", filepath.Join(dir, "ok", "escape"))
	h := &counting{}
	f := newTestFiller(h, FillerOptions{AllowedRoots: []string{filepath.Join(dir, "ok")}})
	defer f.Close()
	for _, tc := range []struct {
		root, path string
		ok         bool
	}{
		{filepath.Join(dir, "ok"), "f.h5", true},
		{"/etc", "shadow", false},
		{filepath.Join(dir, "ok"), "../secret", false},
		{filepath.Join(dir, "ok"), "escape/shadow", false},
		{filepath.Join(dir, "okay"), "f.h5", false},
	} {
		r := &catalog.Resource{UID: tc.root + tc.path, Spec: "C", Root: tc.root, ResourcePath: tc.path}
		_, err := f.Read(context.Background(), r, "d", nil)
		if (err == nil) != tc.ok || (!tc.ok && !errors.Is(err, ErrNotAllowed)) {
			t.Errorf("%s/%s: err %v, want allowed=%v", tc.root, tc.path, err, tc.ok)
		}
	}
}

// ranged is counting with datums stored as read (RangeReader): its stored datum is the 2-byte
// array of 0x0102, except datum n = 9, which it says is not stored so.
type ranged struct {
	counting
	ranges atomic.Int64
}

func (h *ranged) ReadRange(_ context.Context, kw map[string]any, dst []byte, off int64, descr string, shape []int) error {
	if n, _ := IntKwarg(kw, "n", 0); n == 9 {
		return fmt.Errorf("datum 9: %w", ErrNotDirect)
	}
	h.ranges.Add(1)
	copy(dst, []byte{2, 1}[off:])
	return nil
}

func (h *ranged) Stored(_ context.Context, kw map[string]any, descr string, shape []int) bool {
	n, _ := IntKwarg(kw, "n", 0)
	return n != 9 && descr == "<u2"
}

// TestFillerReadRange: ranges of datums come from the handler's ReadRange where it has one and
// the datum is stored so, else from a whole read (ReadInto), the range copied out.
func TestFillerReadRange(t *testing.T) {
	ctx := context.Background()
	plain := &counting{}
	f := newTestFiller(plain, FillerOptions{})
	defer f.Close()
	if f.Stored(ctx, res, map[string]any{"n": int64(5)}, "<u2", []int{1}) {
		t.Error("a handler without ReadRange: Stored says yes")
	}
	for off, want := range []byte{5, 0} {
		b := make([]byte, 1)
		if err := f.ReadRange(ctx, res, "r1/5", map[string]any{"n": int64(5)}, b, int64(off), "<u2", []int{1}); err != nil || b[0] != want {
			t.Errorf("ReadRange of byte %d of a datum holding 5: %v %v, want %d", off, b, err, want)
		}
	}
	if err := f.ReadRange(ctx, res, "r1/5", map[string]any{"n": int64(5)}, make([]byte, 2), 1, "<u2", []int{1}); err == nil {
		t.Error("ReadRange past the datum's end: no error")
	}

	h := &ranged{}
	fr := NewFiller(FillerOptions{Registry: func() *Registry {
		reg := NewRegistry()
		reg.Register("C", func(context.Context, string, map[string]any) (Handler, error) { return h, nil })
		return reg
	}()})
	defer fr.Close()
	if !fr.Stored(ctx, res, map[string]any{"n": int64(5)}, "<u2", []int{1}) || fr.Stored(ctx, res, map[string]any{"n": int64(9)}, "<u2", []int{1}) {
		t.Error("Stored does not follow the handler's")
	}
	b := make([]byte, 1)
	if err := fr.ReadRange(ctx, res, "r1/5", map[string]any{"n": int64(5)}, b, 1, "<u2", []int{1}); err != nil || b[0] != 1 || h.ranges.Load() != 1 || h.reads.Load() != 0 {
		t.Errorf("ReadRange of a stored datum: %v %v, %d range reads, %d whole reads", b, err, h.ranges.Load(), h.reads.Load())
	}
	if err := fr.ReadRange(ctx, res, "r1/9", map[string]any{"n": int64(9)}, b, 0, "<u2", []int{1}); err != nil || b[0] != 9 || h.reads.Load() != 1 {
		t.Errorf("ReadRange of a datum not stored as read: %v %v, %d whole reads; want 9 from a whole read", b, err, h.reads.Load())
	}
}
