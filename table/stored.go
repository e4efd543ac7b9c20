package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/brokerfs/brokerfs/encode"
	"github.com/brokerfs/brokerfs/handlers"
)

// Stored external fields: when a field's first datum is kept in its file as the very bytes of
// its .npy rows (an HDF5 dataset without filters, little-endian: handlers.Filler.Stored), a
// read of the .npy is served by reading those bytes from the source file, each request's byte
// range straight into the reply (handlers.Filler.ReadRange), and the field gets no sparse cache
// file. Filling one would read every frame, write it to the cache file and read it back: three
// copies and a second set of page-cache pages for bytes the source file's page cache already
// serves, for a re-read that costs the same pread of the source. (What a cache copy would still
// buy, a local copy of frames on slow remote storage, is left to a later, asynchronous fill.)
// Rows whose datum turns out not to be stored so (another file of the run compressed, say)
// are decoded whole by the Filler and the range copied out.

// storedProbe reports, once per column, whether its rows can be read as stored: the first
// datum's handler says so. A failure (the first file missing) is a no: the field then goes
// through the sparse cache file as before.
func (lc *lazyColumn) storedProbe(ctx context.Context) bool {
	lc.storedMu.Lock()
	defer lc.storedMu.Unlock()
	if lc.storedDone {
		return lc.stored
	}
	if lc.remote || lc.rows == 0 || len(lc.ids) == 0 || lc.s.cfg.Filler == nil || lc.s.ext == nil {
		lc.storedDone = true
		return false
	}
	ref, err := lc.s.ext.firstOr(ctx, lc.ids[0])
	if err != nil {
		return false // not remembered: the next open asks again
	}
	lc.stored = lc.s.cfg.Filler.Stored(ctx, ref.res, ref.kwargs, lc.dt.Descr, lc.rowShape)
	lc.storedDone = true
	return lc.stored
}

// storedFile is the .npy of a stored external field.
type storedFile struct {
	lc   *lazyColumn
	hdr  []byte
	size int64
}

func newStoredFile(lc *lazyColumn) *storedFile {
	hdr := encode.NPYHeaderAligned(lc.dt, append([]int{lc.rows}, lc.rowShape...), lazyAlign)
	return &storedFile{lc: lc, hdr: hdr, size: int64(len(hdr)) + int64(lc.rows)*int64(lc.rb)}
}

func (f *storedFile) Size() int64 { return f.size }
func (f *storedFile) lazyRows()   {}

func (f *storedFile) Open(context.Context) (Handle, error) { return &storedHandle{f: f}, nil }

// storedHandle is one open of a stored field's .npy.
type storedHandle struct {
	f *storedFile

	mu     sync.Mutex
	handed int   // guarded by mu; 1 + the row last handed over whole by ReadAtRow, or 0
	next   int64 // guarded by mu; where the last read larger than a page ended, or -1
}

func (h *storedHandle) Backing() *os.File { return nil }
func (h *storedHandle) Close() error      { return nil }

func (h *storedHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, _, _, err := h.ReadAtRow(ctx, p, off)
	return n, err
}

// ReadAtRow implements RowReader: a page-sized read of a row, another than the last one handed
// over (a page fault of a mapped frame), hands the whole row over to the page cache.
func (h *storedHandle) ReadAtRow(ctx context.Context, p []byte, off int64) (n int, rowOff, rowLen int64, err error) {
	f, lc := h.f, h.f.lc
	if off < 0 {
		return 0, 0, 0, fmt.Errorf("read npy at %d: negative offset", off)
	}
	if off >= f.size {
		return 0, 0, 0, io.EOF
	}
	short := false
	if rest := f.size - off; int64(len(p)) > rest {
		p, short = p[:rest], true
	}
	hdr, rb := int64(len(f.hdr)), int64(lc.rb)
	end := off + int64(len(p))
	h.mu.Lock()
	// The last piece of a large read(2) in order, not a page fault. Only reads larger than a
	// page count: a page fault of frame 0 right after the header's read continues it too.
	cont := off == h.next
	h.next = -1
	if len(p) > rowPage {
		h.next = end
	}
	h.mu.Unlock()
	if off >= hdr && !cont && len(p) <= rowPage && int64(len(p)) < rb && (off-hdr)/rb == (end-1-hdr)/rb {
		row := int((off - hdr) / rb)
		h.mu.Lock()
		if h.handed != row+1 {
			h.handed = row + 1
			rowOff, rowLen = hdr+int64(row)*rb, rb
		}
		h.mu.Unlock()
		if rowLen > 0 {
			// A page fault of a mapped frame, whose whole row goes to the page cache next
			// (nodes' storeRow): read the row now, in one request to the source, so that the
			// faults of its other pages meanwhile find it in the source file's page cache.
			row := make([]byte, rb)
			if err := lc.readRange(ctx, int((off-hdr)/rb), 0, row); err != nil {
				return 0, 0, 0, err
			}
			n = copy(p, row[off-rowOff:])
			return n, rowOff, rowLen, nil
		}
	}
	if off < hdr {
		n = copy(p, f.hdr[off:])
	}
	for n < len(p) {
		pos := off + int64(n) - hdr
		r := pos / rb
		in := pos - r*rb
		k := int(min(rb-in, int64(len(p)-n)))
		if err := lc.readRange(ctx, int(r), in, p[n:n+k]); err != nil {
			return n, 0, 0, err
		}
		n += k
	}
	if short {
		err = io.EOF
	}
	return n, rowOff, rowLen, err
}

