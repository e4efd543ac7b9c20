package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
	"github.com/brokerfs/brokerfs/handlers"
)

// Externals resolves a run's datums to their resources and kwargs; loaded once per run, on
// the first read of an external field. A failed load is retried on the next read.
type Externals struct {
	run    catalog.Run
	filler *handlers.Filler

	mu        sync.Mutex
	loaded    bool                        // guarded by mu
	resources []*catalog.Resource         // guarded by mu
	datums    map[string]datumRef         // datum id -> ref; guarded by mu
	byRes     map[string][]map[string]any // resource uid -> datum kwargs; guarded by mu

	// first is the run's first datum, described by warm while the rest load; nil before warm.
	// Not under mu, which a load holds throughout: warm and the lookups waiting for the first
	// datum must not wait for every datum to load.
	first atomic.Pointer[firstDatum]
}

// firstDatum is the first datum of the run's first resource that has any, and what its
// handler says of it: an external field's .npy is sized from its first datum, which is this
// one in the usual run, without waiting for every datum to load.
type firstDatum struct {
	done  chan struct{} // closed once the fields below are set
	id    string        // "" when there is none
	res   *catalog.Resource
	kw    map[string]any
	descr string
	shape []int
	err   error
}

type datumRef struct {
	res    *catalog.Resource
	kwargs map[string]any
}

// NewExternals prepares the datum lookups of run.
func NewExternals(run catalog.Run, filler *handlers.Filler) *Externals {
	return &Externals{run: run, filler: filler}
}

func (x *Externals) load(ctx context.Context) error { return x.loadFirst(ctx, nil) }

// loadFirst is load, calling first (when not nil) with the run's first datum as soon as it is
// decoded: the first datum of the first resource that has any, as firstDatum finds it. first
// is not called when the datums were loaded already or fail before the first one.
func (x *Externals) loadFirst(ctx context.Context, first func(res *catalog.Resource, id string, kw map[string]any)) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loaded {
		return nil
	}
	res, err := x.run.Resources(ctx)
	if err != nil {
		return fmt.Errorf("read resources: %w", err)
	}
	datums := map[string]datumRef{}
	byRes := map[string][]map[string]any{}
	for _, r := range res {
		err := x.run.Datums(ctx, r.UID, func(p *catalog.DatumPage) error {
			for i, id := range p.DatumID {
				kw := make(map[string]any, len(p.DatumKwargs))
				for k, col := range p.DatumKwargs {
					if i < len(col) {
						kw[k] = keepValue(col[i])
					}
				}
				id = strings.Clone(id)
				if first != nil {
					// A map of its own: the handler reads it while the load goes on.
					first(r, id, maps.Clone(kw))
					first = nil
				}
				if _, dup := datums[id]; !dup {
					// The first document with an id names it (as firstDatum does).
					datums[id] = datumRef{res: r, kwargs: kw}
				}
				byRes[r.UID] = append(byRes[r.UID], kw)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read datums of resource %s: %w", r.UID, err)
		}
	}
	x.resources, x.datums, x.byRes, x.loaded = res, datums, byRes, true
	return nil
}

// warm loads the datums and describes the first one through its handler, once, in the
// background: sizing an external field's .npy needs both, and doing it while the stream is
// scanned hides the first file's open (an HDF5 file's metadata, read from disk on a fresh
// mount) behind the scan. The first datum is described as soon as the load has decoded it,
// while the load goes on: one pass over the datum documents, not a pass for the first datum
// and another for all (a datum_page holds them all: decoding it is most of the load). The
// handler stays open for the reads that follow; a failure is left to them, which report it.
func (x *Externals) warm() {
	if x.filler == nil {
		return
	}
	fd := &firstDatum{done: make(chan struct{})}
	if !x.first.CompareAndSwap(nil, fd) {
		return
	}
	describe := func(res *catalog.Resource, id string, kw map[string]any) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fd.descr, fd.shape, fd.err = x.filler.Describe(ctx, res, kw)
			fd.id, fd.res, fd.kw = id, res, kw
			close(fd.done)
		}()
	}
	go func() {
		// The first resource's file is opened while its datums are decoded: the open needs
		// only the resource document, and reads the file's metadata from disk.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if res, err := x.run.Resources(ctx); err == nil && len(res) > 0 {
			x.filler.Open(ctx, res[0])
		}
	}()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		found := false
		x.loadFirst(ctx, func(res *catalog.Resource, id string, kw map[string]any) {
			found = true
			describe(res, id, kw)
			// The description is what a lookup waits for, the rest of the load only the
			// reads that follow: let it start before this goroutine goes on decoding.
			runtime.Gosched()
		})
		if found {
			return
		}
		// Loaded before (files.txt read first), or failed before the first datum: read it alone.
		if res, id, kw := x.firstDatum(ctx); res != nil {
			describe(res, id, kw)
		} else {
			close(fd.done)
		}
	}()
}

