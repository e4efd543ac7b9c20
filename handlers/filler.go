package handlers

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/singleflight"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// FillerOptions configure a Filler. Zero values take the defaults.
type FillerOptions struct {
	Registry *Registry
	RootMap  RootMap
	Logger   *slog.Logger
	Clock    catalog.Clock
	// CacheBytes bounds the memory of filled datums (default 256 MiB).
	CacheBytes int64
	// Retry is how long transient I/O errors are retried, as databroker retries for about 2 s.
	Retry time.Duration
	// IdleClose closes a resource's handler when it has not been used for this long.
	IdleClose time.Duration
	// AllowedRoots, when not empty, are the only directories handlers may read under: every
	// file a handler opens, derived files and what libhdf5 opens by itself included (see Guard).
	AllowedRoots []string
	// CallTimeout bounds every handler call (open, Describe, Read, Files; default 30 s), so no
	// FUSE request waits forever on a file that never answers. A call that times out fails
	// with ErrTimeout; its handler is dropped and reopened by the next call.
	CallTimeout time.Duration
	// NegativeTTL is how long a failed read of a datum is remembered and returned again
	// without touching the file, so that a missing file costs the Retry window once, not on
	// every read of every page of the field. Zero (or negative) remembers nothing: callers
	// that want it set DefaultNegativeTTL (5 s); it is opt-in because a caller may rely on
	// a restored file reading at once.
	NegativeTTL time.Duration
}

// DefaultCallTimeout is FillerOptions.CallTimeout's default; DefaultNegativeTTL is the
// negative-cache lifetime brokerfs mounts use (FillerOptions.NegativeTTL).
const (
	DefaultCallTimeout = 30 * time.Second
	DefaultNegativeTTL = 5 * time.Second
)

// ErrChanged is what a handler's read wraps when the file it opened changed since (size,
// mtime): what it knows of the file's layout may be stale. The Filler drops the handler; a
// later read opens the file again.
var ErrChanged = errors.New("file changed since it was opened")

// ErrTimeout means a handler call did not finish within FillerOptions.CallTimeout.
var ErrTimeout = errors.New("handler call timed out")

// Filler fills external data: it turns a datum into its array through the resource's handler,
// keeping handlers open per resource (closed when idle), filled datums in a bounded cache, and
// making concurrent fills of one datum share one read. A failure is never cached.
type Filler struct {
	o     FillerOptions
	guard *Guard
	group singleflight.Group

	mu       sync.Mutex
	handlers map[string]*openHandler // resource uid -> handler; guarded by mu
	lru      *list.List              // of *cached, most recent first; guarded by mu
	cache    map[string]*list.Element
	bytes    int64              // guarded by mu
	failed   map[string]failure // datum key -> recent failure; guarded by mu
	stop     chan struct{}
	closed   bool // guarded by mu
}

type openHandler struct {
	h      Handler
	path   string
	mapped bool
	used   time.Time
}

type failure struct {
	err   error
	until time.Time
}

type cached struct {
	key string
	a   *catalog.NDArray
}

