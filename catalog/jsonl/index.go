package jsonl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"sort"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// checkpoint is a place to start reading one descriptor's events.
type checkpoint struct {
	off  int64 // offset of an event line of the descriptor
	row  int   // the descriptor's row number of that line's first row
	line int   // the line's number, 1-based, for messages
}

// eventIndex locates one descriptor's events.
type eventIndex struct {
	rows int
	cps  []checkpoint
	end  int64 // end of the descriptor's last event line: reading need not go further
}

// located is a document with the end offset of its line, so that a Run (a snapshot of the file
// at some size) sees only the documents that were complete at that size.
type located[T any] struct {
	doc T
	end int64
}

// index is what a file holds beyond its start: built lazily in one pass over the lines, which
// decodes descriptors, resources and stops but only checks events and datums (classify: their
// syntax and the types the decoders take, without decoding), and extended from where it
// stopped when the file grows. It is safe for concurrent use.
type index struct {
	path     string
	log      *slog.Logger
	startEnd int64 // end of the start line, where indexing begins

	mu     sync.RWMutex
	size   int64 // file size indexed; guarded by mu, as is everything below
	end    int64 // end of the last complete line indexed
	lines  int   // number of that line
	tail   []byte
	stops  []located[*catalog.Stop]
	descs  []located[*catalog.Descriptor]
	res    []located[*catalog.Resource]
	events map[string]*eventIndex
	datums map[string]*[]int64 // resource uid -> offsets of its datum lines
	long   map[int64]int64     // lines longer than maxLine: offset -> the next line's offset
	dec    decoder
}

func newIndex(path string, log *slog.Logger, startEnd int64) *index {
	x := &index{path: path, log: log, startEnd: startEnd}
	x.reset()
	return x
}

func (x *index) reset() {
	x.size, x.end, x.lines, x.tail = x.startEnd, x.startEnd, 1, nil
	x.stops, x.descs, x.res = nil, nil, nil
	x.events = make(map[string]*eventIndex)
	x.datums = make(map[string]*[]int64)
	x.long = nil
}