// firstDatum reads the first datum of the first resource that has one, and only that.
func (x *Externals) firstDatum(ctx context.Context) (*catalog.Resource, string, map[string]any) {
	res, err := x.run.Resources(ctx)
	if err != nil {
		return nil, "", nil
	}
	errFound := errors.New("found")
	for _, r := range res {
		var id string
		var kw map[string]any
		err := x.run.Datums(ctx, r.UID, func(p *catalog.DatumPage) error {
			if len(p.DatumID) == 0 {
				return nil
			}
			id, kw = strings.Clone(p.DatumID[0]), make(map[string]any, len(p.DatumKwargs))
			for k, col := range p.DatumKwargs {
				if len(col) > 0 {
					kw[strings.Clone(k)] = keepValue(col[0])
				}
			}
			return errFound
		})
		if kw != nil && (err == nil || errors.Is(err, errFound)) {
			return r, id, kw
		}
		if err != nil {
			return nil, "", nil
		}
	}
	return nil, "", nil
}

// describedFirst returns what warm's handler said of datum id, when id is the run's first
// datum; it waits for that description (warm started it when the stream's scan began).
func (x *Externals) describedFirst(ctx context.Context, id string) (string, []int, bool) {
	fd := x.first.Load()
	if fd == nil {
		return "", nil, false
	}
	select {
	case <-fd.done:
	case <-ctx.Done():
		return "", nil, false
	}
	if fd.id == "" || fd.id != id || fd.err != nil {
		return "", nil, false
	}
	return fd.descr, append([]int{}, fd.shape...), true
}

// firstOr returns datum id: the run's first datum as warm found it, when id is that one,
// without waiting for the other datums to load; else as datum does.
func (x *Externals) firstOr(ctx context.Context, id string) (datumRef, error) {
	if fd := x.first.Load(); fd != nil {
		select {
		case <-fd.done:
			if fd.id != "" && fd.id == id {
				return datumRef{res: fd.res, kwargs: fd.kw}, nil
			}
		case <-ctx.Done():
			return datumRef{}, ctx.Err()
		}
	}
	return x.datum(ctx, id)
}

// keepValue copies a value out of a backend's reused buffers.
func keepValue(v any) any {
	switch x := v.(type) {
	case *catalog.NDArray:
		c := *x
		c.Shape = append([]int{}, x.Shape...)
		c.Data = append([]byte(nil), x.Data...)
		if x.Strings != nil {
			c.Strings = make([]string, len(x.Strings))
			for i, s := range x.Strings {
				c.Strings[i] = strings.Clone(s)
			}
		}
		return &c
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = keepValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[strings.Clone(k)] = keepValue(e)
		}
		return out
	case string:
		return strings.Clone(x)
	}
	return v
}

