package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// An external field's .npy sized before the stream's scan. Its size is the header and rows ×
// one frame: the rows are what the catalog's index counted for the stream's one descriptor
// (catalog.EventCounter: the rows its EventPages gives, hence the rows the scan makes), the
// frame's dtype and shape what the field's first datum's handler says (the warm-up's
// description, Externals.describedFirst), which is what the scanned column's describe takes
// when the first event's datum is that datum. So the lookup of the .npy waits for the run's
// first event and the warm-up, not for the scan of every event and its cache commit; the
// header's bytes are served from the same facts, and the reads of rows wait for the scan and
// go to the scanned column's file, which must have the same size, dtype and shape (checked:
// otherwise they fail with EIO, and the next lookup gets the scanned file).
//
// Anything else waits for the scan as before: several descriptors (rows merged by time: the
// first row's datum is known only then), a catalog that does not count events exactly, a
// first event without the field or whose datum is not the warm-up's first datum, a warm-up
// that failed. Rows without the field, or whose datum is missing, are counted by the scan as
// well (their reads fail the same way, through the scanned column).

// firstEvent is the datum ids of the external fields in the stream's first event.
type firstEvent struct {
	done chan struct{} // closed once ids is set
	ids  map[string]string
}

// eventRows returns the rows of the stream when the catalog counts them exactly without the
// scan and the stream has one descriptor; ok false otherwise.
func (s *Stream) eventRows(ctx context.Context) (int, bool) {
	if len(s.Descs) != 1 {
		return 0, false
	}
	ec, ok := s.run.(catalog.EventCounter)
	if !ok {
		return 0, false
	}
	return ec.EventRows(ctx, s.Descs[0].UID)
}

// earlyField reports whether field's .npy may be sized before the scan: an external field
// (not a malformed data key, which the scan fails) of a stream with one descriptor, and a
// Filler to describe it.
func (s *Stream) earlyField(field string) bool {
	dk, ok := s.Keys[field]
	return ok && dk.External && dk.Err == nil && s.ext != nil && s.cfg.Filler != nil && len(s.Descs) == 1
}

// startFirstEvent reads, once, the datum ids of the external fields in the stream's first
// event, in the background.
func (s *Stream) startFirstEvent() *firstEvent {
	s.earlyMu.Lock()
	defer s.earlyMu.Unlock()
	if s.firstEv != nil {
		return s.firstEv
	}
	fe := &firstEvent{done: make(chan struct{}), ids: map[string]string{}}
	s.firstEv = fe
	var fields []string
	for _, f := range s.Fields {
		if s.earlyField(f) {
			fields = append(fields, f)
		}
	}
	go func() {
		defer close(fe.done)
		if len(fields) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		errFirst := errors.New("first page read")
		s.run.EventPages(ctx, s.Descs[0].UID, 0, 1, fields, func(p *catalog.EventPage) error {
			if p.FirstRow != 0 || p.Len() == 0 {
				return errFirst
			}
			for _, f := range fields {
				if col := p.Data[f]; col != nil {
					if id, ok := col.At(0).(string); ok && id != "" {
						fe.ids[f] = string(append([]byte(nil), id...))
					}
				}
			}
			return errFirst
		})
	}()
	return fe
}

// built reports whether the stream's table is there already, without waiting for a build
// under way.
func (s *Stream) built() bool {
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	return s.t != nil
}

// EarlyNPY returns the .npy of field sized before the stream's scan, when that is certain (see
// above), and starts the scan; nil when the field's .npy is to be taken from the Table. A
// field's early file, once made, is the one returned from then on: its reads go to the
// scanned column's file.
func (s *Stream) EarlyNPY(ctx context.Context, field string) File {
	if !s.earlyField(field) {
		return nil
	}
	s.earlyMu.Lock()
	f := s.earlyFiles[field]
	s.earlyMu.Unlock()
	if f != nil {
		return f
	}
	if s.built() {
		return nil
	}
	rows, ok := s.eventRows(ctx)
	if !ok || rows <= 0 {
		return nil
	}
	s.warmExternals()
	fe := s.startFirstEvent()
	// The scan the reads will need starts now, beside the warm-up.
	go s.Table(context.Background())
	select {
	case <-fe.done:
	case <-ctx.Done():
		return nil
	}
	id := fe.ids[field]
	if id == "" {
		return nil
	}
	descr, shape, ok := s.ext.describedFirst(ctx, id)
	if !ok {
		return nil
	}
	dt, rb, err := lazyRow(field, descr, shape)
	if err != nil {
		return nil // the scanned column reports it
	}
	hdr := encode.NPYHeaderAligned(dt, append([]int{rows}, shape...), lazyAlign)
	f = &earlyFile{s: s, field: field, dt: dt, shape: shape, rows: rows, hdr: hdr, size: int64(len(hdr)) + int64(rows)*int64(rb)}
	s.earlyMu.Lock()
	defer s.earlyMu.Unlock()
	if g := s.earlyFiles[field]; g != nil {
		return g
	}
	if s.earlyFiles == nil {
		s.earlyFiles = map[string]*earlyFile{}
	}
	s.earlyFiles[field] = f
	s.cfg.stats().EarlyNPY.Add(1)
	s.cfg.logger().Debug("external field sized before its stream's scan", "stream", s.Name, "field", field, "rows", rows, "dtype", dt.Descr, "shape", shape)
	return f
}