// NewFiller returns a Filler; Close it to close its handlers.
func NewFiller(o FillerOptions) *Filler {
	if o.Registry == nil {
		o.Registry = NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = catalog.SystemClock{}
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 256 << 20
	}
	if o.Retry == 0 {
		o.Retry = 2 * time.Second
	}
	if o.IdleClose == 0 {
		o.IdleClose = time.Minute
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	f := &Filler{o: o, guard: NewGuard(o.AllowedRoots), handlers: map[string]*openHandler{}, lru: list.New(),
		cache: map[string]*list.Element{}, failed: map[string]failure{}, stop: make(chan struct{})}
	go f.closeIdle()
	return f
}

// ResourceError says which resource a fill failed on, with the path after root_map.
type ResourceError struct {
	Resource string
	Spec     string
	Path     string
	Mapped   bool // root_map changed the root
	Err      error
}

func (e *ResourceError) Error() string {
	how := "root_map did not apply"
	if e.Mapped {
		how = "after root_map"
	}
	return fmt.Sprintf("resource %s (spec %s, path %s, %s): %v", e.Resource, e.Spec, e.Path, how, e.Err)
}

func (e *ResourceError) Unwrap() error { return e.Err }

// datumHandler returns the open handler of res for a read of the datum key, unless a read of
// that datum failed moments ago (recentFailure); a failure to open it is remembered as the
// datum's.
func (f *Filler) datumHandler(ctx context.Context, key string, res *catalog.Resource) (*openHandler, error) {
	if err := f.recentFailure(key); err != nil {
		return nil, err
	}
	oh, err := f.handler(ctx, res)
	if err != nil {
		f.remember(key, err)
		return nil, err
	}
	return oh, nil
}

// handler returns the open handler of res, opening it (with retries) when needed.
func (f *Filler) handler(ctx context.Context, res *catalog.Resource) (*openHandler, error) {
	f.mu.Lock()
	if oh, ok := f.handlers[res.UID]; ok {
		oh.used = f.o.Clock.Now()
		f.mu.Unlock()
		return oh, nil
	}
	f.mu.Unlock()
	path, mapped := f.o.RootMap.Resolve(res.Root, res.ResourcePath)
	wrap := func(err error) error {
		return &ResourceError{Resource: res.UID, Spec: res.Spec, Path: path, Mapped: mapped, Err: err}
	}
	if err := f.allowed(path); err != nil {
		return nil, wrap(err)
	}
	v, err, _ := f.group.Do("open\x00"+res.UID, func() (any, error) {
		var h Handler
		err := f.retry(ctx, func() error {
			var late Handler
			return f.call(ctx, "open", func(ctx context.Context) error {
				var err error
				late, err = f.o.Registry.Open(ctx, res.Spec, path, res.ResourceKwargs)
				h = late
				return err
			}, func() {
				// The open finished after its caller gave up: nobody will use it.
				if late != nil {
					late.Close()
				}
			})
		})
		if err != nil {
			return nil, err
		}
		oh := &openHandler{h: h, path: path, mapped: mapped, used: f.o.Clock.Now()}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed {
			h.Close()
			return nil, errors.New("filler closed")
		}
		f.handlers[res.UID] = oh
		return oh, nil
	})
	if err != nil {
		return nil, wrap(err)
	}
	return v.(*openHandler), nil
}

// Open opens res's handler now, when it is not open yet, so that the first Describe or read
// of one of its datums does not wait for the open (an HDF5 file's metadata, read from disk).
// A failure is not kept: the calls that need the handler open it again and report it.
func (f *Filler) Open(ctx context.Context, res *catalog.Resource) error {
	_, err := f.handler(ctx, res)
	return err
}

// call runs fn with the Filler's Guard in its context and a deadline of CallTimeout. When
// fn does not return in time, call returns ErrTimeout at once and leaves fn to finish on its
// own goroutine (a blocked open(2) or libhdf5 call cannot be interrupted); late, if not nil,
// runs after such an abandoned fn returns, to release what it made. No lock of the Filler is
// held while fn runs.
func (f *Filler) call(ctx context.Context, what string, fn func(context.Context) error, late func()) error {
	cctx, cancel := context.WithTimeout(WithGuard(ctx, f.guard), f.o.CallTimeout)
	done := make(chan error, 1)
	var abandoned atomic.Bool
	go func() {
		defer cancel()
		err := fn(cctx)
		done <- err
		if abandoned.Load() && late != nil {
			late()
		}
	}()
	select {
	case err := <-done:
		return err
	case <-cctx.Done():
		select {
		case err := <-done: // finished at the deadline after all
			return err
		default:
		}
		abandoned.Store(true)
		select {
		case err := <-done: // it finished while we marked it: late may not have seen the mark
			return err
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("%s: %w (%v)", what, ErrTimeout, f.o.CallTimeout)
	}
}

// drop forgets the handler of uid if it is still oh (after a timed-out call, which may hold
// the handler's locks), and closes it once its pending calls are done.
func (f *Filler) drop(uid string, oh *openHandler) {
	f.mu.Lock()
	if f.handlers[uid] == oh {
		delete(f.handlers, uid)
	}
	f.mu.Unlock()
	go oh.h.Close()
}

// timedOut drops res's handler if err is a timeout, or says the handler's file changed under
// it (the next read opens it again), and returns err.
func (f *Filler) timedOut(res *catalog.Resource, oh *openHandler, err error) error {
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrChanged) {
		f.drop(res.UID, oh)
	}
	return err
}

// recentFailure returns the remembered failure of key, if it is recent.
func (f *Filler) recentFailure(key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.failed[key]
	if !ok {
		return nil
	}
	if f.o.Clock.Now().Before(fl.until) {
		return fl.err
	}
	delete(f.failed, key)
	return nil
}

// remember keeps a failed read of key for NegativeTTL. A caller giving up (its context
// canceled) is not a failure of the datum.
func (f *Filler) remember(key string, err error) {
	if f.o.NegativeTTL <= 0 || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	now := f.o.Clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failed) >= maxFailures {
		for k, fl := range f.failed {
			if !now.Before(fl.until) {
				delete(f.failed, k)
			}
		}
		if len(f.failed) >= maxFailures {
			clear(f.failed) // a flood of distinct failures: start over rather than grow
		}
	}
	f.failed[key] = failure{err: err, until: now.Add(f.o.NegativeTTL)}
}