func (x *Externals) datum(ctx context.Context, id string) (datumRef, error) {
	if err := x.load(ctx); err != nil {
		return datumRef{}, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	ref, ok := x.datums[id]
	if !ok {
		return datumRef{}, fmt.Errorf("datum %q: no datum document with this id", id)
	}
	return ref, nil
}

// FilesTxt lists the external files the run needs, after root_map, one per line, sorted:
// databroker's get_file_list, ready for `rsync --files-from`.
func (x *Externals) FilesTxt(ctx context.Context) ([]byte, error) {
	if err := x.load(ctx); err != nil {
		return nil, err
	}
	x.mu.Lock()
	res, byRes := x.resources, x.byRes
	x.mu.Unlock()
	seen := map[string]bool{}
	var lines []string
	for _, r := range res {
		files, err := x.filler.Files(ctx, r, byRes[r.UID])
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if !seen[f] {
				seen[f] = true
				lines = append(lines, f)
			}
		}
	}
	sort.Strings(lines)
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), '\n')
	}
	return b, nil
}

// lazyColumn is a field whose rows are filled on demand: external data through the handler
// registry (one datum per row) or a remote run's array read by row range. With a cache, rows
// go into a sparse file of the .npy's exact bytes, data 4096-byte aligned, with a bitmap of the
// rows filled; once every row is there the file is served like any other.
type lazyColumn struct {
	s      *Stream
	field  string
	rows   int
	ids    []string // external: datum id by merged row
	remote bool
	descs  []descRange // remote: stored rows of each descriptor
	order  []int32     // remote: merged row -> stored row; nil for identity

	descMu    sync.Mutex
	described bool // guarded by descMu; only a success is remembered
	dt        encode.Dtype
	rowShape  []int
	rb        int

	spMu   sync.Mutex
	spDone bool          // guarded by spMu
	sp     *cache.Sparse // guarded by spMu; nil without a cache
	hdr    []byte

	fillMu   sync.Mutex
	inflight map[int]chan struct{} // rows being filled; guarded by fillMu

	directOnce sync.Once
	direct     *encode.NPY // see directNPY

	storedMu   sync.Mutex
	storedDone bool // guarded by storedMu
	stored     bool // guarded by storedMu; rows are read as stored (stored.go)
}

// lazyAlign is where the data of a lazily filled .npy starts: a page, so that reading frame k
// through mmap touches frame k's pages and not the header's.
const lazyAlign = 4096

func (lc *lazyColumn) Dtype() encode.Dtype { return lc.dt }
func (lc *lazyColumn) RowShape() []int     { return lc.rowShape }
func (lc *lazyColumn) Rows() int           { return lc.rows }

// describe sets the field's dtype and row shape from its first datum's file (its dataset
// header) or from the remote array's metadata: descriptor shapes are often wrong, and st_size
// must equal what a full read returns.
func (lc *lazyColumn) describe(ctx context.Context) error {
	lc.descMu.Lock()
	defer lc.descMu.Unlock()
	if lc.described {
		return nil
	}
	var descr string
	var shape []int
	switch {
	case lc.rows == 0:
		descr, shape = "<f8", []int{}
	case lc.remote:
		ar, err := arrayReader(ctx, lc.s.run)
		if err != nil {
			return err
		}
		d, sh, ok, err := ar.ArrayField(ctx, lc.descs[0].uid, lc.field)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("field %s: not served as an array", lc.field)
		}
		descr, shape = d, sh
	default:
		var err error
		if descr, shape, err = lc.describeDatums(ctx); err != nil {
			return err
		}
	}
	dt, rb, err := lazyRow(lc.field, descr, shape)
	if err != nil {
		return err
	}
	lc.dt, lc.rowShape, lc.rb, lc.described = dt, append([]int{}, shape...), rb, true
	return nil
}

