package hdf5

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

// Specs and dataset paths of the handlers in this package (area-detector-handlers 0.0.10).
const (
	SpecAD     = "AD_HDF5"
	SpecADSWMR = "AD_HDF5_SWMR"
	SpecTPX    = "TPX_HDF5"
	SpecEiger  = "AD_EIGER"
	SpecXSP3   = "XSP3"

	KeyAD   = "/entry/data/data"
	KeyTPX  = "/entry/instrument/detector/data"
	KeyXSP3 = "entry/instrument/detector/data"
)

// Options configure the HDF5 handlers. The zero value is ready to use.
type Options struct {
	// ChunkCacheBytes is the raw-data chunk cache of each open dataset; 0 keeps libhdf5's
	// default (1 MiB). A compressed chunk that holds several frames is decompressed once
	// for consecutive frames only if it fits.
	ChunkCacheBytes int
	// NoDirectChunkReads turns off reading deflate/shuffle chunks raw and decompressing
	// them in Go outside libhdf5's lock (chunk.go); every read then goes through H5Dread.
	NoDirectChunkReads bool
}

var errClosed = errors.New("handler is closed")

// NewAD returns the opener of AD_HDF5 resources: datum {point_number} is
// /entry/data/data[pn*fpp:(pn+1)*fpp] with fpp the resource kwarg frame_per_point.
func NewAD(o Options) handlers.Opener { return NewSlice(KeyAD, false, o) }

// NewADSWMR returns the opener of AD_HDF5_SWMR resources: AD_HDF5 with the file opened
// SWMR-read and the dataset refreshed (H5Drefresh) before each call, so frames a writer
// appends after the open are seen.
func NewADSWMR(o Options) handlers.Opener { return NewSlice(KeyAD, true, o) }

// NewTPX returns the opener of TPX_HDF5 resources: AD_HDF5 slicing of
// /entry/instrument/detector/data.
func NewTPX(o Options) handlers.Opener { return NewSlice(KeyTPX, false, o) }

// NewSlice returns the opener of area-detector-handlers' HDF5DatasetSliceHandler over the
// dataset key: datum {point_number} is data[pn*fpp:(pn+1)*fpp], of shape (k, *dims[1:]),
// where k is fpp or, for a last point the file holds only part of, what h5py's slice gives.
// The file is opened with the handler (a missing file wraps fs.ErrNotExist), the dataset at
// first use, as area-detector-handlers does.
func NewSlice(key string, swmr bool, o Options) handlers.Opener {
	return func(ctx context.Context, path string, kw map[string]any) (handlers.Handler, error) {
		fpp, err := handlers.IntKwarg(kw, "frame_per_point", 1)
		if err != nil {
			return nil, err
		}
		if fpp < 1 {
			return nil, fmt.Errorf("frame_per_point %d: want at least 1", fpp)
		}
		ensureFilters()
		f, err := openFile(handlers.GuardOf(ctx), path, swmr)
		if err != nil {
			return nil, err
		}
		return &slice{lazy: lazy{f: f, key: key, swmr: swmr, cache: o.ChunkCacheBytes, noDirect: o.NoDirectChunkReads}, fpp: fpp}, nil
	}
}

// lazy holds an open file and the dataset key in it, opened at first use.
type lazy struct {
	key      string
	swmr     bool
	cache    int
	noDirect bool

	mu     sync.RWMutex // held for reading by calls using f and d, for writing by Close
	closed bool         // guarded by mu
	f      *file
	openMu sync.Mutex // serialises opening d
	d      atomic.Pointer[dataset]
	dimsMu sync.Mutex // guards the dims of a SWMR dataset, which refresh rewrites
}

// use runs fn with the dataset and its current dims (refreshed first in SWMR mode).
func (l *lazy) use(ctx context.Context, fn func(d *dataset, dims []int) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return errClosed
	}
	d := l.d.Load()
	if d == nil {
		l.openMu.Lock()
		if d = l.d.Load(); d == nil {
			var err error
			if d, err = openDataset(l.f, l.key, l.cache); err != nil {
				l.openMu.Unlock()
				return err
			}
			if l.noDirect {
				d.chunk, d.st = nil, nil
			}
			l.d.Store(d)
		}
		l.openMu.Unlock()
	}
	dims := d.dims
	if l.swmr {
		l.dimsMu.Lock()
		err := d.refresh()
		dims = append([]int(nil), d.dims...)
		l.dimsMu.Unlock()
		if err != nil {
			return err
		}
	}
	return fn(d, dims)
}