// maxFailures bounds the negative cache.
const maxFailures = 1 << 14

// Read returns the array of one datum of res. The array is shared: callers must not modify it.
// With NegativeTTL set, a datum whose read failed within it fails again with the same
// error, at once.
func (f *Filler) Read(ctx context.Context, res *catalog.Resource, datumID string, kwargs map[string]any) (*catalog.NDArray, error) {
	key := res.UID + "\x00" + datumID
	f.mu.Lock()
	if e, ok := f.cache[key]; ok {
		f.lru.MoveToFront(e)
		a := e.Value.(*cached).a
		f.mu.Unlock()
		return a, nil
	}
	f.mu.Unlock()
	if err := f.recentFailure(key); err != nil {
		return nil, err
	}
	// The fill is detached from the caller: a reader that gives up must not fail the others
	// waiting on the same datum.
	dctx := context.WithoutCancel(ctx)
	v, err, _ := f.group.Do(key, func() (any, error) {
		oh, err := f.handler(dctx, res)
		if err != nil {
			f.remember(key, err)
			return nil, err
		}
		var a *catalog.NDArray
		err = f.retry(dctx, func() error {
			return f.call(dctx, "read", func(ctx context.Context) error {
				r, err := oh.h.Read(ctx, kwargs)
				if err == nil {
					if err = checkArray(r); err == nil {
						a = r
					}
				}
				return err
			}, nil)
		})
		if err != nil {
			err = &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped,
				Err: fmt.Errorf("datum %s %v: %w", datumID, kwargs, f.timedOut(res, oh, err))}
			f.remember(key, err)
			return nil, err
		}
		f.put(key, a)
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*catalog.NDArray), nil
}

// checkArray checks that a handler's array is consistent: its data is exactly its shape
// times its dtype's size, so that nobody slices past its end.
func checkArray(a *catalog.NDArray) error {
	if a == nil {
		return errors.New("handler returned no array")
	}
	dt, err := encode.ParseDtype(a.Dtype)
	if err != nil {
		return fmt.Errorf("handler returned dtype %q: %w", a.Dtype, err)
	}
	n, err := ArrayBytes(a.Shape, dt.Size)
	if err != nil {
		return err
	}
	if n != len(a.Data) {
		return fmt.Errorf("handler returned %d bytes for %s %v (%d bytes)", len(a.Data), a.Dtype, a.Shape, n)
	}
	return nil
}

// IntoReader is implemented by handlers that decode a datum straight into a buffer the
// caller owns. ReadInto fills dst with the datum's array in C order, little-endian, when the
// datum's dtype (as Describe gives it) is descr and its shape is shape; for another dtype it
// returns an error wrapping ErrNotDirect and leaves dst alone (the Filler then reads and
// converts); for another shape, an error wrapping ErrShape.
type IntoReader interface {
	ReadInto(ctx context.Context, datumKwargs map[string]any, dst []byte, descr string, shape []int) error
}

// ErrNotDirect is returned by IntoReader.ReadInto when the datum's dtype is not the one asked.
var ErrNotDirect = errors.New("dtype differs: convert")