// lazyRow is the dtype and row size of a lazy field of the dtype descr and row shape its
// handler or array metadata gave.
func lazyRow(field, descr string, shape []int) (encode.Dtype, int, error) {
	dt, err := encode.ParseDtype(littleEndian(descr))
	if err != nil {
		return encode.Dtype{}, 0, fmt.Errorf("field %s: %w", field, err)
	}
	if len(shape) > maxDims {
		return encode.Dtype{}, 0, fmt.Errorf("field %s: %d dimensions per event: numpy reads at most %d", field, len(shape), maxDims)
	}
	rb, err := rowBytesMax(dt, shape, maxFrameBytes)
	if err != nil {
		return encode.Dtype{}, 0, fmt.Errorf("field %s: %w", field, err)
	}
	return dt, rb, nil
}

// describeDatums asks the handlers for the dtype and shape of a datum of the field: the first
// one, else (its file missing, say) a few others spread over the rows, else the data key's
// dtype_numpy and shape. The first file of a run being gone must not hide the others' frames.
func (lc *lazyColumn) describeDatums(ctx context.Context) (string, []int, error) {
	var first error
	tries := []int{0, lc.rows - 1}
	for i := 1; i < 8; i++ {
		tries = append(tries, i*lc.rows/8)
	}
	if len(lc.ids) > 0 {
		if descr, shape, ok := lc.s.ext.describedFirst(ctx, lc.ids[0]); ok {
			return descr, shape, nil
		}
	}
	seen := map[int]bool{}
	for _, r := range tries {
		if r < 0 || r >= len(lc.ids) || seen[r] {
			continue
		}
		seen[r] = true
		ref, err := lc.s.ext.datum(ctx, lc.ids[r])
		if err == nil {
			var descr string
			var shape []int
			if descr, shape, err = lc.s.cfg.Filler.Describe(ctx, ref.res, ref.kwargs); err == nil {
				return descr, shape, nil
			}
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if dk := lc.s.Keys[lc.field]; dk.DtypeNumpy != "" && len(dk.Shape) > 0 {
		// Not logged: the reads of the frames that fail log it, once.
		lc.s.cfg.logger().Debug("describing an external field from its data key: no datum's file could be read",
			"field", lc.field, "dtype", dk.DtypeNumpy, "shape", dk.Shape, "err", first)
		return dk.DtypeNumpy, append([]int{}, dk.Shape...), nil
	}
	return "", nil, first
}

// npy returns the field's .npy.
func (lc *lazyColumn) npy(ctx context.Context) (File, error) {
	if err := lc.describe(ctx); err != nil {
		return nil, err
	}
	if lc.storedProbe(ctx) {
		return newStoredFile(lc), nil
	}
	sp, err := lc.sparse()
	if err != nil {
		return nil, err
	}
	if sp == nil {
		// The same bytes as with a cache: data on a page of its own.
		n := encode.NewNPYAligned(lc, lazyAlign)
		return lazyReaderFile{&readerFile{size: n.Size(), r: n}}, nil
	}
	return &lazyFile{lc: lc, size: int64(len(lc.hdr)) + int64(lc.rows)*int64(lc.rb)}, nil
}

// sparse opens the column's sparse cache file once; nil without a cache. A failure to open it
// serves the field without the cache.
func (lc *lazyColumn) sparse() (*cache.Sparse, error) {
	lc.spMu.Lock()
	defer lc.spMu.Unlock()
	if lc.spDone {
		return lc.sp, nil
	}
	s := lc.s
	st := s.cfg.Store
	if st == nil || s.key == "" {
		lc.spDone = true
		return nil, nil
	}
	lc.hdr = encode.NPYHeaderAligned(lc.dt, append([]int{lc.rows}, lc.rowShape...), lazyAlign)
	key := fmt.Sprintf("%s\x00lazy\x00%s\x00%s%v", s.key, lc.field, lc.dt.Descr, lc.rowShape)
	sp, err := st.OpenSparse(key, lc.hdr, lc.rows, int64(lc.rb))
	if err != nil {
		if _, logged := s.cfg.warned.LoadOrStore(rootCause(err), true); !logged {
			s.cfg.logger().Error("cannot keep external data in the cache; serving without it", "dir", st.Dir(), "field", lc.field, "err", err)
		}
	}
	lc.sp, lc.spDone = sp, true
	return sp, nil
}

// ReadRows implements encode.Array: through the sparse file when there is one, else straight
// from the handlers into dst.
func (lc *lazyColumn) ReadRows(ctx context.Context, from, to int, dst []byte) error {
	sp, err := lc.sparse()
	if err != nil {
		return err
	}
	if sp == nil {
		return directRows{lc}.ReadRows(ctx, from, to, dst)
	}
	if err := lc.ensure(ctx, sp, from, to); err != nil {
		if lc.cacheFailed(err) {
			return directRows{lc}.ReadRows(ctx, from, to, dst)
		}
		return err
	}
	_, err = sp.File().ReadAt(dst[:(to-from)*lc.rb], int64(len(lc.hdr))+int64(from)*int64(lc.rb))
	return err
}

// directNPY is the column's .npy read straight from the handlers, for reads the sparse file
// cannot serve (cacheFailed). One per column: its edge row spares the page-sized reads of a
// mapped frame a decode each.
func (lc *lazyColumn) directNPY() *encode.NPY {
	lc.directOnce.Do(func() { lc.direct = encode.NewNPYAligned(directRows{lc}, lazyAlign) })
	return lc.direct
}

// directRows reads a lazy column's rows straight from the handlers, past its sparse file.
type directRows struct{ *lazyColumn }

func (d directRows) ReadRows(ctx context.Context, from, to int, dst []byte) error {
	for r := from; r < to; r++ {
		if err := d.fill(ctx, r, dst[(r-from)*d.rb:(r-from+1)*d.rb]); err != nil {
			return err
		}
	}
	return nil
}

// cacheError is a failure to keep a filled row in the sparse cache file (cache full, its
// index unavailable): the row itself was read, and the read is served without the cache.
type cacheError struct{ err error }

func (e *cacheError) Error() string { return "keep a filled row in the cache: " + e.err.Error() }
func (e *cacheError) Unwrap() error { return e.err }

// cacheFailed reports whether err is a cacheError, which it logs once per root cause.
func (lc *lazyColumn) cacheFailed(err error) bool {
	var ce *cacheError
	if !errors.As(err, &ce) {
		return false
	}
	s := lc.s
	if _, logged := s.cfg.warned.LoadOrStore(rootCause(ce.err), true); !logged {
		s.cfg.logger().Error("cannot keep external data in the cache; serving without it", "field", lc.field, "err", ce.err)
	}
	return true
}

// fill reads row r from its source into dst.
func (lc *lazyColumn) fill(ctx context.Context, r int, dst []byte) error {
	lc.s.cfg.stats().FramesFilled.Add(1)
	if lc.remote {
		st := r
		if lc.order != nil {
			st = int(lc.order[r])
		}
		desc, row := locate(lc.descs, st)
		ar, err := arrayReader(ctx, lc.s.run)
		if err != nil {
			return err
		}
		return ar.ReadArray(ctx, desc, lc.field, row, row+1, dst)
	}
	id := lc.ids[r]
	ref, err := lc.s.ext.datum(ctx, id)
	if err != nil {
		return err
	}
	// Straight into dst, converted to the field's dtype: no allocation per frame.
	if err := lc.s.cfg.Filler.ReadInto(ctx, ref.res, id, ref.kwargs, dst, lc.dt.Descr, lc.rowShape); err != nil {
		return fmt.Errorf("field %s row %d (datum %s): %w", lc.field, r, id, err)
	}
	return nil
}

// fillWorkers bounds the rows of one read filled at once; fillMemory bounds the frame
// buffers they hold.
const (
	fillWorkers = 4
	fillMemory  = 64 << 20
)

// ensure fills the rows of [from, to) that the sparse file lacks. Rows another reader is
// filling are waited for, not filled twice.
func (lc *lazyColumn) ensure(ctx context.Context, sp *cache.Sparse, from, to int) error {
	var mine []int
	var waits []chan struct{}
	lc.fillMu.Lock()
	for r := from; r < to; r++ {
		if sp.Filled(r) {
			continue
		}
		if ch, ok := lc.inflight[r]; ok {
			waits = append(waits, ch)
			continue
		}
		if lc.inflight == nil {
			lc.inflight = map[int]chan struct{}{}
		}
		lc.inflight[r] = make(chan struct{})
		mine = append(mine, r)
	}
	lc.fillMu.Unlock()

	errs := make([]error, len(mine))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < min(fillWorkers, len(mine), max(1, fillMemory/max(lc.rb, 1))); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, lc.rb)
			for i := range next {
				r := mine[i]
				err := lc.fill(ctx, r, buf)
				if err == nil {
					if err = sp.Fill(r, buf); err != nil {
						err = &cacheError{err}
					}
				} else {
					buf = make([]byte, lc.rb) // a timed-out handler call may still write into it
				}
				errs[i] = err
				lc.fillMu.Lock()
				close(lc.inflight[r])
				delete(lc.inflight, r)
				lc.fillMu.Unlock()
			}
		}()
	}
	for i := range mine {
		next <- i
	}
	close(next)
	wg.Wait()
	// The first failing row's error alone: the same read failing again logs the same line.
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// A row another reader failed to fill is still missing: fill it here.
	for r := from; r < to; r++ {
		if !sp.Filled(r) {
			return lc.ensure(ctx, sp, r, to)
		}
	}
	return nil
}

