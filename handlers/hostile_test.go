package handlers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestFillerNegativeCache: a failed read is remembered for NegativeTTL (no second trip to
// the file, no second retry window), then tried again.
func TestFillerNegativeCache(t *testing.T) {
	h := &counting{}
	h.failures.Store(1000)
	clk := &manualClock{t: time.Unix(1e9, 0)}
	f := newTestFiller(h, FillerOptions{Retry: time.Millisecond, Clock: clk, NegativeTTL: 5 * time.Second})
	defer f.Close()
	ctx := context.Background()
	_, err1 := f.Read(ctx, res, "r1/1", nil)
	n := h.reads.Load()
	if err1 == nil || n == 0 {
		t.Fatalf("first read: %v after %d reads", err1, n)
	}
	start := time.Now()
	_, err2 := f.Read(ctx, res, "r1/1", nil)
	if err2 == nil || err2.Error() != err1.Error() || h.reads.Load() != n {
		t.Errorf("second read within the TTL: %v, %d reads (want the same error, %d reads)", err2, h.reads.Load(), n)
	}
	// ReadInto shares the memory of the failure.
	if err := f.ReadInto(ctx, res, "r1/1", nil, make([]byte, 2), "<u2", []int{1}); err == nil || h.reads.Load() != n {
		t.Errorf("ReadInto within the TTL: %v, %d reads", err, h.reads.Load())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("remembered failures took %v", d)
	}
	// Another datum is not affected.
	h.failures.Store(0)
	if _, err := f.Read(ctx, res, "r1/2", map[string]any{"n": int64(2)}); err != nil {
		t.Errorf("other datum: %v", err)
	}
	clk.add(6 * time.Second)
	if a, err := f.Read(ctx, res, "r1/1", map[string]any{"n": int64(1)}); err != nil || a.Data[0] != 1 {
		t.Errorf("after the TTL: %v", err)
	}
}

// blocking is a handler whose calls block until release is closed.
type blocking struct {
	counting
	release chan struct{}
}

func (b *blocking) Read(ctx context.Context, kw map[string]any) (*catalog.NDArray, error) {
	<-b.release // ignores ctx, as a blocked open(2) or libhdf5 call does
	return b.counting.Read(ctx, kw)
}

// TestFillerCallTimeout: a handler call that never returns fails after CallTimeout with
// ErrTimeout, holds no lock of the Filler, and other datums and resources still read.
func TestFillerCallTimeout(t *testing.T) {
	b := &blocking{release: make(chan struct{})}
	defer close(b.release)
	reg := NewRegistry()
	reg.Register("B", func(context.Context, string, map[string]any) (Handler, error) { return b, nil })
	c := &counting{}
	reg.Register("C", func(context.Context, string, map[string]any) (Handler, error) { return c, nil })
	var opens int
	var mu sync.Mutex
	reg.Register("HANG", func(ctx context.Context, _ string, _ map[string]any) (Handler, error) {
		mu.Lock()
		opens++
		mu.Unlock()
		select {} // an open that never returns
	})
	f := NewFiller(FillerOptions{Registry: reg, CallTimeout: 100 * time.Millisecond})
	defer f.Close()
	ctx := context.Background()
	rb := &catalog.Resource{UID: "b", Spec: "B", Root: "/d", ResourcePath: "b"}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.Read(ctx, rb, "b/0", nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("blocked read: %v, want ErrTimeout", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("blocked reads returned after %v", d)
	}
	rh := &catalog.Resource{UID: "h", Spec: "HANG", Root: "/d", ResourcePath: "h"}
	if _, err := f.Read(ctx, rh, "h/0", nil); !errors.Is(err, ErrTimeout) {
		t.Errorf("hanging open: %v, want ErrTimeout", err)
	}
	// Nothing is stuck: another resource reads at once, Files and Describe answer.
	rc := &catalog.Resource{UID: "c", Spec: "C", Root: "/d", ResourcePath: "c"}
	if a, err := f.Read(ctx, rc, "c/3", map[string]any{"n": int64(3)}); err != nil || a.Data[0] != 3 {
		t.Errorf("other resource after a timeout: %v", err)
	}
	if _, err := f.Files(ctx, rb, []map[string]any{nil}); err != nil {
		t.Errorf("Files after a timeout: %v", err)
	}
}

// TestFilesControlCharacters: files.txt never gets a path with a line break or another
// control character, and the refusal is logged once naming the resource.
func TestFilesControlCharacters(t *testing.T) {
	var log bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&log, nil))
	h := &counting{}
	f := newTestFiller(h, FillerOptions{Logger: lg})
	defer f.Close()
	ctx := context.Background()
	for _, p := range []string{"good.h5\n/etc/shadow\n/root/.ssh/id_rsa", "a\rb.h5", "tab\t.h5", "nul\x00.h5", "del\x7f.h5",
		"c1\u0085.h5", "bad\xff.h5", "ls\u2028.h5"} {
		log.Reset()
		// The handler cannot be opened (missing): the resource path is the answer.
		reg := NewRegistry()
		reg.Register("M", func(context.Context, string, map[string]any) (Handler, error) {
			return nil, fmt.Errorf("open: %w", os.ErrNotExist)
		})
		fm := NewFiller(FillerOptions{Registry: reg, Logger: lg, Retry: time.Millisecond})
		r := &catalog.Resource{UID: "evil", Spec: "M", Root: "/data", ResourcePath: p}
		files, err := fm.Files(ctx, r, nil)
		fm.Close()
		if err != nil || len(files) != 0 {
			t.Errorf("resource_path %q: files %q, %v; want none", p, files, err)
		}
		if n := strings.Count(log.String(), "\n"); n != 1 || !strings.Contains(log.String(), "evil") {
			t.Errorf("resource_path %q: log %q, want one line naming the resource", p, log.String())
		}
	}
	if files, err := f.Files(ctx, res, []map[string]any{nil}); err != nil || len(files) != 1 || files[0] != "/x" {
		t.Errorf("a good path: %q, %v", files, err)
	}
	for _, ok := range []string{"/data/ü/ß.h5", "/data/with space/x.h5", "/data/日本.tif"} {
		if !SafePath(ok) {
			t.Errorf("SafePath(%q) = false", ok)
		}
	}
}