// ErrShape means a datum's shape is not the shape the caller expects.
var ErrShape = errors.New("shape differs")

// ReadInto fills dst with the datum's array, in C order and converted to the numpy dtype
// descr ("<u2", "<f8", ... as encode.ParseDtype reads it; little-endian). dst must be
// exactly prod(shape) times the dtype's size; a datum of another shape is an error wrapping
// ErrShape. Handlers that implement IntoReader decode straight into dst, without allocating
// per frame; others go through Read and encode.Convert. A datum already in the Read cache is
// converted from there. ReadInto does not add to the Read cache: the caller keeps the bytes.
//
// After an error wrapping ErrTimeout the abandoned handler call may still write into dst
// until it returns: do not reuse dst then.
func (f *Filler) ReadInto(ctx context.Context, res *catalog.Resource, datumID string, kwargs map[string]any, dst []byte, descr string, shape []int) error {
	dt, err := encode.ParseDtype(descr)
	if err != nil {
		return fmt.Errorf("read datum %s into %s: %w", datumID, descr, err)
	}
	if !strings.HasPrefix(dt.Descr, "<") && !strings.HasPrefix(dt.Descr, "|") {
		return fmt.Errorf("read datum %s into %s: want a little-endian dtype", datumID, descr)
	}
	n, err := ArrayBytes(shape, dt.Size)
	if err != nil {
		return fmt.Errorf("read datum %s into %s %v: %w", datumID, descr, shape, err)
	}
	if n != len(dst) {
		return fmt.Errorf("read datum %s into %s %v: buffer of %d bytes, want %d", datumID, descr, shape, len(dst), n)
	}
	key := res.UID + "\x00" + datumID
	f.mu.Lock()
	var a *catalog.NDArray
	if e, ok := f.cache[key]; ok {
		f.lru.MoveToFront(e)
		a = e.Value.(*cached).a
	}
	f.mu.Unlock()
	if a != nil {
		return convertInto(dst, dt, shape, a)
	}
	oh, err := f.datumHandler(ctx, key, res)
	if err != nil {
		return err
	}
	if ir, ok := oh.h.(IntoReader); ok {
		if done, err := f.readDirect(ctx, key, res, oh, datumID, kwargs, func(ctx context.Context) error {
			return ir.ReadInto(ctx, kwargs, dst, dt.Descr, shape)
		}); done {
			return err
		}
	}
	a, err = f.Read(ctx, res, datumID, kwargs)
	if err != nil {
		return err
	}
	if err := convertInto(dst, dt, shape, a); err != nil {
		return &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped,
			Err: fmt.Errorf("datum %s %v: %w", datumID, kwargs, err)}
	}
	return nil
}

// RangeReader is implemented by handlers whose datums can be stored in their files as the
// very bytes ReadInto gives (an HDF5 dataset without filters, little-endian). ReadRange fills
// dst with bytes [off, off+len(dst)) of what ReadInto would give for descr and shape, read
// straight from the file, or returns an error wrapping ErrNotDirect when the datum is not
// stored so (the Filler then decodes it whole). Stored reports whether a datum is, from
// metadata only.
type RangeReader interface {
	ReadRange(ctx context.Context, datumKwargs map[string]any, dst []byte, off int64, descr string, shape []int) error
	Stored(ctx context.Context, datumKwargs map[string]any, descr string, shape []int) bool
}

// Stored reports whether the datum of res with kwargs is kept in its file as the bytes
// ReadInto gives for descr and shape, so that ReadRange reads them without decoding: a copy
// of them elsewhere (a cache) would save nothing. Any failure is a no.
func (f *Filler) Stored(ctx context.Context, res *catalog.Resource, kwargs map[string]any, descr string, shape []int) bool {
	oh, err := f.handler(ctx, res)
	if err != nil {
		return false
	}
	rr, ok := oh.h.(RangeReader)
	if !ok {
		return false
	}
	var yes bool
	err = f.call(ctx, "describe", func(ctx context.Context) error {
		yes = rr.Stored(ctx, kwargs, descr, shape)
		return nil
	}, nil)
	return err == nil && yes
}