// lazyReaderFile is the .npy of a lazy column without a cache.
type lazyReaderFile struct{ *readerFile }

func (lazyReaderFile) lazyRows() {}

// lazyFile is the .npy of a lazy column with a sparse cache file.
type lazyFile struct {
	lc   *lazyColumn
	size int64
}

func (f *lazyFile) Size() int64 { return f.size }
func (f *lazyFile) lazyRows()   {}

func (f *lazyFile) Open(context.Context) (Handle, error) { return &lazyHandle{f: f}, nil }

// lazyHandle is one open of a lazy column's .npy. A reader that goes through it in order
// (np.load, cp) has the rows after the ones it reads filled ahead in the background, a few at
// a time, so that the handlers work in parallel with it; a reader of one frame (mmap, whose
// page faults the kernel rounds out to its readahead window) never triggers that: one frame
// read costs about one frame of handler work.
type lazyHandle struct {
	f *lazyFile

	mu sync.Mutex
	// [lo, hi) is the run of bytes this open has read in order so far: reads that overlap or
	// follow it extend it, any other read starts a new one. Guarded by mu.
	lo, hi  int64
	seq     bool // guarded by mu; the run made the reader sequential
	ahead   int  // guarded by mu; rows up to here are filled or being filled ahead
	handed  int  // guarded by mu; 1 + the row last handed over whole by ReadAtRow, or 0
	running bool // guarded by mu; a fill ahead is in progress
}