func (l *lazy) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	if d := l.d.Load(); d != nil {
		errs = append(errs, d.Close())
	}
	errs = append(errs, l.f.Close())
	return errors.Join(errs...)
}

func (l *lazy) Files([]map[string]any) ([]string, error) { return []string{l.f.path}, nil }

type slice struct {
	lazy
	fpp int
}

// rows returns the frames [start, stop) of a point, as h5py slices: stop is clipped to the
// dataset's length and an empty slice is an error.
func (s *slice) rows(kw map[string]any, d *dataset, dims []int) (start, stop int, err error) {
	if _, ok := kw["point_number"]; !ok {
		return 0, 0, errors.New("datum: missing kwarg point_number")
	}
	pn, err := handlers.IntKwarg(kw, "point_number", 0)
	if err != nil {
		return 0, 0, err
	}
	if len(dims) == 0 {
		return 0, 0, fmt.Errorf("dataset %s in %s is a scalar: %w", d.name, d.file, ErrType)
	}
	if pn < 0 {
		return 0, 0, fmt.Errorf("point_number %d: want at least 0: %w", pn, ErrOutOfRange)
	}
	// Checked: pn = 2**62 with fpp 4 must not wrap around to frame 0.
	if start, err = handlers.MulIndex(pn, s.fpp); err != nil || start > math.MaxInt-s.fpp {
		return 0, 0, fmt.Errorf("point_number %d with frame_per_point %d: %w", pn, s.fpp, handlers.ErrOverflow)
	}
	stop = start + s.fpp
	if start >= dims[0] {
		return 0, 0, fmt.Errorf("point_number %d (frames %d to %d with frame_per_point %d): dataset %s in %s has %d frames: %w",
			pn, start, stop, s.fpp, d.name, d.file, dims[0], ErrOutOfRange)
	}
	return start, min(stop, dims[0]), nil
}

// datum is the hyperslab a datum's kwargs select in d: its rows [start, stop), its shape and
// the shape's size in bytes.
func (s *slice) datum(kw map[string]any, d *dataset, dims []int) (start, stop int, shape []int, n int, err error) {
	if start, stop, err = s.rows(kw, d, dims); err != nil {
		return 0, 0, nil, 0, err
	}
	shape = append([]int{stop - start}, dims[1:]...)
	if n, err = handlers.ArrayBytes(shape, d.elem); err != nil {
		return 0, 0, nil, 0, fmt.Errorf("dataset %s in %s: %w", d.name, d.file, err)
	}
	return start, stop, shape, n, nil
}

func (s *slice) Describe(ctx context.Context, kw map[string]any) (dtype string, shape []int, err error) {
	err = s.use(ctx, func(d *dataset, dims []int) error {
		start, stop, err := s.rows(kw, d, dims)
		if err != nil {
			return err
		}
		dtype, shape = d.dtype, append([]int{stop - start}, dims[1:]...)
		return nil
	})
	return dtype, shape, err
}

func (s *slice) Read(ctx context.Context, kw map[string]any) (a *catalog.NDArray, err error) {
	err = s.use(ctx, func(d *dataset, dims []int) error {
		start, _, shape, n, err := s.datum(kw, d, dims)
		if err != nil {
			return err
		}
		buf := make([]byte, n)
		off := make([]int, len(dims))
		off[0] = start
		if err := d.read(off, shape, buf); err != nil {
			return err
		}
		a = &catalog.NDArray{Dtype: d.dtype, Shape: shape, Data: buf}
		return nil
	})
	return a, err
}

// ReadInto reads the datum's frames straight into dst (see handlers.IntoReader): the
// hyperslab goes from the file, or from decoded chunks, into the caller's buffer.
func (s *slice) ReadInto(ctx context.Context, kw map[string]any, dst []byte, descr string, want []int) error {
	return s.use(ctx, func(d *dataset, dims []int) error {
		start, stop, err := s.rows(kw, d, dims)
		if err != nil {
			return err
		}
		shape := append([]int{stop - start}, dims[1:]...)
		if err := intoCheck(d, shape, descr, want, len(dst)); err != nil {
			return err
		}
		off := make([]int, len(dims))
		off[0] = start
		return d.read(off, shape, dst)
	})
}

