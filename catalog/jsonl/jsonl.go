// Package jsonl reads and writes suitcase-jsonl run files: one file per run, one JSON array
// ["name", {document}] per line, documents as the RunEngine emitted them (event or event_page,
// datum or datum_page), the start first and the stop normally last.
//
// You are in a concrete backend: Open turns a list of directories, globs and files into a
// catalog.Catalog. Listing runs reads only each file's first line, cached by size and mtime.
// Opening a run reads its last line to find the stop; descriptors and events need an index
// built in one pass over line prefixes, without decoding events, and extended as a live run's
// file grows. Event lines then decode straight into reused columnar pages. Memory is bounded by
// the longest line and the index (a checkpoint per 1024 rows), never by the file.
package jsonl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// Options configure a Catalog.
type Options struct {
	// Logger receives warnings about files and lines that are skipped; nil means slog.Default().
	Logger *slog.Logger
}

// Catalog is a suitcase-jsonl store. It is safe for concurrent use.
type Catalog struct {
	patterns []string
	log      *slog.Logger

	scanMu sync.Mutex // serializes Runs, so that a changed file is read (and logged) once

	mu    sync.Mutex
	files map[string]*runFile // path -> file; guarded by mu
	uids  map[string]*runFile // start uid -> file; guarded by mu
}

var _ catalog.Catalog = (*Catalog)(nil)

// runFile is one version of a run file, as a listing saw it. It is immutable: a changed file
// gets a new runFile, which keeps the index when the file only grew.
type runFile struct {
	path  string
	size  int64
	mtime time.Time
	start *catalog.Start // nil when err is set
	err   error
	ix    *index
}

