package msgpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// run is a snapshot of one run file: its index as of the call to Catalog.Run. Reads open the
// file afresh (no descriptor is held between calls, so a Run costs nothing to drop) and never
// look past what the index covers.
type run struct {
	path      string
	ix        *index
	open      func() (readerAt, error)
	noLayouts bool         // tests: compare the layout fast path with the general decoder
	fastDocs  atomic.Int64 // documents read through a layout, for tests
}

// readerAt is an open file.
type readerAt interface {
	io.ReaderAt
	io.Closer
}

var (
	_ catalog.Run          = (*run)(nil)
	_ catalog.Versioner    = (*run)(nil)
	_ catalog.EventCounter = (*run)(nil)
)

// Version implements catalog.Versioner: the file as it was when indexed.
func (r *run) Version(context.Context) (string, error) {
	return filestore.VersionKey(r.path, r.ix.size, r.ix.mtime, r.ix.ino, r.ix.dev), nil
}

func newRun(path string, ix *index) *run {
	return &run{path: path, ix: ix, open: func() (readerAt, error) { return openAtLeast(path, ix.end) }}
}

// openAtLeast opens a file that must still hold size bytes (it is only ever appended to).
func openAtLeast(path string, size int64) (readerAt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() < size {
		f.Close()
		if err == nil {
			err = fmt.Errorf("open %s: file shrank from %d to %d bytes since it was indexed", path, size, fi.Size())
		}
		return nil, err
	}
	return f, nil
}

// EventRows implements catalog.EventCounter: the rows the index counted, which are the rows
// EventPages walks (the same documents, the same decoder; a document the index passed over is
// passed over there too).
func (r *run) EventRows(_ context.Context, desc string) (int, bool) {
	if s := r.ix.events[desc]; s != nil {
		return int(s.rows), true
	}
	return 0, r.ix.hasDescriptor(desc)
}

// Start implements catalog.Run.
func (r *run) Start() *catalog.Start { return r.ix.start }

// Stop implements catalog.Run.
func (r *run) Stop(context.Context) (*catalog.Stop, error) {
	if r.ix.stop == nil {
		return nil, fmt.Errorf("stop of run %s: %w", r.ix.start.UID, catalog.ErrNotFound)
	}
	return r.ix.stop, nil
}

// Descriptors implements catalog.Run.
func (r *run) Descriptors(context.Context) ([]*catalog.Descriptor, error) { return r.ix.descs, nil }

// Resources implements catalog.Run.
func (r *run) Resources(context.Context) ([]*catalog.Resource, error) { return r.ix.resources, nil }

// EventPages implements catalog.Run: one page per stored event or event_page document,
// starting from the checkpoint at or before from.
func (r *run) EventPages(ctx context.Context, desc string, from, to int, fields []string, fn func(*catalog.EventPage) error) error {
	s := r.ix.events[desc]
	if s == nil {
		if r.ix.hasDescriptor(desc) {
			return nil // a descriptor without events
		}
		return fmt.Errorf("descriptor %s of run %s: %w", desc, r.ix.start.UID, catalog.ErrNotFound)
	}
	from = max(from, 0)
	if (to >= 0 && to <= from) || int64(from) >= s.rows {
		return nil
	}
	f, err := r.open()
	if err != nil {
		return err
	}
	defer f.Close()
	w := newWindow(f, s.end, scanWindow)
	defer w.release()
	ew := newEventWalk(ctx, r, w, f, desc, fields, from, to, fn)
	defer ew.close()
	for i := s.find(int64(from)); i < len(s.cps); i++ {
		pos, segEnd := s.cps[i].off, s.end
		ew.row = s.cps[i].row
		if i+1 < len(s.cps) {
			segEnd = s.cps[i+1].off
		}
		for pos < segEnd {
			if end, ok := r.ix.gaps[pos]; ok {
				pos = end // passed over by the index, and logged
				continue
			}
			n, done, err := ew.step(ctx, pos)
			if err != nil || done {
				return err
			}
			pos += n
		}
	}
	return nil
}

// eventWalk is one EventPages call's walk over documents: the page decoder, its window and
// the row count. step reads one document.
type eventWalk struct {
	r    *run
	w    *window
	d    *pageDecoder
	db   *dropBehind
	h    evHeader
	from int64
	to   int64 // < 0: to the end
	row  int64 // the row of the next event document of the descriptor
	fn   func(*catalog.EventPage) error
	docs int
	last int // the length of the last document
}

func newEventWalk(ctx context.Context, r *run, w *window, f any, desc string, fields []string, from, to int, fn func(*catalog.EventPage) error) *eventWalk {
	d := newPageDecoder(desc, fields)
	d.noLayouts = r.noLayouts
	return &eventWalk{r: r, w: w, d: d, db: newDropBehind(f, catalog.KeptReads(ctx)), from: int64(from), to: int64(to), fn: fn}
}

func (ew *eventWalk) close() {
	ew.r.fastDocs.Add(int64(ew.d.fasts))
	ew.db.flush()
}

