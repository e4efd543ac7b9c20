// Package msgpack reads runs stored by suitcase-msgpack (and databroker.v2.temp()): one file
// per run, a concatenation of msgpack [name, document] pairs, the start document first.
//
// You are in a catalog backend: package catalog defines what a Catalog and a Run must do; this
// package serves them from files. Runs reads only the first document of each file, cached by
// size and mtime. Run indexes a file in one pass on first use (index.go). EventPages decodes
// event pages straight from the bytes into a reused page (events.go, pagemaps.go, columns.go,
// cells.go), with a fast path for runs of same-shaped single-row pages (layout.go), reading
// through a bounded window with pread (window.go), never the whole file. wire.go and value.go
// hold the msgpack primitives and the generic value decoder.
//
// Writer (writer.go) writes files in the same format, for tests, demos and copies.
package msgpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// Options configure a Catalog.
type Options struct {
	// Logger receives one line per unreadable file or bad document; nil means slog.Default().
	Logger *slog.Logger
}

// Tuning. Start documents are read by a few goroutines at once so that a cold listing of
// thousands of files overlaps its reads; indexes are kept for the runs used last.
const (
	startWorkers  = 8
	cachedIndexes = 64
)

// Catalog is a catalog of msgpack run files. It is safe for concurrent use.
type Catalog struct {
	patterns []string
	log      *slog.Logger

	refreshMu sync.Mutex             // serializes refreshes
	files     map[string]*entry      // by path; guarded by refreshMu
	dirs      map[string]*dirListing // directory listings; guarded by refreshMu
	gen       uint64                 // refresh generation; guarded by refreshMu
	dupLogged map[string]string      // loser path -> winner path already logged; guarded by refreshMu

	mu     sync.RWMutex
	byUID  map[string]*entry // guarded by mu
	starts []*catalog.Start  // guarded by mu

	cacheMu sync.Mutex
	cached  map[*entry]uint64 // entries holding an index -> last use; guarded by cacheMu
	tick    uint64            // guarded by cacheMu
}

var _ catalog.Catalog = (*Catalog)(nil)

