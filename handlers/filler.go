package handlers

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/brokerfs/brokerfs/catalog"
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
	// AllowedRoots, when not empty, are the only directories handlers may read under.
	AllowedRoots []string
}

// Filler fills external data: it turns a datum into its array through the resource's handler,
// keeping handlers open per resource (closed when idle), filled datums in a bounded cache, and
// making concurrent fills of one datum share one read. A failure is never cached.
type Filler struct {
	o     FillerOptions
	group singleflight.Group

	mu       sync.Mutex
	handlers map[string]*openHandler // resource uid -> handler; guarded by mu
	lru      *list.List              // of *cached, most recent first; guarded by mu
	cache    map[string]*list.Element
	bytes    int64 // guarded by mu
	stop     chan struct{}
	closed   bool // guarded by mu
}

type openHandler struct {
	h      Handler
	path   string
	mapped bool
	used   time.Time
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
	f := &Filler{o: o, handlers: map[string]*openHandler{}, lru: list.New(), cache: map[string]*list.Element{}, stop: make(chan struct{})}
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
			var err error
			h, err = f.o.Registry.Open(ctx, res.Spec, path, res.ResourceKwargs)
			return err
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

// Read returns the array of one datum of res. The array is shared: callers must not modify it.
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
	// The fill is detached from the caller: a reader that gives up must not fail the others
	// waiting on the same datum.
	dctx := context.WithoutCancel(ctx)
	v, err, _ := f.group.Do(key, func() (any, error) {
		oh, err := f.handler(dctx, res)
		if err != nil {
			return nil, err
		}
		var a *catalog.NDArray
		err = f.retry(dctx, func() error {
			var err error
			a, err = oh.h.Read(dctx, kwargs)
			return err
		})
		if err != nil {
			return nil, &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped,
				Err: fmt.Errorf("datum %s %v: %w", datumID, kwargs, err)}
		}
		f.put(key, a)
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*catalog.NDArray), nil
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
		var err error
		dtype, shape, err = oh.h.Describe(ctx, kwargs)
		return err
	})
	if err != nil {
		return "", nil, &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped, Err: err}
	}
	return dtype, shape, nil
}

// Files lists the files the given datums of res read, after root_map.
//
// When the handler cannot be opened because its file is missing, the resource's own path is the
// answer: files.txt is how users find out which files to fetch.
func (f *Filler) Files(ctx context.Context, res *catalog.Resource, kwargs []map[string]any) ([]string, error) {
	oh, err := f.handler(ctx, res)
	if errors.Is(err, fs.ErrNotExist) {
		path, _ := f.ResolvePath(res)
		return []string{path}, nil
	}
	if err != nil {
		return nil, err
	}
	files, err := oh.h.Files(kwargs)
	if err != nil {
		return nil, &ResourceError{Resource: res.UID, Spec: res.Spec, Path: oh.path, Mapped: oh.mapped, Err: err}
	}
	return files, nil
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
	if errors.Is(err, ErrUnknownSpec) || errors.Is(err, ErrNotAllowed) {
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