// Open returns a catalog of the run files that patterns name. Each pattern is a directory (its
// *.jsonl files), a glob or a file; they are expanded again on each call to Runs, so files that
// appear later are found.
func Open(patterns []string, opts Options) (*Catalog, error) {
	if len(patterns) == 0 {
		return nil, errors.New("open jsonl catalog: no paths")
	}
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("open jsonl catalog: pattern %q: %w", p, err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Catalog{
		patterns: append([]string(nil), patterns...),
		log:      log,
		files:    make(map[string]*runFile),
		uids:     make(map[string]*runFile),
	}, nil
}

// Close implements catalog.Catalog. The catalog holds no open files between calls.
func (c *Catalog) Close() error { return nil }

// expand lists the files the patterns name, sorted and without duplicates.
func (c *Catalog) expand() ([]string, error) {
	seen := make(map[string]bool)
	var out []string
	for _, p := range c.patterns {
		var matches []string
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			// Not filepath.Glob: the directory's name may hold glob metacharacters.
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", p, err)
			}
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".jsonl") && !e.IsDir() {
					matches = append(matches, filepath.Join(p, e.Name()))
				}
			}
		} else if strings.ContainsAny(p, `*?[\`) {
			matches, _ = filepath.Glob(p) // the pattern was checked by Open
		} else {
			matches = []string{p}
		}
		for _, m := range matches {
			m = filepath.Clean(m)
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// Runs implements catalog.Catalog. It expands the patterns, stats every file and reads the
// first line of the new and changed ones in a bounded pool of workers.
func (c *Catalog) Runs(ctx context.Context) ([]*catalog.Start, error) {
	c.scanMu.Lock()
	defer c.scanMu.Unlock()
	paths, err := c.expand()
	if err != nil {
		return nil, err
	}
	prev := make([]*runFile, len(paths)) // copied: Run's refresh updates c.files meanwhile
	c.mu.Lock()
	for i, p := range paths {
		prev[i] = c.files[p]
	}
	c.mu.Unlock()

	found := make([]*runFile, len(paths))
	var next atomic.Int64
	var wg sync.WaitGroup
	// Stat and open are I/O bound (and slow on network file systems): more workers than cores.
	for range min(len(paths), max(4, 4*runtime.GOMAXPROCS(0)), 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(paths) || ctx.Err() != nil {
					return
				}
				found[i] = c.stat(paths[i], prev[i])
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	files := make(map[string]*runFile, len(found))
	uids := make(map[string]*runFile, len(found))
	starts := make([]*catalog.Start, 0, len(found))
	for i, f := range found { // in path order, so the first file of a duplicated uid wins
		if f == nil {
			continue
		}
		files[f.path] = f
		if f.start == nil {
			continue
		}
		if other := uids[f.start.UID]; other != nil {
			if prev[i] != f { // warn once, when the file is new or changed
				c.log.Warn("skipping run file: start uid already in another file", "file", f.path, "uid", f.start.UID, "other", other.path)
			}
			continue
		}
		uids[f.start.UID] = f
		starts = append(starts, f.start)
	}
	c.mu.Lock()
	c.files, c.uids = files, uids
	c.mu.Unlock()
	return starts, nil
}

// stat returns the runFile for path, reusing prev while the file's size and mtime are unchanged;
// nil when path is not a regular file.
func (c *Catalog) stat(path string, prev *runFile) *runFile {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	if prev != nil && prev.size == fi.Size() && prev.mtime.Equal(fi.ModTime()) {
		return prev
	}
	f := c.load(path, fi, prev)
	if f.err != nil && !errors.Is(f.err, io.EOF) {
		c.log.Warn("skipping run file", "file", path, "err", f.err)
	}
	return f
}

// load reads the start document of a new or changed file. A file without a complete first line
// yet (io.EOF) is skipped silently: a writer is creating it.
func (c *Catalog) load(path string, fi os.FileInfo, prev *runFile) *runFile {
	f := &runFile{path: path, size: fi.Size(), mtime: fi.ModTime()}
	fh, err := os.Open(path)
	if err != nil {
		f.err = err
		return f
	}
	defer fh.Close()
	line, err := readFirstLine(fh, fi.Size())
	if errors.Is(err, errLongLine) {
		err = fmt.Errorf("first line: %w", err)
	}
	if err != nil {
		f.err = err
		return f
	}
	var d decoder
	kind, doc, raw, err := d.decodeLine(line)
	switch {
	case err != nil:
		f.err = &catalog.DocError{Source: path + ":1", Name: kind.String(), Err: err}
	case kind != kindStart:
		f.err = fmt.Errorf("%s:1: first document is a %s, not a start", path, kind)
	default:
		if prev != nil && prev.start != nil && bytes.Equal(prev.start.Raw, raw) && fi.Size() >= prev.size {
			f.start, f.ix = prev.start, prev.ix // the file grew: keep the index, extend it later
			return f
		}
		f.start, err = catalog.ParseStart(doc, bytes.Clone(raw))
		if err != nil {
			f.err = &catalog.DocError{Source: path + ":1", Name: "start", Err: err}
			return f
		}
		f.ix = newIndex(path, c.log, int64(len(line))+1)
	}
	return f
}

// Run implements catalog.Catalog. The run is a snapshot of the file at its current size.
func (c *Catalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	c.mu.Lock()
	f := c.uids[uid]
	c.mu.Unlock()
	if f == nil { // not listed yet: list again
		if _, err := c.Runs(ctx); err != nil {
			return nil, err
		}
		c.mu.Lock()
		f = c.uids[uid]
		c.mu.Unlock()
	}
	if f != nil {
		f = c.refresh(f)
	}
	if f == nil || f.start == nil || f.start.UID != uid {
		return nil, fmt.Errorf("run %s: %w", uid, catalog.ErrNotFound)
	}
	return &run{path: f.path, start: f.start, ix: f.ix, size: f.size}, nil
}

// refresh returns the current version of a listed file, or nil when it is gone.
func (c *Catalog) refresh(f *runFile) *runFile {
	g := c.stat(f.path, f)
	if g == f {
		return f
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files[f.path] == f {
		if g == nil {
			delete(c.files, f.path)
		} else {
			c.files[f.path] = g
		}
		if c.uids[f.start.UID] == f {
			delete(c.uids, f.start.UID)
			if g != nil && g.start != nil {
				c.uids[g.start.UID] = g
			}
		}
	}
	return g
}