// storedRange checks a read of bytes [off, off+n) of the datum's frames as they are stored
// (ReadRange, SpliceRange): the datum as ReadInto checks it, the range within it, and the
// dataset stored as read; it returns the datum's frames [start, stop).
func (s *slice) storedRange(kw map[string]any, d *dataset, dims []int, descr string, want []int, off int64, n int) (start, stop int, err error) {
	start, stop, shape, size, err := s.datum(kw, d, dims)
	if err != nil {
		return 0, 0, err
	}
	if err := intoCheck(d, shape, descr, want, size); err != nil {
		return 0, 0, err
	}
	if off < 0 || n < 0 || off > int64(size) || int64(n) > int64(size)-off {
		return 0, 0, fmt.Errorf("dataset %s in %s: bytes %d to %d of a datum of %d: %w", d.name, d.file, off, off+int64(n), size, ErrOutOfRange)
	}
	if d.st == nil {
		return 0, 0, fmt.Errorf("dataset %s in %s is not stored as read: %w", d.name, d.file, handlers.ErrNotDirect)
	}
	return start, stop, nil
}

// ReadRange reads bytes [off, off+len(dst)) of the datum's frames straight from the file
// when the dataset stores them as they are (raw.go), else returns an error wrapping
// handlers.ErrNotDirect (see handlers.RangeReader).
func (s *slice) ReadRange(ctx context.Context, kw map[string]any, dst []byte, off int64, descr string, want []int) error {
	return s.use(ctx, func(d *dataset, dims []int) error {
		start, stop, err := s.storedRange(kw, d, dims, descr, want, off, len(dst))
		if err != nil {
			return err
		}
		err = d.readStored(d.st, int64(start)*d.st.frameBytes+off, dst)
		if errors.Is(err, errFallBack) {
			return fmt.Errorf("dataset %s in %s: frames %d to %d are not stored as read: %w", d.name, d.file, start, stop, handlers.ErrNotDirect)
		}
		if err != nil {
			return fmt.Errorf("read %s frames %d to %d in %s: %w", d.name, start, stop, d.file, err)
		}
		return nil
	})
}

// SpliceRange moves bytes [off, off+n) of the datum's frames from the file into sink when the
// dataset stores them as they are (see handlers.RangeSplicer), with ReadRange's checks.
func (s *slice) SpliceRange(ctx context.Context, kw map[string]any, sink handlers.SpliceSink, off int64, n int, descr string, want []int) error {
	return s.use(ctx, func(d *dataset, dims []int) error {
		start, stop, err := s.storedRange(kw, d, dims, descr, want, off, n)
		if err != nil {
			return err
		}
		err = d.spliceStored(d.st, int64(start)*d.st.frameBytes+off, int64(n), sink)
		if errors.Is(err, errFallBack) {
			return fmt.Errorf("dataset %s in %s: frames %d to %d are not stored as read: %w", d.name, d.file, start, stop, handlers.ErrNotDirect)
		}
		if err != nil {
			return fmt.Errorf("splice %s frames %d to %d in %s: %w", d.name, start, stop, d.file, err)
		}
		return nil
	})
}

// Stored reports whether the datum's frames are stored in the file as ReadInto gives them.
func (s *slice) Stored(ctx context.Context, kw map[string]any, descr string, want []int) bool {
	err := s.use(ctx, func(d *dataset, dims []int) error {
		_, _, shape, n, err := s.datum(kw, d, dims)
		if err != nil {
			return err
		}
		if err := intoCheck(d, shape, descr, want, n); err != nil {
			return err
		}
		if d.st == nil {
			return handlers.ErrNotDirect
		}
		return nil
	})
	return err == nil
}

// intoCheck checks a ReadInto request against the datum's shape and dtype.
func intoCheck(d *dataset, shape []int, descr string, want []int, n int) error {
	if !slices.Equal(shape, want) {
		return fmt.Errorf("dataset %s in %s: datum of shape %v, want %v: %w", d.name, d.file, shape, want, handlers.ErrShape)
	}
	if d.dtype != descr {
		return fmt.Errorf("dataset %s in %s is %s: %w", d.name, d.file, d.dtype, handlers.ErrNotDirect)
	}
	if size, err := handlers.ArrayBytes(shape, d.elem); err != nil || size != n {
		return fmt.Errorf("dataset %s in %s: %d bytes for %v %s: %w", d.name, d.file, n, shape, d.dtype, handlers.ErrShape)
	}
	return nil
}

