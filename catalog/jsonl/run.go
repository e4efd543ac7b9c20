package jsonl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
)

// run is a snapshot of one run file: it answers from the file's first size bytes, as they were
// when Catalog.Run was called, even while a writer appends to the file.
type run struct {
	path  string
	start *catalog.Start
	ix    *index
	size  int64
	// version is the file's filestore.VersionKey at the snapshot.
	version string

	mu       sync.Mutex
	stopDone bool          // guarded by mu
	stopDoc  *catalog.Stop // guarded by mu
}

var (
	_ catalog.Run       = (*run)(nil)
	_ catalog.Versioner = (*run)(nil)
)

// Version implements catalog.Versioner: the file as it was when the run was opened.
func (r *run) Version(context.Context) (string, error) { return r.version, nil }

// Start implements catalog.Run.
func (r *run) Start() *catalog.Start { return r.start }

// Stop implements catalog.Run. The stop is normally the last line, so Stop reads the file's tail
// backwards to its last line first; only when that is not a stop (a live run, or a stop written
// out of order) does it fall back to indexing the whole file.
func (r *run) Stop(ctx context.Context) (*catalog.Stop, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.stopDone {
		s, err := r.findStop(ctx)
		if err != nil {
			return nil, err
		}
		r.stopDoc, r.stopDone = s, true
	}
	if r.stopDoc == nil {
		return nil, fmt.Errorf("stop of run %s: %w", r.start.UID, catalog.ErrNotFound)
	}
	return r.stopDoc, nil
}

