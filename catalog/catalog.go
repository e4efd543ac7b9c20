// Package catalog holds the Bluesky event-model documents that brokerfs reads, the Catalog
// interface every record store implements, and the errors they share.
//
// You are at the bottom of brokerfs: backends (catalog/msgpack, catalog/jsonl, catalog/memory, ...)
// turn a store into Catalog and Run values; package nodes turns those into a file tree. This package
// imports no FUSE, handler or encoder code.
//
// Event data travels in columnar EventPages whose backing slices a backend reuses from one page to
// the next, so that a run of a million single-event pages decodes without a million allocations.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Backends wrap them with context; callers test with errors.Is.
var (
	// ErrNotFound means the run, document or field does not exist (ENOENT to a user).
	ErrNotFound = errors.New("not found")
	// ErrAmbiguous means a uid prefix matches more than one run.
	ErrAmbiguous = errors.New("ambiguous uid prefix")
	// ErrBadDocument means a document is malformed: bad encoding, missing keys, wrong types.
	ErrBadDocument = errors.New("bad document")
)

// DocError names the document that failed and why. It unwraps to ErrBadDocument and to the cause.
type DocError struct {
	Source string // file or collection, with a position where known ("run.jsonl:12")
	Name   string // document name: start, descriptor, event_page, ...
	Err    error
}

func (e *DocError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("%s: bad document: %v", e.Source, e.Err)
	}
	return fmt.Sprintf("%s: bad %s document: %v", e.Source, e.Name, e.Err)
}

// Unwrap returns both ErrBadDocument and the cause.
func (e *DocError) Unwrap() []error { return []error{ErrBadDocument, e.Err} }

// Catalog is a store of runs. Implementations are safe for concurrent use.
type Catalog interface {
	// Runs returns the start document of every run in the store, in no particular order. It
	// reflects runs added or changed since the last call (file stores compare mtimes). A run
	// whose start document cannot be read is left out and logged by the backend.
	Runs(ctx context.Context) ([]*Start, error)

	// Run opens the run whose start uid is uid (exact match). It returns an error wrapping
	// ErrNotFound when there is none.
	Run(ctx context.Context, uid string) (Run, error)

	// Close releases the store's resources.
	Close() error
}

// Run is one run of a Catalog. Implementations are safe for concurrent use.
//
// A Run is a snapshot: a backend may answer from the state the run had when Run was called,
// so callers that want to see a live run grow call Catalog.Run again.
type Run interface {
	// Start returns the run's start document.
	Start() *Start

	// Stop returns the run's stop document, or an error wrapping ErrNotFound while the run is live.
	Stop(ctx context.Context) (*Stop, error)

	// Descriptors returns the run's event descriptors in the order they were written.
	Descriptors(ctx context.Context) ([]*Descriptor, error)

	// EventPages calls fn with the events of one descriptor, in stored order, as columnar
	// pages. Rows are numbered from 0 in stored order; the pages cover at least rows [from, to)
	// (to < 0 means to the end) and may start before from or end after to: p.FirstRow says
	// where each page starts. Only the data keys in fields are decoded (nil means all; an empty
	// non-nil slice means none: time, seq_num and timestamps only).
	//
	// The page and every slice in it are valid only until fn returns: backends reuse them.
	// An error from fn stops the iteration and is returned.
	EventPages(ctx context.Context, descriptor string, from, to int, fields []string, fn func(p *EventPage) error) error

	// Resources returns the run's resource documents.
	Resources(ctx context.Context) ([]*Resource, error)

	// Datums calls fn with the datums of a resource as columnar pages (reused like EventPages).
	Datums(ctx context.Context, resource string, fn func(p *DatumPage) error) error
}

// Clock tells the time; tests inject a fake one.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// DocumentReader is implemented by runs that can replay their documents as stored, in the
// order they were written, pages as pages: what `brokerfs copy` writes to another store.
type DocumentReader interface {
	// Documents calls fn with each document of the run. The document may be reused after fn
	// returns only where a backend says so; fn must copy what it keeps.
	Documents(ctx context.Context, fn func(d Document) error) error
}

// Versioner is implemented by runs that can name the exact state of their documents: a key
// that changes whenever anything brokerfs shows of the run could change (a file's path, size,
// mtime and inode; a database run's uid, stop uid and per-descriptor event counts). The
// persistent cache keeps what it decoded of a run under this key; a run that does not
// implement Versioner, or returns "", is decoded into memory and temporary files only.
type Versioner interface {
	Version(ctx context.Context) (string, error)
}

// ArrayReader is implemented by runs that serve some fields as arrays read by row range
// rather than through EventPages (a remote server's array endpoints, where a frame of a big
// array costs one request of about its size). The table layer leaves such a field out of its
// scan of the events, sizes it from ArrayField and fills the rows a read needs with ReadArray,
// as it does for external data.
type ArrayReader interface {
	// ArrayField reports whether field of descriptor is read by row range and, if so, its
	// NumPy dtype descr and the shape of one row (one event's value).
	ArrayField(ctx context.Context, descriptor, field string) (descr string, rowShape []int, ok bool, err error)
	// ReadArray writes rows [from, to) of field, in C order with the dtype and row shape that
	// ArrayField gave, into dst, which holds exactly that many bytes.
	ReadArray(ctx context.Context, descriptor, field string, from, to int, dst []byte) error
}

// EventCounter is implemented by runs that know, without reading the events, how many rows
// EventPages gives for a descriptor (a file store's index counts them on its pass): ok is
// false when the count is not known exactly. A stream's external field can then be sized
// before its scan.
type EventCounter interface {
	EventRows(ctx context.Context, descriptor string) (rows int, ok bool)
}

// RunVersioner is implemented by catalogs that can tell a run's version without opening it
// (a stat of its file): the key Run(uid).Version would give. brokerfs then opens a cached
// finished run from the cache alone and notices a changed run within its listing TTL.
type RunVersioner interface {
	RunVersion(ctx context.Context, uid string) (string, error)
}
