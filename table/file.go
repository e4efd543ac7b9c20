package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/brokerfs/brokerfs/encode"
)

// File is the content of one file of the tree that the table layer makes: a column's .npy,
// a .csv. Its size is known without reading data.
type File interface {
	Size() int64
	// Open returns a reader for one open of the file.
	Open(ctx context.Context) (Handle, error)
}

// Handle is one open of a File.
type Handle interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// Backing returns an open file whose bytes are exactly this file's, for the kernel to
	// read directly (FUSE passthrough) or for splice; nil when there is none.
	Backing() *os.File
	Close() error
}

// BlockSize is the st_blksize a file reports; readers size their buffered reads by it
// (Python's open() reads st_blksize bytes at a time, numpy's header included). A field
// whose rows are filled on demand reports a page, so that reading its header fills no row;
// other files 1 MiB.
func BlockSize(f File) int {
	if Lazy(f) {
		return lazyAlign
	}
	return 1 << 20
}

// Lazy reports whether f is the .npy, or the .tif, of a field whose rows are filled on demand
// (handler work per row).
func Lazy(f File) bool {
	if t, ok := f.(*tiffFile); ok {
		return Lazy(t.npy)
	}
	_, ok := f.(lazyNPY)
	return ok
}

// lazyNPY is implemented by the .npy files of fields whose rows are filled on demand.
type lazyNPY interface{ lazyRows() }

// RowReader is implemented by the handles of fields whose rows are filled on demand.
// ReadAtRow is ReadAt that also returns, when the read lay within one row and filled it, that
// row's byte range (else a length of 0): the file system may hand the whole row to the
// kernel's page cache (read back through ReadAt, which it now serves from the cache file),
// so that a reader faulting a mapped frame in page by page sends one request, not one a page.
type RowReader interface {
	ReadAtRow(ctx context.Context, p []byte, off int64) (n int, rowOff, rowLen int64, err error)
}

// osFile serves a complete file of a cache entry.
type osFile struct {
	size int64
	open func() (*os.File, error)
}

func (f *osFile) Size() int64 { return f.size }

func (f *osFile) Open(context.Context) (Handle, error) {
	file, err := f.open()
	if err != nil {
		return nil, err
	}
	return &osHandle{f: file, size: f.size}, nil
}

type osHandle struct {
	f    *os.File
	size int64
}

func (h *osHandle) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if off >= h.size {
		return 0, io.EOF
	}
	if rest := h.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := h.f.ReadAt(p, off)
	if err == nil && off+int64(n) == h.size {
		err = io.EOF
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("read cache file %s: %w", h.f.Name(), err)
	}
	return n, err
}

func (h *osHandle) Backing() *os.File { return h.f }
func (h *osHandle) Close() error      { return h.f.Close() }

// readerFile serves an encoding computed on read (memory columns, columns re-read from the
// catalog, CSV text without a cache).
// Bytes is a file held in memory (a document, a list of paths, a small table).
func Bytes(b []byte) File { return &bytesFile{b} }

type bytesFile struct{ b []byte }

func (f *bytesFile) Size() int64 { return int64(len(f.b)) }
func (f *bytesFile) Open(context.Context) (Handle, error) {
	return readerHandle{bytesReader(f.b)}, nil
}

type bytesReader []byte

func (b bytesReader) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type readerFile struct {
	size int64
	r    interface {
		ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	}
}

func (f *readerFile) Size() int64 { return f.size }

func (f *readerFile) Open(context.Context) (Handle, error) { return readerHandle{f.r}, nil }

type readerHandle struct {
	r interface {
		ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	}
}

func (h readerHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return h.r.ReadAt(ctx, p, off)
}
func (readerHandle) Backing() *os.File { return nil }
func (readerHandle) Close() error      { return nil }

// npyFile is the .npy encoding of an Array, computed on read.
func npyFile(a encode.Array) File {
	n := encode.NewNPY(a)
	return &readerFile{size: n.Size(), r: n}
}

// Stats count what the table layer did, for metrics and tests.
type Stats struct {
	Scans        atomic.Int64 // stream scans (each a pass over the stream's events)
	CacheHits    atomic.Int64 // streams served from a persisted entry
	CacheStores  atomic.Int64 // streams stored into the cache
	CacheFailed  atomic.Int64 // streams that could not be stored (served without the cache)
	FramesFilled atomic.Int64 // rows of external or remote fields filled
	FillsAhead   atomic.Int64 // fills ahead started for sequential readers of such fields
	CSVFormatted atomic.Int64 // CSV files formatted into the cache
	// ParquetWritten counts Parquet tables written into the cache.
	ParquetWritten atomic.Int64
	// Prescans counts scans started behind a run's index pass (Stream.Prescan), and
	// PrescansStored those whose entry was committed.
	Prescans       atomic.Int64
	PrescansStored atomic.Int64
	// EarlyNPY counts external fields' .npy files sized before their stream's scan
	// (Stream.EarlyNPY).
	EarlyNPY atomic.Int64
}
