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
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// Options configure a Catalog.
type Options struct {
	// Logger receives warnings about files and lines that are skipped; nil means slog.Default().
	Logger *slog.Logger
	// Index is the listing index file (see filestore.Options); "" means none.
	Index string
}

// Catalog is a suitcase-jsonl store (package filestore lists its files).
type Catalog = filestore.Catalog

// Open returns a catalog of the run files that patterns name. Each pattern is a directory (its
// *.jsonl files), a glob or a file; they are expanded again on each call to Runs, so files that
// appear later are found.
func Open(patterns []string, opts Options) (*Catalog, error) {
	if len(patterns) == 0 {
		return nil, errors.New("open jsonl catalog: no paths")
	}
	c, err := filestore.Open(patterns, []*filestore.Format{NewFormat(opts.Logger)}, filestore.Options{Logger: opts.Logger, Index: opts.Index})
	if err != nil {
		return nil, fmt.Errorf("open jsonl catalog: %w", err)
	}
	return c, nil
}

// cachedIndexes is how many run indexes a Format keeps, for the runs opened last.
const cachedIndexes = 256

// NewFormat returns the JSONL file format for a filestore.Catalog. It keeps the indexes of the
// runs opened last, extended as their files grow; use one per catalog.
func NewFormat(log *slog.Logger) *filestore.Format {
	if log == nil {
		log = slog.Default()
	}
	ic := &indexCache{log: log, entries: map[string]*cached{}}
	return &filestore.Format{
		Name:      "jsonl",
		Ext:       ".jsonl",
		ReadHead:  readHead,
		ParseHead: parseHead,
		Open:      ic.open,
	}
}

// indexCache keeps the indexes of the run files opened last, by path.
type indexCache struct {
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*cached // guarded by mu
	tick    uint64             // guarded by mu
}

// cached is a file's index and the start line it was built under.
type cached struct {
	head  []byte
	ix    *index
	used  uint64
	size  int64 // the file when last opened
	mtime time.Time
}

// readHead reads a file's first line for the listing. A file without a complete first line
// yet is being created by a writer: filestore.ErrIncomplete.
func readHead(r io.ReaderAt, name string, size int64) (*catalog.Start, []byte, error) {
	line, err := readFirstLine(r, size)
	switch {
	case errors.Is(err, io.EOF):
		return nil, nil, filestore.ErrIncomplete
	case errors.Is(err, errLongLine):
		return nil, nil, fmt.Errorf("%s: first line: %w", name, err)
	case err != nil:
		return nil, nil, err
	}
	line = bytes.Clone(line)
	s, err := parseStartLine(name, line)
	if err != nil {
		return nil, nil, err
	}
	return s, line, nil
}

// parseHead parses a first line that readHead returned (the line holds the start's JSON as
// stored: raw is not needed).
func parseHead(line, _ []byte) (*catalog.Start, error) { return parseStartLine("listing index", line) }

func parseStartLine(source string, line []byte) (*catalog.Start, error) {
	var d decoder
	kind, doc, raw, err := d.decodeLine(line)
	switch {
	case err != nil:
		return nil, &catalog.DocError{Source: source + ":1", Name: kind.String(), Err: err}
	case kind != kindStart:
		return nil, fmt.Errorf("%s:1: first document is a %s, not a start", source, kind)
	}
	s, err := catalog.ParseStart(doc, bytes.Clone(raw))
	if err != nil {
		return nil, &catalog.DocError{Source: source + ":1", Name: "start", Err: err}
	}
	return s, nil
}

// open opens the run of a listed file as a snapshot of the file at its current size. When
// the file no longer begins with the listed start, the error wraps fs.ErrNotExist, so that
// the catalog lists again.
func (c *indexCache) open(ctx context.Context, f *filestore.File) (catalog.Run, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size != f.Size || !fi.ModTime().Equal(f.ModTime) {
		line, err := readFirstLine(fh, size)
		if err != nil || !bytes.Equal(line, f.Head) {
			return nil, fmt.Errorf("%s changed since it was listed: %w", f.Path, fs.ErrNotExist)
		}
	}
	ino, dev := filestore.StatIDs(fi)
	version := filestore.VersionKey(f.Path, size, fi.ModTime(), ino, dev)
	return &run{path: f.Path, start: f.Start, ix: c.index(f, size, fi.ModTime()), size: size, version: version}, nil
}

// index returns the index of f's file, now of the given size and mtime. It is kept while the
// file begins with the same start line and only grew (the index notices by itself when the
// bytes before its end were rewritten); a file rewritten to the same or a smaller size gets a
// new one.
func (c *indexCache) index(f *filestore.File, size int64, mtime time.Time) *index {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	e := c.entries[f.Path]
	if e == nil || !bytes.Equal(e.head, f.Head) || size < e.size || (size == e.size && !mtime.Equal(e.mtime)) {
		e = &cached{head: f.Head, ix: newIndex(f.Path, c.log, int64(len(f.Head))+1)}
		c.entries[f.Path] = e
		if len(c.entries) > cachedIndexes {
			var victim string
			oldest := c.tick
			for p, v := range c.entries {
				if v.used < oldest {
					victim, oldest = p, v.used
				}
			}
			delete(c.entries, victim) // runs handed out keep their index
		}
	}
	e.used, e.size, e.mtime = c.tick, size, mtime
	return e.ix
}