// dropEarly forgets field's early file f: the scan disagreed with it.
func (s *Stream) dropEarly(field string, f *earlyFile) {
	s.earlyMu.Lock()
	defer s.earlyMu.Unlock()
	if s.earlyFiles[field] == f {
		delete(s.earlyFiles, field)
	}
}

// earlyFile is an external field's .npy sized before the scan.
type earlyFile struct {
	s     *Stream
	field string
	dt    encode.Dtype
	shape []int
	rows  int
	hdr   []byte
	size  int64
}

func (f *earlyFile) Size() int64 { return f.size }
func (f *earlyFile) lazyRows()   {}

func (f *earlyFile) Open(context.Context) (Handle, error) { return &earlyHandle{f: f}, nil }

// errEarlySize: the scan made the field's .npy other than it was sized before the scan.
var errEarlySize = errors.New("the scan disagrees with the size given before it")

// earlyHandle is one open of an early file: the header from its own facts, the rest through
// one open of the scanned column's .npy.
type earlyHandle struct {
	f *earlyFile

	mu    sync.Mutex
	inner Handle // guarded by mu; nil until a read past the header
}

// scanned waits for the scan and opens the scanned column's .npy, once per handle; a failure
// is not kept (the next read asks again), but for a file that disagrees with the early one.
func (h *earlyHandle) scanned(ctx context.Context) (Handle, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inner != nil {
		return h.inner, nil
	}
	f := h.f
	t, err := f.s.Table(ctx)
	if err != nil {
		return nil, err
	}
	c, ok := t.Fields[f.field]
	if !ok {
		return nil, fmt.Errorf("field %s: not in the scanned table: %w", f.field, errEarlySize)
	}
	file, err := c.NPY(ctx)
	if err != nil {
		return nil, err
	}
	dt, shape, err := c.Describe(ctx)
	if err != nil {
		return nil, err
	}
	if t.Rows != f.rows || file.Size() != f.size || dt.Descr != f.dt.Descr || !slices.Equal(shape, f.shape) {
		f.s.dropEarly(f.field, f)
		err := fmt.Errorf("field %s: %d rows of %s %v, %d bytes, where %d rows of %s %v, %d bytes were given: %w",
			f.field, t.Rows, dt.Descr, shape, file.Size(), f.rows, f.dt.Descr, f.shape, f.size, errEarlySize)
		f.s.cfg.logger().Error("external field sized before the scan", "stream", f.s.Name, "err", err)
		return nil, err
	}
	inner, err := file.Open(ctx)
	if err != nil {
		return nil, err
	}
	h.inner = inner
	return inner, nil
}

func (h *earlyHandle) Backing() *os.File { return nil }

func (h *earlyHandle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inner != nil {
		return h.inner.Close()
	}
	return nil
}

func (h *earlyHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, _, _, err := h.ReadAtRow(ctx, p, off)
	return n, err
}

// ReadAtRow implements RowReader: the header without the scan, the rest as the scanned
// column's file reads it.
func (h *earlyHandle) ReadAtRow(ctx context.Context, p []byte, off int64) (int, int64, int64, error) {
	f := h.f
	if off < 0 {
		return 0, 0, 0, fmt.Errorf("read npy at %d: negative offset", off)
	}
	if off >= f.size {
		return 0, 0, 0, io.EOF
	}
	if end := off + int64(len(p)); end <= int64(len(f.hdr)) {
		return copy(p, f.hdr[off:]), 0, 0, nil
	}
	inner, err := h.scanned(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	if rr, ok := inner.(RowReader); ok {
		return rr.ReadAtRow(ctx, p, off)
	}
	n, err := inner.ReadAt(ctx, p, off)
	return n, 0, 0, err
}

// SplicerOf returns h's Splicer when its reads can be spliced: for the handle of a file sized
// before the scan, the scanned file's handle's (it waits for the scan, as a read of rows does).
func SplicerOf(ctx context.Context, h Handle) (Splicer, bool) {
	if eh, ok := h.(*earlyHandle); ok {
		inner, err := eh.scanned(ctx)
		if err != nil {
			return nil, false // ReadAt reports it
		}
		h = inner
	}
	sp, ok := h.(Splicer)
	return sp, ok
}
