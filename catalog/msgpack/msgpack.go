// Package msgpack reads runs stored by suitcase-msgpack (and databroker.v2.temp()): one file
// per run, a concatenation of msgpack [name, document] pairs, the start document first.
//
// You are in a catalog backend: package catalog defines what a Catalog and a Run must do; this
// package describes the file format to package filestore, which lists the files (reading only
// the first document of each) and hands runs back here. Run indexes a file in one pass on first
// use (index.go). EventPages decodes
// event pages straight from the bytes into a reused page (events.go, pagemaps.go, columns.go,
// cells.go), with a fast path for runs of same-shaped single-row pages (layout.go), reading
// through a bounded window with pread (window.go), never the whole file. wire.go and value.go
// hold the msgpack primitives and the generic value decoder.
//
// Writer (writer.go) writes files in the same format, for tests, demos and copies.
package msgpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// Options configure a Catalog.
type Options struct {
	// Logger receives one line per unreadable file or bad document; nil means slog.Default().
	Logger *slog.Logger
	// Index is the listing index file (see filestore.Options); "" means none.
	Index string
	// EarlyMin is the size from which a run file's first index pass offers an early run to
	// callers that ask (catalog.WithEarlyRun), if the file ends with a stop document; 0
	// means 64 MiB.
	EarlyMin int64
}

// cachedIndexes is how many run indexes a Format keeps, for the runs used last.
const cachedIndexes = 64

// Catalog is a catalog of msgpack run files (package filestore lists them).
type Catalog = filestore.Catalog

// Open returns a catalog of the run files matched by patterns: each a directory (its
// *.msgpack files), a glob, or a file path. Patterns are matched afresh by every Runs call.
func Open(patterns []string, opts Options) (*Catalog, error) {
	c, err := filestore.Open(patterns, []*filestore.Format{newFormat(opts.Logger, opts.EarlyMin)}, filestore.Options{Logger: opts.Logger, Index: opts.Index})
	if err != nil {
		return nil, fmt.Errorf("open msgpack catalog: %w", err)
	}
	return c, nil
}

// NewFormat returns the msgpack file format for a filestore.Catalog. It keeps the indexes of
// the runs opened last; use one per catalog.
func NewFormat(log *slog.Logger) *filestore.Format { return newFormat(log, 0) }

func newFormat(log *slog.Logger, earlyMin int64) *filestore.Format {
	if log == nil {
		log = slog.Default()
	}
	if earlyMin <= 0 {
		earlyMin = defaultEarlyMin
	}
	ic := &indexCache{log: log, entries: map[string]*entry{}, earlyMin: earlyMin}
	return &filestore.Format{
		Name:      "msgpack",
		Ext:       ".msgpack",
		ReadHead:  readHead,
		ParseHead: parseHead,
		HeadJSON:  headJSON,
		Open:      ic.open,
	}
}

// indexCache holds the indexes of the run files opened last, by path.
type indexCache struct {
	log      *slog.Logger
	earlyMin int64 // see Options.EarlyMin

	mu      sync.Mutex
	entries map[string]*entry // guarded by mu
	tick    uint64            // guarded by mu
}

// entry is one run file's index, as last built.
type entry struct {
	path string
	used uint64 // last use; guarded by indexCache.mu

	mu     sync.Mutex
	idx    *index  // guarded by mu
	flight *flight // an index build under way; guarded by mu
}

// flight is an index build that callers wait for together.
type flight struct {
	done chan struct{}
	ix   *index
	err  error
}

// open opens the run of a listed file, as the file is now.
func (c *indexCache) open(ctx context.Context, f *filestore.File) (catalog.Run, error) {
	c.mu.Lock()
	e := c.entries[f.Path]
	if e == nil {
		e = &entry{path: f.Path}
		c.entries[f.Path] = e
	}
	c.mu.Unlock()
	ix, err := c.index(ctx, e)
	if err != nil {
		return nil, err
	}
	return newRun(e.path, ix), nil
}