// ensure indexes the file up to size.
func (x *index) ensure(size int64) error {
	x.mu.RLock()
	done := x.size >= size
	x.mu.RUnlock()
	if done {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.size >= size {
		return nil
	}
	f, err := os.Open(x.path)
	if err != nil {
		return fmt.Errorf("index %s: %w", x.path, err)
	}
	defer f.Close()
	if !x.tailMatches(f) {
		x.log.Info("run file rewritten, indexing it again", "file", x.path)
		x.reset()
	}
	rd := newLineReader(f, x.end, size, 128<<10)
	for {
		line, off, err := rd.next()
		switch {
		case errors.Is(err, io.EOF):
			x.size = size
			x.saveTail(f)
			return nil
		case errors.Is(err, errLongLine):
			x.lines++
			x.bad(off, nil, fmt.Errorf("%d bytes: %w", rd.offset()-off-1, err))
			if x.long == nil {
				x.long = map[int64]int64{}
			}
			x.long[off] = rd.offset()
		case err != nil:
			return fmt.Errorf("index %s: %w", x.path, err)
		default:
			x.lines++
			x.add(line, off, rd.offset())
		}
		x.end = rd.offset()
	}
}

// tailMatches reports whether the bytes before the indexed end are still those indexed: if
// not, the file was rewritten rather than appended to.
func (x *index) tailMatches(f *os.File) bool {
	if len(x.tail) == 0 {
		return true
	}
	buf := make([]byte, len(x.tail))
	n, _ := f.ReadAt(buf, x.end-int64(len(buf)))
	return n == len(buf) && bytes.Equal(buf, x.tail)
}

func (x *index) saveTail(f *os.File) {
	n := min(x.end-x.startEnd, 64)
	x.tail = make([]byte, n)
	if m, _ := f.ReadAt(x.tail, x.end-n); int64(m) != n {
		x.tail = nil
	}
}

// bad logs a line the index skips, which begins at byte off: once, since each line is
// indexed once.
func (x *index) bad(off int64, kind *docKind, err error) {
	doc := &catalog.DocError{Source: fmt.Sprintf("%s:%d", x.path, x.lines), Err: err}
	if kind != nil {
		doc.Name = kind.String()
	}
	x.log.Warn("skipping malformed line", "file", x.path, "offset", off, "err", doc)
}

// add indexes one line, which spans [off, end) of the file.
func (x *index) add(line []byte, off, end int64) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	info, err := classify(line)
	if err != nil {
		x.bad(off, kindPtr(info.kind), err)
		return
	}
	switch info.kind {
	case kindEvent, kindEventPage:
		ev := x.events[string(info.ref)]
		if ev == nil {
			ev = &eventIndex{}
			x.events[string(info.ref)] = ev
		}
		var last checkpoint
		if n := len(ev.cps); n > 0 {
			last = ev.cps[n-1]
		}
		if filestore.NeedCheckpoint(len(ev.cps) > 0, last.off, int64(last.row), off, int64(ev.rows), ev.end) {
			ev.cps = append(ev.cps, checkpoint{off: off, row: ev.rows, line: x.lines})
		}
		ev.rows += info.rows
		ev.end = end
		return
	case kindDatum, kindDatumPage:
		offs := x.datums[string(info.ref)]
		if offs == nil {
			offs = new([]int64)
			x.datums[string(info.ref)] = offs
		}
		*offs = append(*offs, off)
		return
	case kindStart:
		x.bad(off, nil, errors.New("a second start document"))
		return
	}
	_, doc, raw, err := x.dec.decodeLine(line)
	if err == nil {
		raw = bytes.Clone(raw)
		switch info.kind {
		case kindStop:
			var s *catalog.Stop
			if s, err = catalog.ParseStop(doc, raw); err == nil {
				x.stops = append(x.stops, located[*catalog.Stop]{s, end})
			}
		case kindDescriptor:
			var d *catalog.Descriptor
			if d, err = catalog.ParseDescriptor(doc, raw); err == nil {
				x.descs = append(x.descs, located[*catalog.Descriptor]{d, end})
			}
		case kindResource:
			var r *catalog.Resource
			if r, err = catalog.ParseResource(doc, raw); err == nil {
				x.res = append(x.res, located[*catalog.Resource]{r, end})
			}
		}
	}
	if err != nil {
		x.bad(off, kindPtr(info.kind), err)
	}
}

func kindPtr(k docKind) *docKind {
	if k == kindUnknown {
		return nil
	}
	return &k
}

// upTo returns the documents complete within the first size bytes.
func upTo[T any](docs []located[T], size int64) []T {
	out := make([]T, 0, len(docs))
	for _, d := range docs {
		if d.end <= size {
			out = append(out, d.doc)
		}
	}
	return out
}

func (x *index) descriptors(size int64) []*catalog.Descriptor {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return upTo(x.descs, size)
}

func (x *index) resources(size int64) []*catalog.Resource {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return upTo(x.res, size)
}

// stop returns the last stop document complete within size, or nil.
func (x *index) stop(size int64) *catalog.Stop {
	x.mu.RLock()
	defer x.mu.RUnlock()
	stops := upTo(x.stops, size)
	if len(stops) == 0 {
		return nil
	}
	return stops[len(stops)-1]
}

// seek returns where to start reading desc's events to reach row from, and where to stop.
func (x *index) seek(desc string, from int, size int64) (checkpoint, int64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ev := x.events[desc]
	if ev == nil || len(ev.cps) == 0 {
		return checkpoint{}, 0, false
	}
	i := sort.Search(len(ev.cps), func(i int) bool { return ev.cps[i].row > from })
	cp := ev.cps[max(i-1, 0)]
	return cp, min(ev.end, size), true
}

// datumOffsets returns the offsets of resource's datum lines that begin within size.
func (x *index) datumOffsets(resource string, size int64) []int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	offs := x.datums[resource]
	if offs == nil {
		return nil
	}
	n := sort.Search(len(*offs), func(i int) bool { return (*offs)[i] >= size })
	return (*offs)[:n:n] // the slice may grow later; this prefix never changes
}

// longLines returns the lines the index found longer than maxLine (offset -> next offset), for
// readers to jump without reading them again; nil when there are none. The map is copied: the
// index may grow it.
func (x *index) longLines() map[int64]int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.long) == 0 {
		return nil
	}
	return maps.Clone(x.long)
}