// entry is one run file. Its stat and start fields are written only by a refresh.
type entry struct {
	path   string
	size   int64
	mtime  time.Time
	seen   uint64         // the refresh generation that last found the file
	start  *catalog.Start // nil when the start cannot be read
	errMsg string         // the last start error logged, so that it is logged once

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

// Open returns a catalog of the run files matched by patterns: each a directory (its
// *.msgpack files), a glob, or a file path. Patterns are matched afresh by every Runs call.
func Open(patterns []string, opts Options) (*Catalog, error) {
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("open msgpack catalog: pattern %q: %w", p, err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Catalog{
		patterns:  slices.Clone(patterns),
		log:       log,
		files:     map[string]*entry{},
		dirs:      map[string]*dirListing{},
		dupLogged: map[string]string{},
		byUID:     map[string]*entry{},
		cached:    map[*entry]uint64{},
	}, nil
}

// Runs implements catalog.Catalog.
func (c *Catalog) Runs(ctx context.Context) ([]*catalog.Start, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.starts), nil
}

// Run implements catalog.Catalog. The run is a snapshot of the file as it is now.
func (c *Catalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	for attempt := 0; attempt < 2; attempt++ {
		c.mu.RLock()
		e := c.byUID[uid]
		c.mu.RUnlock()
		if e != nil {
			ix, err := c.index(ctx, e)
			switch {
			case err == nil && ix.start.UID == uid:
				return newRun(e.path, ix), nil
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Errorf("run %s: %w", uid, err)
			}
			// The file is gone or now holds another run: look again.
		}
		if attempt == 0 {
			if err := c.refresh(ctx); err != nil {
				return nil, err
			}
		}
	}
	return nil, fmt.Errorf("run %s: %w", uid, catalog.ErrNotFound)
}

// Close implements catalog.Catalog. A msgpack catalog holds no open files.
func (c *Catalog) Close() error { return nil }

// index returns the index of e for the file as it is now, building or extending it when the
// file changed. Builds are shared by concurrent callers and detached from their cancellation.
func (c *Catalog) index(ctx context.Context, e *entry) (*index, error) {
	fi, err := os.Stat(e.path)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if ix := e.idx; ix != nil && ix.size == fi.Size() && ix.mtime.Equal(fi.ModTime()) {
		e.mu.Unlock()
		c.touch(e)
		return ix, nil
	}
	f := e.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		e.flight = f
		go c.build(e, e.idx, f)
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
func (c *Catalog) build(e *entry, prev *index, f *flight) {
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
		return buildIndex(e.path, file, fi.Size(), fi.ModTime(), prev, c.log)
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
func (c *Catalog) touch(e *entry) {
	c.cacheMu.Lock()
	c.tick++
	c.cached[e] = c.tick
	var victim *entry
	if len(c.cached) > cachedIndexes {
		oldest := c.tick
		for v, t := range c.cached {
			if t < oldest {
				victim, oldest = v, t
			}
		}
		delete(c.cached, victim)
	}
	c.cacheMu.Unlock()
	if victim != nil {
		victim.mu.Lock()
		victim.idx = nil // runs already handed out keep their snapshot
		victim.mu.Unlock()
	}
}

// refresh matches the patterns, stats every file and reads the start of the new and changed
// ones.
func (c *Catalog) refresh(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	files, err := find(c.patterns, c.dirs)
	if err != nil {
		return err
	}
	c.gen++
	changed, seen := false, 0
	var todo []*entry
	for _, f := range files {
		if f.fi == nil || !f.fi.Mode().IsRegular() {
			continue
		}
		e := c.files[f.path]
		if e == nil {
			e = &entry{path: f.path}
			c.files[f.path] = e
		} else if e.seen == c.gen {
			continue // matched by two patterns
		}
		e.seen, seen = c.gen, seen+1
		if e.size != f.fi.Size() || !e.mtime.Equal(f.fi.ModTime()) || e.mtime.IsZero() {
			e.size, e.mtime = f.fi.Size(), f.fi.ModTime()
			todo = append(todo, e)
		}
	}
	if seen != len(c.files) { // some files went away
		for path, e := range c.files {
			if e.seen != c.gen {
				delete(c.files, path)
				delete(c.dupLogged, path)
				changed = true
			}
		}
	}
	if len(todo) > 0 {
		if err := c.readStarts(ctx, todo); err != nil {
			return err
		}
		changed = true
	}
	if changed {
		c.publish()
	}
	return nil
}

// readStarts reads the start documents of entries with a bounded pool of workers, logging
// each file that cannot be read once (until its error changes).
func (c *Catalog) readStarts(ctx context.Context, todo []*entry) error {
	work := make(chan *entry)
	var wg sync.WaitGroup
	for range min(startWorkers, len(todo)) {
		wg.Go(func() {
			var buf []byte
			for e := range work {
				var err error
				e.start, buf, err = readStart(e.path, e.size, buf)
				switch {
				case err == nil:
					e.errMsg = ""
				case err.Error() != e.errMsg:
					e.errMsg = err.Error()
					c.log.Warn("msgpack: skipping file", "file", e.path, "err", err)
				}
			}
		})
	}
	var err error
	for _, e := range todo {
		if err = ctx.Err(); err != nil {
			e.mtime = time.Time{} // not read: read it next time
			continue
		}
		work <- e
	}
	close(work)
	wg.Wait()
	return err
}

// publish rebuilds the uid map from the files. Two files with one start uid: the newer wins.
func (c *Catalog) publish() {
	byUID := make(map[string]*entry, len(c.files))
	for _, e := range c.files {
		if e.start == nil {
			continue
		}
		old := byUID[e.start.UID]
		if old != nil {
			winner, loser := e, old
			if old.mtime.After(e.mtime) || (old.mtime.Equal(e.mtime) && old.path > e.path) {
				winner, loser = old, e
			}
			if c.dupLogged[loser.path] != winner.path {
				c.dupLogged[loser.path] = winner.path
				c.log.Warn("msgpack: two files hold one run, using the newer", "uid", e.start.UID, "file", winner.path, "ignored", loser.path)
			}
			e = winner
		}
		byUID[e.start.UID] = e
	}
	starts := make([]*catalog.Start, 0, len(byUID))
	for _, e := range byUID {
		starts = append(starts, e.start)
	}
	slices.SortFunc(starts, func(a, b *catalog.Start) int { return strings.Compare(a.UID, b.UID) })
	c.mu.Lock()
	c.byUID, c.starts = byUID, starts
	c.mu.Unlock()
}

// readStart reads the start document of a file of the given size, reusing buf.
func readStart(path string, size int64, buf []byte) (*catalog.Start, []byte, error) {
	if size == 0 {
		return nil, buf, errors.New("empty file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, buf, err
	}
	defer f.Close()
	return readStartAt(f, size, buf)
}

// readStartAt reads the start document at the beginning of r.
func readStartAt(r io.ReaderAt, size int64, buf []byte) (*catalog.Start, []byte, error) {
	if cap(buf) < startWindow {
		buf = make([]byte, startWindow)
	}
	w := &window{r: r, limit: size, buf: buf[:cap(buf)], read: cap(buf)}
	b, err := w.at(0)
	if err != nil {
		return nil, buf, err
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
		return nil, w.buf, err
	}
	_, p, _ := arrayLen(b, 0)
	_, p, _ = str(b, p)
	x := &indexer{ix: &index{}}
	if err := x.small(b[p:n], "start", 0); err != nil {
		return nil, w.buf, fmt.Errorf("bad start document: %w", err)
	}
	return x.ix.start, w.buf, nil
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
