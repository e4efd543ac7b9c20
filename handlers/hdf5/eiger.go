package hdf5

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/npy"
)

// NewEiger returns the opener of AD_EIGER resources (area-detector-handlers' EigerHandler).
// The resource path is a prefix; datum {seq_id} reads the master file
// {prefix}_{seq_id}_master.h5 and returns the frames of its datasets entry/data/data_000001,
// data_000002, ... (entry/data_* for firmware before 1.3) concatenated along the first axis.
// Those datasets are usually external links to {prefix}_{seq_id}_data_00000N.h5, often
// compressed with bitshuffle/LZ4 (see BitshuffleSource) or LZ4 (Debian's
// hdf5-filter-plugin). With the optional datum kwarg frame_num the datum is the single frame
// stack[frame_num % images_per_file].
//
// Resource kwargs: images_per_file, or frame_per_point as older resources call it; one is
// required, as in area-detector-handlers.
//
// area-detector-handlers 0.0.10 builds the stack from entry[f"data_{1 + i//images_per_file:06d}"]
// for i in range(number of data_* links), which repeats data_000001 whenever images_per_file
// > 1 and a series spans several data files; this handler reads each data file once, in
// order, which is what the files hold and what that code returns whenever images_per_file
// is 1 or the series has one data file.
func NewEiger(o Options) handlers.Opener {
	return func(ctx context.Context, path string, kw map[string]any) (handlers.Handler, error) {
		ipf, err := handlers.IntKwarg(kw, "images_per_file", 0)
		if err != nil {
			return nil, err
		}
		if ipf == 0 {
			if ipf, err = handlers.IntKwarg(kw, "frame_per_point", 0); err != nil {
				return nil, err
			}
		}
		if ipf <= 0 {
			return nil, errors.New("either images_per_file or frame_per_point must be set (and positive)")
		}
		ensureFilters()
		return &eiger{prefix: path, ipf: ipf, cache: o.ChunkCacheBytes, series: map[string]*series{}, g: handlers.GuardOf(ctx)}, nil
	}
}

type eiger struct {
	prefix string
	ipf    int
	cache  int
	g      *handlers.Guard

	mu     sync.Mutex
	series map[string]*series // by seq_id; guarded by mu
	closed bool               // guarded by mu
	wg     sync.WaitGroup     // calls using a series; Close waits for them
}

// series is one open master file and its data datasets, in order.
type series struct {
	master *file
	sets   []*dataset
	frames int
	dtype  string
	elem   int
	frame  []int // the shape of one frame
}

func (e *eiger) seqID(kw map[string]any) (string, error) {
	v, ok := kw["seq_id"]
	if !ok {
		return "", errors.New("datum: missing kwarg seq_id")
	}
	return npy.PyStr(v)
}

func (e *eiger) masterPath(seq string) (string, error) {
	return filepath.Abs(fmt.Sprintf("%s_%s_master.h5", e.prefix, seq))
}

// get returns the open series of a datum; the caller must call e.wg.Done when done with it.
func (e *eiger) get(ctx context.Context, kw map[string]any) (*series, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seq, err := e.seqID(kw)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errClosed
	}
	s, ok := e.series[seq]
	if !ok {
		path, err := e.masterPath(seq)
		if err != nil {
			return nil, err
		}
		if s, err = openSeries(e.g, path, e.cache); err != nil {
			return nil, err
		}
		e.series[seq] = s
	}
	e.wg.Add(1)
	return s, nil
}