func TestGuard(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	secret := filepath.Join(dir, "secret")
	for _, d := range []string{ok, secret, filepath.Join(ok, "sub")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(ok, "sub", "f.npy"), []byte("data"), 0o644)
	os.WriteFile(filepath.Join(secret, "s"), []byte("secret"), 0o644)
	os.Symlink(secret, filepath.Join(ok, "link"))
	os.Symlink(filepath.Join(ok, "sub", "f.npy"), filepath.Join(ok, "inner"))
	if err := syscall.Mkfifo(filepath.Join(ok, "fifo.npy"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := NewGuard([]string{ok})
	for _, tc := range []struct {
		path string
		want error
	}{
		{filepath.Join(ok, "sub", "f.npy"), nil},
		{filepath.Join(ok, "inner"), nil},
		{filepath.Join(ok, "sub", "..", "..", "secret", "s"), ErrNotAllowed},
		{filepath.Join(ok, "sub") + "/../../secret/s", ErrNotAllowed},
		{filepath.Join(ok, "link", "s"), ErrNotAllowed},
		{"/etc/passwd", ErrNotAllowed},
		{filepath.Join(ok, "fifo.npy"), ErrNotRegular},
		{filepath.Join(ok, "sub"), ErrNotRegular},
		{filepath.Join(ok, "missing"), os.ErrNotExist},
		{filepath.Join(ok, "link", "missing"), ErrNotAllowed},
	} {
		done := make(chan error, 1)
		go func() {
			f, err := g.Open(tc.path)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("Open(%s) = %v, want %v", tc.path, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Open(%s) blocked", tc.path)
		}
		if _, err := g.Stat(tc.path); (tc.want == nil) != (err == nil) {
			t.Errorf("Stat(%s) = %v, want %v", tc.path, err, tc.want)
		}
	}
	// Without roots: anything regular, never a FIFO, never blocking.
	open := NewGuard(nil)
	if f, err := open.Open(filepath.Join(secret, "s")); err != nil {
		t.Errorf("no roots: %v", err)
	} else {
		f.Close()
	}
	if _, err := open.Open(filepath.Join(ok, "fifo.npy")); !errors.Is(err, ErrNotRegular) {
		t.Errorf("no roots, FIFO: %v", err)
	}
	if _, err := open.Open("/dev/zero"); !errors.Is(err, ErrNotRegular) {
		t.Errorf("no roots, /dev/zero: %v", err)
	}
}

func TestIndexArithmetic(t *testing.T) {
	for _, tc := range []struct {
		a, b int
		ok   bool
	}{
		{1 << 62, 4, false}, {1 << 62, 1, true}, {3, 4, true}, {0, math.MaxInt, true}, {-1, 2, false},
		{math.MaxInt / 2, 2, true}, {math.MaxInt/2 + 1, 2, false},
	} {
		_, err := MulIndex(tc.a, tc.b)
		if (err == nil) != tc.ok {
			t.Errorf("MulIndex(%d, %d) = %v", tc.a, tc.b, err)
		}
	}
	for _, tc := range []struct {
		shape []int
		elem  int
		want  int
		err   error
	}{
		{[]int{2, 512, 512}, 2, 1 << 20, nil},
		{[]int{1 << 40, 1 << 40}, 2, 0, ErrTooLarge},
		{[]int{0, 1 << 62}, 8, 0, nil},
		{[]int{1 << 62, 0}, 8, 0, nil},
		{[]int{-1}, 1, 0, ErrOverflow},
		{[]int{MaxDatumBytes / 2}, 2, MaxDatumBytes, nil},
		{[]int{MaxDatumBytes/2 + 1}, 2, 0, ErrTooLarge},
	} {
		n, err := ArrayBytes(tc.shape, tc.elem)
		if n != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("ArrayBytes(%v, %d) = %d, %v", tc.shape, tc.elem, n, err)
		}
	}
	for _, v := range []any{1e300, -1e300, math.Inf(1), math.NaN(), 9.3e18} {
		if _, err := IntKwarg(map[string]any{"k": v}, "k", 0); err == nil {
			t.Errorf("IntKwarg(%v) accepted", v)
		}
	}
}

// u16 is a handler returning a big-endian uint16 array of shape (2, 3): 0..5.
type u16 struct{ counting }

func (u *u16) Read(context.Context, map[string]any) (*catalog.NDArray, error) {
	u.reads.Add(1)
	b := make([]byte, 12)
	for i := range 6 {
		binary.BigEndian.PutUint16(b[2*i:], uint16(i*1000))
	}
	return &catalog.NDArray{Dtype: ">u2", Shape: []int{2, 3}, Data: b}, nil
}

// direct also decodes into dst when asked for "<u2".
type direct struct {
	u16
	into int
}

func (d *direct) ReadInto(_ context.Context, _ map[string]any, dst []byte, descr string, shape []int) error {
	if descr != "<u2" {
		return ErrNotDirect
	}
	if fmt.Sprint(shape) != "[2 3]" {
		return ErrShape
	}
	d.into++
	for i := range 6 {
		binary.LittleEndian.PutUint16(dst[2*i:], uint16(i*1000))
	}
	return nil
}

func TestReadInto(t *testing.T) {
	ctx := context.Background()
	for _, h := range []Handler{&u16{}, &direct{}} {
		reg := NewRegistry()
		reg.Register("U", func(context.Context, string, map[string]any) (Handler, error) { return h, nil })
		f := NewFiller(FillerOptions{Registry: reg})
		r := &catalog.Resource{UID: "u", Spec: "U", Root: "/d", ResourcePath: "u"}
		dst := make([]byte, 6*8)
		if err := f.ReadInto(ctx, r, "u/0", nil, dst, "<f8", []int{2, 3}); err != nil {
			t.Fatalf("%T: %v", h, err)
		}
		for i := range 6 {
			if v := math.Float64frombits(binary.LittleEndian.Uint64(dst[8*i:])); v != float64(i*1000) {
				t.Errorf("%T: element %d = %v", h, i, v)
			}
		}
		d2 := make([]byte, 12)
		if err := f.ReadInto(ctx, r, "u/0", nil, d2, "<u2", []int{2, 3}); err != nil || binary.LittleEndian.Uint16(d2[10:]) != 5000 {
			t.Errorf("%T <u2: %v % x", h, err, d2)
		}
		d3 := make([]byte, 6)
		if err := f.ReadInto(ctx, r, "u/0", nil, d3, "|u1", []int{3, 2}); !errors.Is(err, ErrShape) {
			t.Errorf("%T: wrong shape: %v", h, err)
		}
		if err := f.ReadInto(ctx, r, "u/0", nil, make([]byte, 5), "|u1", []int{3, 2}); err == nil {
			t.Errorf("%T: short buffer accepted", h)
		}
		if err := f.ReadInto(ctx, r, "u/0", nil, make([]byte, 12), ">u2", []int{2, 3}); err == nil {
			t.Errorf("%T: big-endian target accepted", h)
		}
		f.Close()
	}
}

// TestFillerRefusesBadArrays: a handler returning data that disagrees with its shape is an
// error, never a slice past the end.
func TestFillerRefusesBadArrays(t *testing.T) {
	reg := NewRegistry()
	reg.Register("X", func(context.Context, string, map[string]any) (Handler, error) { return &badArray{}, nil })
	f := NewFiller(FillerOptions{Registry: reg})
	defer f.Close()
	r := &catalog.Resource{UID: "x", Spec: "X", Root: "/d", ResourcePath: "x"}
	if _, err := f.Read(context.Background(), r, "x/0", nil); err == nil {
		t.Error("inconsistent array accepted")
	}
}

type badArray struct{ counting }

func (*badArray) Read(context.Context, map[string]any) (*catalog.NDArray, error) {
	return &catalog.NDArray{Dtype: "<u2", Shape: []int{1 << 40}, Data: make([]byte, 4)}, nil
}

// TestGuardDotDotAfterSymlink: ".." after a symlink is resolved as the kernel does.
func TestGuardDotDotAfterSymlink(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	os.MkdirAll(filepath.Join(ok, "deep"), 0o755)
	os.MkdirAll(filepath.Join(dir, "secret", "in"), 0o755)
	os.WriteFile(filepath.Join(dir, "secret", "x"), []byte("s"), 0o644)
	os.WriteFile(filepath.Join(ok, "x"), []byte("o"), 0o644)
	os.Symlink(filepath.Join(dir, "secret", "in"), filepath.Join(ok, "link"))
	g := NewGuard([]string{ok})
	// Lexically ok/x; for the kernel secret/x.
	p := filepath.Join(ok, "link") + "/../x"
	if b, err := os.ReadFile(p); err != nil || string(b) != "s" {
		t.Fatalf("test setup: %s reads %q, %v", p, b, err)
	}
	if err := g.Check(p); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Check(%s) = %v", p, err)
	}
	if _, err := g.Stat(p); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Stat(%s) = %v", p, err)
	}
	if _, err := g.Open(p); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Open(%s) = %v", p, err)
	}
	if _, err := g.Stat(filepath.Join(ok, "deep") + "/../x"); err != nil {
		t.Errorf("ok/deep/../x: %v", err)
	}
}