// ReadRange fills dst with bytes [off, off+len(dst)) of the datum's array as ReadInto gives
// it: read straight from the file where the handler keeps the datum as those bytes
// (RangeReader), else decoded whole by ReadInto and copied. ReadInto's caveat after a timeout
// holds for dst too.
func (f *Filler) ReadRange(ctx context.Context, res *catalog.Resource, datumID string, kwargs map[string]any, dst []byte, off int64, descr string, shape []int) error {
	dt, n, err := datumRange(datumID, descr, shape, off, len(dst))
	if err != nil {
		return err
	}
	key := res.UID + "\x00" + datumID
	oh, err := f.datumHandler(ctx, key, res)
	if err != nil {
		return err
	}
	if rr, ok := oh.h.(RangeReader); ok && len(dst) > 0 {
		if done, err := f.readDirect(ctx, key, res, oh, datumID, kwargs, func(ctx context.Context) error {
			return rr.ReadRange(ctx, kwargs, dst, off, dt.Descr, shape)
		}); done {
			return err
		}
	}
	if off == 0 && len(dst) == n {
		return f.ReadInto(ctx, res, datumID, kwargs, dst, descr, shape)
	}
	buf := make([]byte, n)
	if err := f.ReadInto(ctx, res, datumID, kwargs, buf, descr, shape); err != nil {
		return err
	}
	copy(dst, buf[off:])
	return nil
}

// datumRange checks that bytes [off, off+n) lie within a datum's array of dtype descr and
// shape, and returns the dtype and the array's size in bytes.
func datumRange(datumID, descr string, shape []int, off int64, n int) (encode.Dtype, int, error) {
	dt, err := encode.ParseDtype(descr)
	if err != nil {
		return dt, 0, fmt.Errorf("read datum %s into %s: %w", datumID, descr, err)
	}
	size, err := ArrayBytes(shape, dt.Size)
	if err != nil {
		return dt, 0, fmt.Errorf("read datum %s into %s %v: %w", datumID, descr, shape, err)
	}
	if off < 0 || n < 0 || off > int64(size) || int64(n) > int64(size)-off {
		return dt, 0, fmt.Errorf("read datum %s: bytes %d to %d of %d", datumID, off, off+int64(n), size)
	}
	return dt, size, nil
}

// SpliceSink takes bytes of a file by splice(2) without copying them: a pipe (go-fuse's
// splice.Pair). LoadFromAt moves up to sz bytes of the file at fd from off on into it and
// returns how many it moved.
type SpliceSink interface {
	LoadFromAt(fd uintptr, sz int, off int64) (int, error)
}

// SpliceRoom is implemented by a SpliceSink of bounded room (a reply's pipe): Slots is how
// many pipe slots are left, a piece of a file taking one per page it spans. A caller that
// moves many small pieces can refuse a read that would not fit before moving any byte.
type SpliceRoom interface {
	Slots() int
}

// RangeSplicer is implemented by RangeReaders that can move a stored datum's bytes from their
// file into a pipe (splice(2)) instead of copying them into a buffer. SpliceRange moves bytes
// [off, off+n) of what ReadInto would give for descr and shape into sink, in order, or fails:
// with an error wrapping ErrNotDirect when they are not stored so. After a failure the sink
// may hold part of them.
type RangeSplicer interface {
	SpliceRange(ctx context.Context, datumKwargs map[string]any, sink SpliceSink, off int64, n int, descr string, shape []int) error
}

// SpliceRange moves bytes [off, off+n) of the datum's array as ReadInto gives it from its
// file into sink (see RangeSplicer). It is a fast path with no fallback and no retries: on any
// error (ErrNotDirect when the handler cannot splice the datum) the sink may hold part of the
// bytes and must be thrown away, and the caller reads the range with ReadRange instead, which
// retries, decodes, and reports failures as usual. The sink may still be written after a
// timeout (the handler's call is abandoned, not stopped): close it, do not reuse it.
func (f *Filler) SpliceRange(ctx context.Context, res *catalog.Resource, datumID string, kwargs map[string]any, sink SpliceSink, off int64, n int, descr string, shape []int) error {
	dt, _, err := datumRange(datumID, descr, shape, off, n)
	if err != nil {
		return err
	}
	if err := f.recentFailure(res.UID + "\x00" + datumID); err != nil {
		return err
	}
	oh, err := f.handler(ctx, res)
	if err != nil {
		return err
	}
	rs, ok := oh.h.(RangeSplicer)
	if !ok {
		return fmt.Errorf("datum %s: handler cannot splice: %w", datumID, ErrNotDirect)
	}
	// A call abandoned at its deadline may hold the handler's locks, and a changed file
	// makes its layout stale: the handler is dropped, as a read drops it, so that the read
	// the caller falls back on opens the file afresh instead of waiting behind that call.
	return f.timedOut(res, oh, f.call(ctx, "read", func(ctx context.Context) error {
		return rs.SpliceRange(ctx, kwargs, sink, off, n, dt.Descr, shape)
	}, nil))
}