// NewXSP3 returns the opener of XSP3 (Xspress3) resources: datum {frame, channel} is
// entry/instrument/detector/data[frame, channel-1, :], squeezed (numpy indexing: negative
// indices count from the end). Only that spectrum is read, where area-detector-handlers
// loads the whole dataset.
func NewXSP3(o Options) handlers.Opener {
	return func(ctx context.Context, path string, kw map[string]any) (handlers.Handler, error) {
		key, err := handlers.StringKwarg(kw, "key", KeyXSP3)
		if err != nil {
			return nil, err
		}
		ensureFilters()
		f, err := openFile(handlers.GuardOf(ctx), path, false)
		if err != nil {
			return nil, err
		}
		return &xsp3{lazy: lazy{f: f, key: key, cache: o.ChunkCacheBytes, noDirect: o.NoDirectChunkReads}}, nil
	}
}

type xsp3 struct{ lazy }

// index returns the frame and channel index of a datum and the squeezed shape.
func (x *xsp3) index(kw map[string]any, d *dataset, dims []int) (frame, ch int, shape []int, err error) {
	for _, k := range []string{"frame", "channel"} {
		if _, ok := kw[k]; !ok {
			return 0, 0, nil, fmt.Errorf("datum: missing kwarg %s", k)
		}
	}
	fr, err := handlers.IntKwarg(kw, "frame", 0)
	if err != nil {
		return 0, 0, nil, err
	}
	c, err := handlers.IntKwarg(kw, "channel", 0)
	if err != nil {
		return 0, 0, nil, err
	}
	if len(dims) != 3 {
		return 0, 0, nil, fmt.Errorf("dataset %s in %s has shape %v: want (frames, channels, bins): %w", d.name, d.file, dims, ErrType)
	}
	if frame, err = pyIndex(fr, dims[0], "frame", d); err != nil {
		return 0, 0, nil, err
	}
	if ch, err = pyIndex(c-1, dims[1], "channel-1", d); err != nil {
		return 0, 0, nil, err
	}
	if dims[2] != 1 {
		shape = []int{dims[2]}
	}
	return frame, ch, shape, nil
}

// pyIndex applies numpy's rule for one integer index of an axis of length n.
func pyIndex(i, n int, what string, d *dataset) (int, error) {
	j := i
	if j < 0 {
		j += n
	}
	if j < 0 || j >= n {
		return 0, fmt.Errorf("%s %d: dataset %s in %s has %d along that axis: %w", what, i, d.name, d.file, n, ErrOutOfRange)
	}
	return j, nil
}

func (x *xsp3) Describe(ctx context.Context, kw map[string]any) (dtype string, shape []int, err error) {
	err = x.use(ctx, func(d *dataset, dims []int) error {
		_, _, sh, err := x.index(kw, d, dims)
		dtype, shape = d.dtype, sh
		return err
	})
	return dtype, shape, err
}

func (x *xsp3) Read(ctx context.Context, kw map[string]any) (a *catalog.NDArray, err error) {
	err = x.use(ctx, func(d *dataset, dims []int) error {
		fr, ch, shape, err := x.index(kw, d, dims)
		if err != nil {
			return err
		}
		n, err := handlers.ArrayBytes(dims[2:], d.elem)
		if err != nil {
			return fmt.Errorf("dataset %s in %s: %w", d.name, d.file, err)
		}
		buf := make([]byte, n)
		if err := d.read([]int{fr, ch, 0}, []int{1, 1, dims[2]}, buf); err != nil {
			return err
		}
		a = &catalog.NDArray{Dtype: d.dtype, Shape: shape, Data: buf}
		return nil
	})
	return a, err
}

// ReadInto reads the spectrum straight into dst (see handlers.IntoReader).
func (x *xsp3) ReadInto(ctx context.Context, kw map[string]any, dst []byte, descr string, want []int) error {
	return x.use(ctx, func(d *dataset, dims []int) error {
		fr, ch, shape, err := x.index(kw, d, dims)
		if err != nil {
			return err
		}
		if err := intoCheck(d, shape, descr, want, len(dst)); err != nil {
			return err
		}
		return d.read([]int{fr, ch, 0}, []int{1, 1, dims[2]}, dst)
	})
}