// lister lists a file inside and one outside the allowed root.
type lister struct {
	counting
	files []string
}

func (l *lister) Files([]map[string]any) ([]string, error) { return l.files, nil }

func TestFilesOutsideRoots(t *testing.T) {
	dir := t.TempDir()
	inside := filepath.Join(dir, "a.h5")
	l := &lister{files: []string{inside, "/etc/passwd", filepath.Join(dir, "..", "x")}}
	reg := NewRegistry()
	reg.Register("L", func(context.Context, string, map[string]any) (Handler, error) { return l, nil })
	var log bytes.Buffer
	f := NewFiller(FillerOptions{Registry: reg, AllowedRoots: []string{dir}, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	defer f.Close()
	r := &catalog.Resource{UID: "l", Spec: "L", Root: dir, ResourcePath: "a.h5"}
	files, err := f.Files(context.Background(), r, []map[string]any{nil})
	if err != nil || len(files) != 1 || files[0] != inside {
		t.Errorf("Files = %q, %v; want only %s", files, err, inside)
	}
	if !strings.Contains(log.String(), "outside_allowed_roots=2") {
		t.Errorf("log: %q", log.String())
	}
}

// TestFilesRefusedResource: a resource refused as a whole lists nothing, without an error
// that would hide the run's other files.
func TestFilesRefusedResource(t *testing.T) {
	dir := t.TempDir()
	f := newTestFiller(&counting{}, FillerOptions{AllowedRoots: []string{dir}})
	defer f.Close()
	r := &catalog.Resource{UID: "out", Spec: "C", Root: "/etc", ResourcePath: "passwd"}
	if files, err := f.Files(context.Background(), r, nil); err != nil || len(files) != 0 {
		t.Errorf("Files of a resource outside the roots: %q, %v", files, err)
	}
}

// stuckSplicer is a handler whose SpliceRange never returns while it holds the handler's lock
// (a splice(2) from a hung disk, a libhdf5 call), which its ReadRange needs.
type stuckSplicer struct {
	counting
	mu      sync.Mutex
	release chan struct{}
}

func (s *stuckSplicer) SpliceRange(context.Context, map[string]any, SpliceSink, int64, int, string, []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	<-s.release
	return nil
}

func (s *stuckSplicer) ReadRange(_ context.Context, kw map[string]any, dst []byte, off int64, _ string, _ []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := IntKwarg(kw, "n", 0)
	copy(dst, []byte{byte(n), 0}[off:])
	return nil
}

func (s *stuckSplicer) Stored(context.Context, map[string]any, string, []int) bool { return true }

// TestSpliceRangeTimeoutDropsHandler: a SpliceRange that times out leaves its call running,
// maybe holding the handler's locks, as a timed-out read does: the handler is dropped, so that
// the ReadRange its caller falls back on opens the file afresh instead of waiting for the
// abandoned call, and timing out in turn.
func TestSpliceRangeTimeoutDropsHandler(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var opens atomic.Int64
	reg := NewRegistry()
	reg.Register("S", func(context.Context, string, map[string]any) (Handler, error) {
		opens.Add(1)
		return &stuckSplicer{release: release}, nil
	})
	f := NewFiller(FillerOptions{Registry: reg, CallTimeout: 100 * time.Millisecond, Retry: time.Millisecond})
	defer f.Close()
	ctx := context.Background()
	rs := &catalog.Resource{UID: "s", Spec: "S", Root: "/d", ResourcePath: "s"}
	kw := map[string]any{"n": int64(7)}
	if err := f.SpliceRange(ctx, rs, "s/7", kw, nil, 0, 2, "<u2", []int{1}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("stuck SpliceRange: %v, want ErrTimeout", err)
	}
	dst := make([]byte, 2)
	if err := f.ReadRange(ctx, rs, "s/7", kw, dst, 0, "<u2", []int{1}); err != nil || dst[0] != 7 {
		t.Errorf("ReadRange after a SpliceRange timed out: %v, %v", dst, err)
	}
	if n := opens.Load(); n != 2 {
		t.Errorf("%d opens, want 2 (the handler of the stuck call dropped)", n)
	}
}