// Splicer is implemented by handles whose bytes past a header can be moved from their source
// files into a pipe (splice(2)) instead of copied into a buffer: stored external fields.
type Splicer interface {
	// SpliceAt moves the n bytes at off into sink, or fails; then sink may hold part of them
	// and the caller reads the range with ReadAt instead. It takes reads larger than a page
	// that lie past the header and within the file.
	SpliceAt(ctx context.Context, sink handlers.SpliceSink, off int64, n int) error
}

// errNoSplice: a read SpliceAt does not take.
var errNoSplice = errors.New("read not served by splice")

// SpliceAt implements Splicer, row by row through the Filler (handlers.Filler.SpliceRange).
// It counts as a read of the range for ReadAtRow's telling page faults from a large read(2).
func (h *storedHandle) SpliceAt(ctx context.Context, sink handlers.SpliceSink, off int64, n int) error {
	f, lc := h.f, h.f.lc
	hdr, rb := int64(len(f.hdr)), int64(lc.rb)
	if n <= rowPage || off < hdr || rb <= 0 || off > f.size || int64(n) > f.size-off {
		return errNoSplice
	}
	end := off + int64(n)
	if room, ok := sink.(handlers.SpliceRoom); ok && !spliceFits(off-hdr, end-hdr, rb, room.Slots()) {
		// Rows small next to the request (spectra of a few KiB): one piece of a file each, a
		// slot more each when not page-aligned. Found out only after most of them were moved,
		// the request would be read again whole.
		return errNoSplice
	}
	h.mu.Lock()
	h.next = end
	h.mu.Unlock()
	for pos := off - hdr; pos < end-hdr; {
		r := pos / rb
		in := pos - r*rb
		k := min(rb-in, end-hdr-pos)
		if err := lc.spliceRange(ctx, int(r), in, int(k), sink); err != nil {
			return err
		}
		pos += k
	}
	return nil
}

// spliceFits reports whether the bytes [from, to) of rows of rb bytes, one piece of a file
// per row, surely fit in slots pipe slots: a piece of k bytes spans at most ceil(k/page)+1
// pages. (A row the handler keeps in several pieces can still run out of room: then the
// read falls back as any failed splice does.)
func spliceFits(from, to, rb int64, slots int) bool {
	const page = 4096
	if to-from > int64(slots)*page {
		return false
	}
	for pos := from; pos < to; {
		k := min(rb-pos%rb, to-pos)
		slots -= int((k+page-1)/page) + 1
		if slots < 0 {
			return false
		}
		pos += k
	}
	return true
}

// spliceRange moves bytes [in, in+n) of row r from its datum's file into sink.
func (lc *lazyColumn) spliceRange(ctx context.Context, r int, in int64, n int, sink handlers.SpliceSink) error {
	id := lc.ids[r]
	ref, err := lc.s.ext.datum(ctx, id)
	if err != nil {
		return err
	}
	if err := lc.s.cfg.Filler.SpliceRange(ctx, ref.res, id, ref.kwargs, sink, in, n, lc.dt.Descr, lc.rowShape); err != nil {
		return fmt.Errorf("field %s row %d (datum %s): %w", lc.field, r, id, err)
	}
	if in == 0 {
		lc.s.cfg.stats().FramesFilled.Add(1)
	}
	return nil
}

// readRange reads bytes [in, in+len(dst)) of row r from its datum's file.
func (lc *lazyColumn) readRange(ctx context.Context, r int, in int64, dst []byte) error {
	if in == 0 {
		lc.s.cfg.stats().FramesFilled.Add(1)
	}
	id := lc.ids[r]
	ref, err := lc.s.ext.datum(ctx, id)
	if err != nil {
		return err
	}
	if err := lc.s.cfg.Filler.ReadRange(ctx, ref.res, id, ref.kwargs, dst, in, lc.dt.Descr, lc.rowShape); err != nil {
		return fmt.Errorf("field %s row %d (datum %s): %w", lc.field, r, id, err)
	}
	return nil
}