// readDirect runs a handler's own read into the caller's buffer (ReadInto, ReadRange) with the
// Filler's retries and deadline. done is false when the handler answered ErrNotDirect: the
// caller decodes the datum instead. Otherwise err, if any, names the resource and is
// remembered, except for failures after which the handler is reopened on the next read
// (ErrShape, ErrChanged).
func (f *Filler) readDirect(ctx context.Context, key string, res *catalog.Resource, oh *openHandler, datumID string, kwargs map[string]any, read func(context.Context) error) (done bool, err error) {
	err = f.retry(ctx, func() error { return f.call(ctx, "read", read, nil) })
	if errors.Is(err, ErrNotDirect) {
		return false, nil
	}
	if err != nil {
		err = &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped,
			Err: fmt.Errorf("datum %s %v: %w", datumID, kwargs, f.timedOut(res, oh, err))}
		if !errors.Is(err, ErrShape) && !errors.Is(err, ErrChanged) { // reopened on the next read
			f.remember(key, err)
		}
	}
	return true, err
}

// convertInto converts a into dst, of dtype dt and the given shape.
func convertInto(dst []byte, dt encode.Dtype, shape []int, a *catalog.NDArray) error {
	if !slices.Equal(a.Shape, shape) {
		return fmt.Errorf("datum has shape %v, want %v: %w", a.Shape, shape, ErrShape)
	}
	st, err := encode.ParseDtype(a.Dtype)
	if err != nil {
		return err
	}
	return encode.Convert(dst, dt, a.Data, st)
}

// Describe returns the dtype and shape a datum of res has, from file metadata only.
func (f *Filler) Describe(ctx context.Context, res *catalog.Resource, kwargs map[string]any) (string, []int, error) {
	oh, err := f.handler(ctx, res)
	if err != nil {
		return "", nil, err
	}
	var dtype string
	var shape []int
	err = f.retry(ctx, func() error {
		return f.call(ctx, "describe", func(ctx context.Context) error {
			d, s, err := oh.h.Describe(ctx, kwargs)
			if err == nil {
				if _, err = encode.ParseDtype(d); err == nil {
					_, err = ArrayBytes(s, 1)
				}
			}
			if err == nil {
				dtype, shape = d, s
			}
			return err
		}, nil)
	})
	if err != nil {
		return "", nil, &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped, Err: f.timedOut(res, oh, err)}
	}
	return dtype, shape, nil
}