func openSeries(g *handlers.Guard, path string, cache int) (_ *series, err error) {
	master, err := openFile(g, path, false)
	if err != nil {
		return nil, err
	}
	s := &series{master: master}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	group := "entry/data"
	g0 := g
	var names []string
	dir := filepath.Dir(path)
	err = call(func() error {
		if ok, err := master.exists(group); err != nil {
			return err
		} else if !ok {
			group = "entry" // Eiger firmware before 1.3
		}
		g, err := master.openGroup(group)
		if err != nil {
			return fmt.Errorf("no group entry/data or entry (%v): %w", err, ErrNoDataset)
		}
		defer g.Close()
		n, err := g.count()
		if err != nil {
			return err
		}
		if n > maxDataSets {
			return fmt.Errorf("group %s has %d links: %w", group, n, handlers.ErrTooLarge)
		}
		for i := range n {
			name, err := g.name(i)
			if err != nil {
				return err
			}
			if strings.HasPrefix(name, "data") {
				names = append(names, name)
			}
		}
		// A data file that is not there yet is a missing file (retried), not a broken link.
		for i := range names {
			name := fmt.Sprintf("data_%06d", i+1)
			ext, err := externalFile(int64(g.id), name)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", group, name, ErrNoDataset)
			}
			if ext != "" {
				if !filepath.IsAbs(ext) {
					ext = filepath.Join(dir, ext)
				}
				if _, err := g0.Stat(ext); err != nil {
					return fmt.Errorf("data file of %s/%s: %w", group, name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open eiger series %s: %w", path, err)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("open eiger series %s: no %s/data_* datasets: %w", path, group, ErrNoDataset)
	}
	for i := range names {
		d, err := openDataset(master, group+"/"+fmt.Sprintf("data_%06d", i+1), cache)
		if err != nil {
			return nil, err
		}
		s.sets = append(s.sets, d)
		if i == 0 {
			s.dtype, s.elem = d.dtype, d.elem
			if len(d.dims) == 0 {
				return nil, fmt.Errorf("dataset %s in %s is a scalar: %w", d.name, path, ErrType)
			}
			s.frame = append([]int{}, d.dims[1:]...)
		}
		if d.dtype != s.dtype || len(d.dims) != len(s.frame)+1 || !equal(d.dims[1:], s.frame) {
			return nil, fmt.Errorf("eiger series %s: %s is %s %v, %s is %s %v: cannot concatenate: %w",
				path, s.sets[0].name, s.dtype, s.sets[0].dims, d.name, d.dtype, d.dims, ErrType)
		}
		if s.frames > math.MaxInt-d.dims[0] {
			return nil, fmt.Errorf("eiger series %s: too many frames: %w", path, handlers.ErrOverflow)
		}
		s.frames += d.dims[0]
	}
	return s, nil
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (s *series) Close() error {
	var errs []error
	for _, d := range s.sets {
		errs = append(errs, d.Close())
	}
	errs = append(errs, s.master.Close())
	return errors.Join(errs...)
}

// frameNum returns the stack index of the datum kwarg frame_num, if given.
func (e *eiger) frameNum(kw map[string]any, s *series) (int, bool, error) {
	if v, ok := kw["frame_num"]; !ok || v == nil {
		return 0, false, nil
	}
	fn, err := handlers.IntKwarg(kw, "frame_num", 0)
	if err != nil {
		return 0, false, err
	}
	i := ((fn % e.ipf) + e.ipf) % e.ipf // Python's %
	if i >= s.frames {
		return 0, false, fmt.Errorf("frame_num %d (frame %d): series %s has %d frames: %w",
			fn, i, s.master.path, s.frames, ErrOutOfRange)
	}
	return i, true, nil
}

func (e *eiger) Describe(ctx context.Context, kw map[string]any) (string, []int, error) {
	s, err := e.get(ctx, kw)
	if err != nil {
		return "", nil, err
	}
	defer e.wg.Done()
	if _, one, err := e.frameNum(kw, s); err != nil {
		return "", nil, err
	} else if one {
		return s.dtype, append([]int{}, s.frame...), nil
	}
	return s.dtype, append([]int{s.frames}, s.frame...), nil
}

func (e *eiger) Read(ctx context.Context, kw map[string]any) (*catalog.NDArray, error) {
	s, err := e.get(ctx, kw)
	if err != nil {
		return nil, err
	}
	defer e.wg.Done()
	frameBytes, err := handlers.ArrayBytes(s.frame, s.elem)
	if err != nil {
		return nil, fmt.Errorf("eiger series %s: %w", s.master.path, err)
	}
	i, one, err := e.frameNum(kw, s)
	if err != nil {
		return nil, err
	}
	if one {
		buf := make([]byte, frameBytes)
		for _, d := range s.sets {
			if i < d.dims[0] {
				off := make([]int, len(d.dims))
				off[0] = i
				if err := d.read(off, append([]int{1}, s.frame...), buf); err != nil {
					return nil, err
				}
				return &catalog.NDArray{Dtype: s.dtype, Shape: append([]int{}, s.frame...), Data: buf}, nil
			}
			i -= d.dims[0]
		}
	}
	total, err := handlers.ArrayBytes(append([]int{s.frames}, s.frame...), s.elem)
	if err != nil {
		return nil, fmt.Errorf("eiger series %s: %w", s.master.path, err)
	}
	buf := make([]byte, total)
	off := 0
	for _, d := range s.sets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := d.dims[0] * frameBytes
		if err := d.read(make([]int, len(d.dims)), d.dims, buf[off:off+n]); err != nil {
			return nil, err
		}
		off += n
	}
	return &catalog.NDArray{Dtype: s.dtype, Shape: append([]int{s.frames}, s.frame...), Data: buf}, nil
}

// ReadInto reads the datum's frames straight into dst (see handlers.IntoReader).
func (e *eiger) ReadInto(ctx context.Context, kw map[string]any, dst []byte, descr string, want []int) error {
	s, err := e.get(ctx, kw)
	if err != nil {
		return err
	}
	defer e.wg.Done()
	i, one, err := e.frameNum(kw, s)
	if err != nil {
		return err
	}
	shape := append([]int{s.frames}, s.frame...)
	if one {
		shape = s.frame
	}
	if !slices.Equal(shape, want) {
		return fmt.Errorf("eiger series %s: datum of shape %v, want %v: %w", s.master.path, shape, want, handlers.ErrShape)
	}
	if s.dtype != descr {
		return fmt.Errorf("eiger series %s is %s: %w", s.master.path, s.dtype, handlers.ErrNotDirect)
	}
	frameBytes, err := handlers.ArrayBytes(s.frame, s.elem)
	if err != nil {
		return err
	}
	if n, err := handlers.ArrayBytes(shape, s.elem); err != nil || n != len(dst) {
		return fmt.Errorf("eiger series %s: %d bytes for %v %s: %w", s.master.path, len(dst), shape, s.dtype, handlers.ErrShape)
	}
	off := 0
	for _, d := range s.sets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if one {
			if i < d.dims[0] {
				o := make([]int, len(d.dims))
				o[0] = i
				return d.read(o, append([]int{1}, s.frame...), dst)
			}
			i -= d.dims[0]
			continue
		}
		n := d.dims[0] * frameBytes
		if err := d.read(make([]int, len(d.dims)), d.dims, dst[off:off+n]); err != nil {
			return err
		}
		off += n
	}
	if one {
		return fmt.Errorf("eiger series %s: frame %d: %w", s.master.path, i, ErrOutOfRange)
	}
	return nil
}

// Files lists, per datum, the files {prefix}_{seq_id}_* (the master and its data files).
// area-detector-handlers globs {prefix}_{seq_id}*, which for seq_id 3 also lists series 30
// to 39; the underscore keeps to the datum's own series.
func (e *eiger) Files(kws []map[string]any) ([]string, error) {
	var out []string
	for _, kw := range kws {
		seq, err := e.seqID(kw)
		if err != nil {
			return nil, err
		}
		m, err := filepath.Glob(globEscape(e.prefix+"_"+seq+"_") + "*")
		if err != nil {
			return nil, err
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (e *eiger) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	ss := e.series
	e.series = nil
	e.mu.Unlock()
	e.wg.Wait()
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