// index returns the index of e for the file as it is now, building or extending it when the
// file changed. Builds are shared by concurrent callers and detached from their cancellation.
func (c *indexCache) index(ctx context.Context, e *entry) (*index, error) {
	fi, err := os.Stat(e.path)
	if err != nil {
		return nil, err
	}
	ino, dev := filestore.StatIDs(fi)
	e.mu.Lock()
	if ix := e.idx; ix != nil && ix.size == fi.Size() && ix.mtime.Equal(fi.ModTime()) && ix.ino == ino && ix.dev == dev {
		e.mu.Unlock()
		c.touch(e)
		return ix, nil
	}
	f := e.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		e.flight = f
		go c.build(e, e.idx, f, catalog.EarlyRunOf(ctx))
	}
	e.mu.Unlock()
	select {
	case <-f.done:
		return f.ix, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// build indexes e's file (extending prev when the file only grew) and publishes the result.
// A first pass over a big file that ends with a stop document calls early, when not nil, as
// catalog.EarlyRun says.
func (c *indexCache) build(e *entry, prev *index, f *flight, early catalog.EarlyRun) {
	ix, err := func() (*index, error) {
		file, err := os.Open(e.path)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		fi, err := file.Stat()
		if err != nil {
			return nil, err
		}
		x := newIndexer(e.path, file, fi.Size(), fi.ModTime(), prev, c.log)
		if early != nil && prev == nil && fi.Size() >= c.earlyMin && endsWithStop(file, fi.Size()) {
			prog := newProgress()
			x.prog = prog
			x.early = func(desc string) { early(newEarlyRun(e.path, fi, x.ix.start, prog), desc) }
		}
		ix, err := x.build()
		if err == nil {
			ix.ino, ix.dev = filestore.StatIDs(fi)
		}
		if x.prog != nil {
			x.prog.finish(ix, err)
		}
		return ix, err
	}()
	e.mu.Lock()
	e.flight = nil
	if err == nil {
		e.idx = ix
	}
	e.mu.Unlock()
	f.ix, f.err = ix, err
	close(f.done)
	if err == nil {
		c.touch(e)
	}
}

// touch records a use of e's index and drops the least recently used index beyond the limit.
func (c *indexCache) touch(e *entry) {
	c.mu.Lock()
	c.tick++
	e.used = c.tick
	var victim *entry
	if len(c.entries) > cachedIndexes {
		oldest := c.tick
		for _, v := range c.entries {
			if v.used < oldest {
				victim, oldest = v, v.used
			}
		}
	}
	if victim != nil {
		victim.mu.Lock()
		if victim.flight == nil { // a build under way publishes into its entry: keep it
			delete(c.entries, victim.path)
			victim.idx = nil // runs already handed out keep their snapshot
		}
		victim.mu.Unlock()
	}
	c.mu.Unlock()
}

// headRead is the size of the first read of a file's head.
const headRead = 4 << 10

// headPool holds buffers for reading start documents.
var headPool = sync.Pool{New: func() any { return new([]byte) }}

// readHead reads the start document of a file for the listing: its summary (parseHead
// parses the whole document from the bytes when a run needs it) and its msgpack bytes.
func readHead(r io.ReaderAt, _ string, size int64) (*catalog.Start, []byte, error) {
	if size == 0 {
		return nil, nil, errors.New("empty file")
	}
	bp := headPool.Get().(*[]byte)
	defer headPool.Put(bp)
	s, doc, buf, err := readStartDoc(r, size, *bp, true)
	*bp = buf
	if err != nil {
		return nil, nil, err
	}
	return s, bytes.Clone(doc), nil
}

// parseHead parses the msgpack bytes of a start document that readHead returned; raw, when
// given, is its JSON as made before.
func parseHead(doc, raw []byte) (*catalog.Start, error) {
	v, _, err := value(doc, 0, false, 0)
	if err != nil {
		return nil, fmt.Errorf("bad start document: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("bad start document: want map, have %T", v)
	}
	if raw == nil {
		if raw, _, err = appendJSON(nil, doc, 0, 0); err != nil {
			return nil, fmt.Errorf("bad start document: %w", err)
		}
	}
	s, err := catalog.ParseStart(m, raw)
	if err != nil {
		return nil, fmt.Errorf("bad start document: %w", err)
	}
	return s, nil
}

// headJSON renders the msgpack bytes of a start document that readHead returned as JSON, as
// parseHead makes Raw.
func headJSON(doc []byte) ([]byte, error) {
	raw, _, err := appendJSON(nil, doc, 0, 0)
	return raw, err
}

// readStartAt reads the start document at the beginning of r.
func readStartAt(r io.ReaderAt, size int64, buf []byte) (*catalog.Start, []byte, error) {
	s, _, buf, err := readStartDoc(r, size, buf, false)
	return s, buf, err
}

// readStartDoc reads the start document at the beginning of r: the start (only its summary,
// Doc and Raw nil, when sum is set), its bytes (in buf) and buf, grown if need be.
func readStartDoc(r io.ReaderAt, size int64, buf []byte, sum bool) (*catalog.Start, []byte, []byte, error) {
	if cap(buf) < headRead {
		buf = make([]byte, startWindow)
	}
	// The first read is one page: a cold listing of thousands of files costs what reading
	// their first pages costs; the window grows for a start that does not fit.
	w := &window{r: r, limit: size, buf: buf[:cap(buf)], read: headRead}
	b, err := w.at(0)
	if err != nil {
		return nil, nil, buf, err
	}
	n, err := startLen(b)
	for errors.Is(err, errShort) {
		if b, err = w.more(0, len(b), n); err == nil {
			n, err = startLen(b)
		}
	}
	if err != nil {
		if errors.Is(err, errTruncated) {
			err = errors.New("incomplete start document")
		}
		return nil, nil, w.buf, err
	}
	_, p, _ := arrayLen(b, 0)
	_, p, _ = str(b, p)
	parse := parseStart
	if sum {
		parse = summaryStart
	}
	s, err := parse(b[p:n])
	if err != nil {
		return nil, nil, w.buf, fmt.Errorf("bad start document: %w", err)
	}
	return s, b[p:n], w.buf, nil
}

// startLen checks that b begins with a [\"start\", doc] pair and returns its length.
func startLen(b []byte) (int, error) {
	n, p, err := arrayLen(b, 0)
	if err != nil || n != 2 {
		end, serr := skip(b, 0)
		if serr != nil {
			return end, serr
		}
		return 0, errors.New("the file does not begin with a [name, document] pair")
	}
	name, p, err := str(b, p)
	if err != nil {
		return p + 1, err
	}
	if string(name) != "start" {
		return 0, fmt.Errorf("the first document is a %q, not a start", name)
	}
	return skip(b, 0)
}