// Files lists the files the given datums of res read, after root_map.
//
// When the handler cannot be opened because its file is missing, the resource's own path is the
// answer: files.txt is how users find out which files to fetch.
//
// A path holding a control character (a line break, a tab, NUL, DEL, C1 controls) or invalid
// UTF-8 is never returned: files.txt is one path per line for `rsync --files-from`, and a
// resource_path "good.h5\n/etc/shadow" would add lines of the catalog writer's choosing.
// Such paths are left out, with one log line naming the resource; escaping them instead
// would give names that exist nowhere. With allowed roots, paths outside them are left out
// the same way, and a resource refused as a whole (outside the roots, not a regular file,
// timed out) lists nothing rather than failing the listing.
func (f *Filler) Files(ctx context.Context, res *catalog.Resource, kwargs []map[string]any) ([]string, error) {
	oh, err := f.handler(ctx, res)
	if errors.Is(err, fs.ErrNotExist) {
		path, _ := f.ResolvePath(res)
		return f.safePaths(res, []string{path}), nil
	}
	if errors.Is(err, ErrNotAllowed) || errors.Is(err, ErrNotRegular) || errors.Is(err, ErrTimeout) {
		// A refused resource lists nothing, and does not hide the other resources' files.
		f.o.Logger.Warn("files.txt: resource left out", "resource", res.UID, "spec", res.Spec, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var files []string
	err = f.call(ctx, "list files", func(context.Context) error {
		fl, err := oh.h.Files(kwargs)
		files = fl
		return err
	}, nil)
	if err != nil {
		return nil, &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped, Err: f.timedOut(res, oh, err)}
	}
	return f.safePaths(res, files), nil
}

// safePaths drops the paths that hold control characters, and with allowed roots those
// outside them (a handler listing a directory must not disclose names elsewhere), logging
// once per call.
func (f *Filler) safePaths(res *catalog.Resource, paths []string) []string {
	out := paths[:0:0]
	control, outside := 0, 0
	for _, p := range paths {
		switch {
		case !SafePath(p):
			control++
		case f.guard.Check(p) != nil:
			outside++
		default:
			out = append(out, p)
		}
	}
	if control+outside > 0 {
		f.o.Logger.Warn("files.txt: paths left out", "resource", res.UID, "spec", res.Spec,
			"resource_path", fmt.Sprintf("%q", res.ResourcePath), "control_characters", control, "outside_allowed_roots", outside)
	}
	return out
}

// SafePath reports whether p can be written as one line of a file list: valid UTF-8 with no
// control character (C0, DEL, C1).
func SafePath(p string) bool {
	if !utf8.ValidString(p) {
		return false
	}
	for _, r := range p {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

func (f *Filler) put(key string, a *catalog.NDArray) {
	size := int64(len(a.Data)) + 64
	f.mu.Lock()
	defer f.mu.Unlock()
	if size > f.o.CacheBytes/4 {
		return // one huge datum would flush everything else
	}
	if _, ok := f.cache[key]; ok {
		return
	}
	f.cache[key] = f.lru.PushFront(&cached{key: key, a: a})
	f.bytes += size
	for f.bytes > f.o.CacheBytes {
		e := f.lru.Back()
		c := e.Value.(*cached)
		f.lru.Remove(e)
		delete(f.cache, c.key)
		f.bytes -= int64(len(c.a.Data)) + 64
	}
}

// transient reports whether err may go away by itself: I/O errors from the file system, not
// an unknown spec or a bad kwarg.
func transient(err error) bool {
	if errors.Is(err, ErrUnknownSpec) || errors.Is(err, ErrNotAllowed) || errors.Is(err, ErrNotRegular) ||
		errors.Is(err, ErrTimeout) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrOverflow) {
		return false
	}
	var pe *fs.PathError
	return errors.As(err, &pe) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EAGAIN)
}

// retry calls fn until it succeeds, fails with a non-transient error, or Retry has passed.
func (f *Filler) retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(f.o.Retry)
	wait := 20 * time.Millisecond
	for {
		err := fn()
		if err == nil || !transient(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// closeIdle closes handlers that have not been used for IdleClose.
func (f *Filler) closeIdle() {
	t := time.NewTicker(max(f.o.IdleClose/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		now := f.o.Clock.Now()
		f.mu.Lock()
		var idle []*openHandler
		for uid, oh := range f.handlers {
			if now.Sub(oh.used) >= f.o.IdleClose {
				idle = append(idle, oh)
				delete(f.handlers, uid)
			}
		}
		f.mu.Unlock()
		for _, oh := range idle {
			if err := oh.h.Close(); err != nil {
				f.o.Logger.Warn("close handler", "path", oh.path, "err", err)
			}
		}
	}
}

// Close closes every open handler.
func (f *Filler) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.stop)
	hs := f.handlers
	f.handlers = map[string]*openHandler{}
	f.mu.Unlock()
	var errs []error
	for _, oh := range hs {
		errs = append(errs, oh.h.Close())
	}
	return errors.Join(errs...)
}

// ResolvePath is the path of res's files after root_map, and whether root_map changed it.
func (f *Filler) ResolvePath(res *catalog.Resource) (string, bool) {
	return f.o.RootMap.Resolve(res.Root, res.ResourcePath)
}