const (
	// fillAhead is how many rows a sequential reader has filled ahead of it.
	fillAhead = 2 * fillWorkers
	// A reader is sequential once its run of reads in order holds seqRows whole rows and
	// seqBytes bytes: more than the kernel reads for one mmap'ed frame, which is the frame
	// and its readahead around and after it, or for a buffered read of the header.
	seqRows  = 2
	seqBytes = 1 << 20
	// seqSlack is how far past the run a read may start and still continue it: the kernel
	// sends the requests of one readahead together, and they are served in any order.
	seqSlack = 128 << 10
	// seqFar is how far from the run a read of a reader found sequential may land and keep
	// it so: the kernel's requests of a large read() are served in any order.
	seqFar = 4 << 20
	// rowPage is the largest read ReadAtRow takes for a page fault.
	rowPage = 4096
)

// readAhead notes a read of [off, end), whose last row is last, and starts filling rows after
// it once the reader is sequential.
func (h *lazyHandle) readAhead(off, end int64, last int) {
	lc := h.f.lc
	hdr, rb := int64(len(lc.hdr)), int64(lc.rb)
	h.mu.Lock()
	slack := int64(seqSlack)
	if h.seq {
		slack = seqFar
	}
	if h.hi > h.lo && off <= h.hi+slack && end >= h.lo-slack {
		h.lo, h.hi = min(h.lo, off), max(h.hi, end)
	} else {
		h.lo, h.hi, h.seq = off, end, false
	}
	// Whole rows in the run: from the first row starting in it to the last ending in it.
	whole := (h.hi-hdr)/rb - (max(h.lo-hdr, 0)+rb-1)/rb
	h.seq = h.seq || (whole >= seqRows && h.hi-h.lo >= seqBytes)
	sequential := h.seq
	from := max(last+1, h.ahead)
	to := min(lc.rows, last+1+fillAhead)
	start := sequential && !h.running && from < to && lc.sp != nil
	if start {
		h.running, h.ahead = true, to
	}
	h.mu.Unlock()
	if !start {
		return
	}
	lc.s.cfg.stats().FillsAhead.Add(1)
	go func() {
		// Detached from the reader: the rows are wanted whether or not this read is canceled.
		// A failure is left to the read that needs the row, which reports it.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		lc.ensure(ctx, lc.sp, from, to)
		h.mu.Lock()
		h.running = false
		h.mu.Unlock()
	}()
}