func (r *run) findStop(ctx context.Context) (*catalog.Stop, error) {
	if line, err := lastLine(r.path, r.size); err == nil && line != nil {
		if kind, _, err := header(line); err == nil && kind == kindStop {
			var d decoder
			if _, doc, raw, err := d.decodeLine(line); err == nil {
				if s, err := catalog.ParseStop(doc, bytes.Clone(raw)); err == nil {
					return s, nil
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.ix.ensure(r.size); err != nil {
		return nil, err
	}
	return r.ix.stop(r.size), nil
}

// tailWindow is how far back lastLine looks; a stop document is far smaller.
const tailWindow = 64 << 10

// lastLine returns the last complete line in the first size bytes of a file, or nil when the
// line is the first one or longer than tailWindow.
func lastLine(path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := min(size, tailWindow)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 {
		return nil, nil
	}
	begin := bytes.LastIndexByte(buf[:end], '\n')
	if begin < 0 {
		return nil, nil
	}
	return buf[begin+1 : end], nil
}

func (r *run) indexed(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.ix.ensure(r.size)
}

// Descriptors implements catalog.Run.
func (r *run) Descriptors(ctx context.Context) ([]*catalog.Descriptor, error) {
	if err := r.indexed(ctx); err != nil {
		return nil, err
	}
	return r.ix.descriptors(r.size), nil
}

// Resources implements catalog.Run.
func (r *run) Resources(ctx context.Context) ([]*catalog.Resource, error) {
	if err := r.indexed(ctx); err != nil {
		return nil, err
	}
	return r.ix.resources(r.size), nil
}

func (r *run) hasDescriptor(uid string) bool {
	for _, d := range r.ix.descriptors(r.size) {
		if d.UID == uid {
			return true
		}
	}
	return false
}

// EventPages implements catalog.Run. It starts reading at the index checkpoint before row from,
// skips other descriptors' lines by their prefix, and gathers up to pageRows rows per page.
func (r *run) EventPages(ctx context.Context, desc string, from, to int, fields []string, fn func(*catalog.EventPage) error) error {
	if err := r.indexed(ctx); err != nil {
		return err
	}
	if !r.hasDescriptor(desc) {
		return fmt.Errorf("descriptor %s of run %s: %w", desc, r.start.UID, catalog.ErrNotFound)
	}
	cp, stopAt, ok := r.ix.seek(desc, max(from, 0), r.size)
	if !ok || to >= 0 && to <= from {
		return nil
	}
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("read events of %s: %w", desc, err)
	}
	defer f.Close()
	rd := newLineReader(f, cp.off, stopAt, 128<<10)
	e := newEventDecoder(desc, fields)
	row, lineNo, first := cp.row, cp.line-1, cp.row
	long := r.ix.longLines()
	for n := 0; to < 0 || row < to; n++ {
		if end, ok := long[rd.offset()]; ok {
			rd.seek(end) // logged by the index; not read again
			lineNo++
			continue
		}
		line, _, err := rd.next()
		if errors.Is(err, io.EOF) {
			break
		}
		lineNo++
		if errors.Is(err, errLongLine) {
			continue
		} else if err != nil {
			return fmt.Errorf("read events of %s: %w", desc, err)
		}
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		kind, doc, err := header(line)
		if err != nil || kind != kindEvent && kind != kindEventPage {
			continue
		}
		if ref := fastDescriptor(line); ref != nil && string(ref) != desc {
			continue
		}
		if row < from { // count rows up to from as the index does, without decoding them
			info, err := classify(line)
			if err != nil || string(info.ref) != desc {
				continue
			}
			if row+info.rows <= from {
				row += info.rows
				continue
			}
		}
		if e.rows == 0 {
			first = row
		}
		added, err := e.add(line, kind, doc)
		if errors.Is(err, errReshape) {
			if err := e.flush(desc, first, fn); err != nil {
				return err
			}
			first = row
			added, err = e.add(line, kind, doc)
		}
		if errors.Is(err, errOtherDescriptor) {
			continue
		}
		if err != nil {
			if info, cerr := classify(line); cerr != nil || string(info.ref) != desc {
				continue // the index skipped it, or it is not ours
			}
			return &catalog.DocError{Source: fmt.Sprintf("%s:%d", r.path, lineNo), Name: kind.String(), Err: err}
		}
		row += added
		if e.rows >= pageRows {
			if err := e.flush(desc, first, fn); err != nil {
				return err
			}
		}
	}
	return e.flush(desc, first, fn)
}

// Datums implements catalog.Run.
func (r *run) Datums(ctx context.Context, resource string, fn func(*catalog.DatumPage) error) error {
	if err := r.indexed(ctx); err != nil {
		return err
	}
	offs := r.ix.datumOffsets(resource, r.size)
	if len(offs) == 0 {
		for _, res := range r.ix.resources(r.size) {
			if res.UID == resource {
				return nil
			}
		}
		return fmt.Errorf("resource %s of run %s: %w", resource, r.start.UID, catalog.ErrNotFound)
	}
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("read datums of %s: %w", resource, err)
	}
	defer f.Close()
	rd := newLineReader(f, offs[0], r.size, 64<<10)
	p := &catalog.DatumPage{Resource: resource, DatumKwargs: map[string][]any{}}
	var d decoder
	for i, off := range offs {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		rd.seek(off)
		line, _, err := rd.next()
		if err != nil {
			return fmt.Errorf("read datums of %s at offset %d: %w", resource, off, err)
		}
		kind, doc, _, err := d.decodeLine(line)
		if err == nil && kind == kindDatum {
			err = catalog.AppendDatum(p, doc)
		} else if err == nil {
			err = catalog.AppendDatumPage(p, doc)
		}
		if err != nil {
			// The index checked the line (classify) as these decode it: not reached unless
			// the file changed. The datum is missing; its resource's other datums read.
			r.ix.log.Warn("skipping malformed line", "file", r.path, "offset", off,
				"err", &catalog.DocError{Source: fmt.Sprintf("%s@%d", r.path, off), Name: kind.String(), Err: err})
		}
		if p.Len() > 0 && (p.Len() >= pageRows || i == len(offs)-1) {
			if err := flushDatums(p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushDatums pads short kwargs columns (keys some datums lack) with nil, hands the page out and
// empties it for reuse.
func flushDatums(p *catalog.DatumPage, fn func(*catalog.DatumPage) error) error {
	for k, col := range p.DatumKwargs {
		if len(col) == 0 {
			delete(p.DatumKwargs, k)
			continue
		}
		for len(col) < p.Len() {
			col = append(col, nil)
		}
		p.DatumKwargs[k] = col
	}
	err := fn(p)
	p.DatumID = p.DatumID[:0]
	for k := range p.DatumKwargs {
		p.DatumKwargs[k] = p.DatumKwargs[k][:0]
	}
	return err
}