// step reads the document at pos, calling fn with its page when it is an event document of
// the descriptor with rows wanted, and returns its length; done when the rows wanted are read.
func (ew *eventWalk) step(ctx context.Context, pos int64) (n int64, done bool, err error) {
	r, w, d, h := ew.r, ew.w, ew.d, &ew.h
	if ew.to >= 0 && ew.row >= ew.to {
		return 0, true, nil
	}
	if ew.docs++; ew.docs&1023 == 0 {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
	}
	b, err := w.atLeast(pos, max(d.longest, w.hint(ew.last)))
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", r.path, err)
	}
	if l := d.fast(b); l != nil {
		if l.events {
			if ew.row+int64(l.rows) > ew.from {
				l.apply(b, &d.page)
				d.page.FirstRow = int(ew.row)
				if err := ew.fn(&d.page); err != nil {
					return 0, false, err
				}
			}
			ew.row += int64(l.rows)
		}
		return int64(l.n), false, nil
	}
	skipRows := int(min(max(ew.from-ew.row, -1), 1<<31))
	m, status, err := d.next(b, h, skipRows)
	for errors.Is(err, errShort) {
		if b, err = w.more(pos, len(b), m); err == nil {
			m, status, err = d.next(b, h, skipRows)
		}
	}
	if err == nil && m <= 0 {
		err = corrupt(0, "document of no length") // cannot happen; must not loop
	}
	if err != nil {
		return 0, false, r.docError(pos, "", r.why(err))
	}
	d.learnFrom(b, m, h, status)
	if status == docEvent {
		ew.db.read(pos, m)
	}
	ew.last = m
	if status == docEvent && h.rows > 0 {
		if h.bodyErr != nil {
			return 0, false, r.docError(pos, docName(h.single), h.bodyErr)
		}
		if h.body {
			d.page.FirstRow = int(ew.row)
			if err := ew.fn(&d.page); err != nil {
				return 0, false, err
			}
		}
		ew.row += int64(h.rows)
	}
	return int64(m), false, nil
}

// why explains a document that the index read and a read now cannot: the file changed since
// it was indexed (it is indexed again on the next open), or, on the same file, the document
// itself cannot be decoded (which the index's checks are meant to rule out).
func (r *run) why(err error) error {
	fi, serr := os.Stat(r.path)
	if serr != nil {
		return fmt.Errorf("the file changed since it was indexed: %w", serr)
	}
	ino, dev := filestore.StatIDs(fi)
	if fi.Size() != r.ix.size || !fi.ModTime().Equal(r.ix.mtime) || ino != r.ix.ino || dev != r.ix.dev {
		return fmt.Errorf("the file changed since it was indexed: %w", err)
	}
	return fmt.Errorf("undecodable document: %w", err)
}

func docName(single bool) string {
	if single {
		return "event"
	}
	return "event_page"
}

func (r *run) docError(pos int64, name string, err error) error {
	return &catalog.DocError{Source: fmt.Sprintf("%s:%d", r.path, pos), Name: name, Err: err}
}

// Datums implements catalog.Run: one page per stored datum or datum_page document. Datums
// are not a hot path: they decode into generic documents and the catalog's helpers.
func (r *run) Datums(ctx context.Context, resource string, fn func(*catalog.DatumPage) error) error {
	s := r.ix.datums[resource]
	if s == nil {
		for _, res := range r.ix.resources {
			if res.UID == resource {
				return nil
			}
		}
		return fmt.Errorf("resource %s of run %s: %w", resource, r.ix.start.UID, catalog.ErrNotFound)
	}
	f, err := r.open()
	if err != nil {
		return err
	}
	defer f.Close()
	w := newWindow(f, s.end, scanWindow)
	defer w.release()
	for i := range s.cps {
		pos, segEnd := s.cps[i].off, s.end
		if i+1 < len(s.cps) {
			segEnd = s.cps[i+1].off
		}
		for pos < segEnd {
			if err := ctx.Err(); err != nil {
				return err
			}
			if end, ok := r.ix.gaps[pos]; ok {
				pos = end
				continue
			}
			b, err := w.at(pos)
			if err != nil {
				return fmt.Errorf("read %s: %w", r.path, err)
			}
			n, err := skip(b, 0)
			for errors.Is(err, errShort) {
				if b, err = w.more(pos, len(b), n); err == nil {
					n, err = skip(b, 0)
				}
			}
			if err != nil {
				return r.docError(pos, "", r.why(err))
			}
			if err := r.datum(b[:n], pos, resource, fn); err != nil {
				return err
			}
			pos += int64(n)
		}
	}
	return nil
}

// datum calls fn with the datums of the document b if it is a valid datum or datum_page
// document of resource.
func (r *run) datum(b []byte, pos int64, resource string, fn func(*catalog.DatumPage) error) error {
	_, p, err := arrayLen(b, 0)
	if err != nil {
		return nil
	}
	name, p, err := str(b, p)
	if err != nil || (string(name) != "datum" && string(name) != "datum_page") {
		return nil
	}
	single := string(name) == "datum"
	if res, _, err := datumHeader(b[p:], single); err != nil || res != resource {
		return nil // another resource's, or a bad one the index logged
	}
	v, _, err := value(b, p, false, 0)
	doc, _ := v.(map[string]any)
	if err != nil || doc == nil {
		return r.docError(pos, string(name), fmt.Errorf("want map, have %T", v))
	}
	page := &catalog.DatumPage{Resource: resource}
	if single {
		err = catalog.AppendDatum(page, doc)
	} else {
		// catalog.AppendDatumPage splits an array column once per datum: split it once here.
		if kw, ok := doc["datum_kwargs"].(map[string]any); ok {
			for k, col := range kw {
				if a, ok := col.(*catalog.NDArray); ok && len(a.Shape) > 0 {
					kw[k] = a.Rows()
				}
			}
		}
		err = catalog.AppendDatumPage(page, doc)
	}
	if err != nil {
		return r.docError(pos, string(name), err)
	}
	return fn(page)
}