// Backing is nil: a lazily filled field is always served by this process (pread of the
// sparse file once its rows are there). Handing the kernel the file once it is complete would
// mix passthrough and cached opens of one inode, which the kernel refuses with EIO while any
// earlier open or mapping is still around.
func (h *lazyHandle) Backing() *os.File { return nil }

func (h *lazyHandle) Close() error { return nil }

func (h *lazyHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, _, _, err := h.ReadAtRow(ctx, p, off)
	return n, err
}

// ReadAtRow implements RowReader.
func (h *lazyHandle) ReadAtRow(ctx context.Context, p []byte, off int64) (n int, rowOff, rowLen int64, err error) {
	lc, size := h.f.lc, h.f.size
	if off >= size {
		return 0, 0, 0, io.EOF
	}
	if rest := size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	hdr := int64(len(lc.hdr))
	if end := off + int64(len(p)); end > hdr && lc.rb > 0 {
		first := int((max(off, hdr) - hdr) / int64(lc.rb))
		last := int((end - hdr - 1) / int64(lc.rb))
		if err := lc.ensure(ctx, lc.sp, first, last+1); err != nil {
			if lc.cacheFailed(err) {
				n, err := lc.directNPY().ReadAt(ctx, p, off)
				return n, 0, 0, err
			}
			return 0, 0, 0, err
		}
		// A read of a page of a larger row, another row than the last one handed over: the
		// page fault of a mapped frame. The reader gets the whole row (RowReader), and is
		// taken to have read it.
		if first == last && off >= hdr && len(p) <= rowPage && len(p) < lc.rb {
			h.mu.Lock()
			if h.handed != first+1 {
				h.handed = first + 1
				rowOff, rowLen = hdr+int64(first)*int64(lc.rb), int64(lc.rb)
			}
			h.mu.Unlock()
		}
		if rowLen > 0 {
			h.readAhead(rowOff, rowOff+rowLen, last)
		} else {
			h.readAhead(off, end, last)
		}
	}
	n, err = lc.sp.File().ReadAt(p, off)
	if err == nil && off+int64(n) == size {
		err = io.EOF
	}
	return n, rowOff, rowLen, err
}
