package jsonl

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// maxLine bounds the length of one line, and so the memory one reader holds and what one
// document can make brokerfs decode: filestore.MaxDocument, as for msgpack. Longer lines are
// skipped without being held whole (and logged by the index). Event pages of a few MB are
// common; 64 MiB is not.
const maxLine = filestore.MaxDocument

var errLongLine = fmt.Errorf("line longer than %d bytes", maxLine)

// lineReader reads the complete lines of the region [off, limit) of a file through ReadAt and a
// window buffer, so that its memory is bounded by the longest line, never by the file. A last
// line without its newline (a writer mid-write) is not returned.
type lineReader struct {
	r      io.ReaderAt
	buf    []byte
	lo, hi int   // unread bytes are buf[lo:hi]
	seen   int   // buf[lo:seen] has no newline
	pos    int64 // file offset of buf[lo]
	limit  int64
	max    int
	size   int   // the buffer's first size, which it shrinks back to after an overlong line
	err    error // sticky read error
}

func newLineReader(r io.ReaderAt, off, limit int64, size int) *lineReader {
	return &lineReader{r: r, buf: make([]byte, size), pos: off, limit: limit, max: maxLine, size: size}
}

// offset is the file offset of the next line.
func (r *lineReader) offset() int64 { return r.pos }

// seek moves to off, keeping buffered bytes when off falls inside them.
func (r *lineReader) seek(off int64) {
	if off >= r.pos && off <= r.pos+int64(r.hi-r.lo) {
		r.lo += int(off - r.pos)
	} else {
		r.lo, r.hi = 0, 0
	}
	r.pos, r.seen = off, r.lo
}

// next returns the next line without its newline, and its offset. The line aliases the buffer
// and is valid until the next call. At the end it returns io.EOF; for a line longer than
// max it returns errLongLine, having skipped the line without holding it: once a line
// outgrows a scan window, its end is looked for ahead (newline) before the buffer grows, so
// a line of any length over the bound costs one window, and one under it one buffer of its
// size.
func (r *lineReader) next() ([]byte, int64, error) {
	off := r.pos
	for {
		if i := bytes.IndexByte(r.buf[r.seen:r.hi], '\n'); i >= 0 {
			end := r.seen + i
			line := r.buf[r.lo:end]
			r.pos += int64(end + 1 - r.lo)
			r.lo, r.seen = end+1, end+1
			return line, off, nil
		}
		r.seen = r.hi
		if r.lo == 0 && r.hi == len(r.buf) && (r.hi >= scanAhead || r.hi > r.max) {
			// The line fills the buffer: find its end before growing it.
			n, found, err := r.lineEnd(r.pos + int64(r.hi))
			switch {
			case err != nil:
				return nil, r.pos, err
			case !found:
				return nil, r.pos, io.EOF // incomplete last line
			case n-r.pos > int64(r.max):
				r.pos = n + 1
				buf := r.buf
				if len(buf) > r.size {
					buf = make([]byte, r.size)
				}
				r.buf, r.lo, r.hi, r.seen = buf, 0, 0, 0
				return nil, off, errLongLine
			}
			grown := make([]byte, n-r.pos+1)
			copy(grown, r.buf[r.lo:r.hi])
			r.buf = grown
		}
		if err := r.fill(); err != nil {
			return nil, r.pos, err
		}
	}
}

// scanAhead is the size of the reads that look for the end of a long line.
const scanAhead = 1 << 20

// lineEnd looks for the newline that ends the current line from file offset from on, reading
// scanAhead bytes at a time and keeping none of them: it returns the newline's offset, found
// false when the region ends first.
func (r *lineReader) lineEnd(from int64) (int64, bool, error) {
	buf := make([]byte, scanAhead)
	for from < r.limit {
		n, err := r.r.ReadAt(buf[:min(int64(len(buf)), r.limit-from)], from)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return from + int64(i), true, nil
		}
		from += int64(n)
		if n == 0 || err != nil && !errors.Is(err, io.EOF) {
			if err == nil || errors.Is(err, io.EOF) {
				return from, false, nil
			}
			return from, false, fmt.Errorf("read at %d: %w", from, err)
		}
	}
	return from, false, nil
}

// fill reads more of the file into the buffer, growing it when a line does not fit.
func (r *lineReader) fill() error {
	if r.err != nil {
		return r.err
	}
	end := r.pos + int64(r.hi-r.lo) // file offset of buf[hi]
	if end >= r.limit {
		return io.EOF
	}
	if r.lo > 0 && r.hi == len(r.buf) || r.lo == r.hi {
		n := copy(r.buf, r.buf[r.lo:r.hi])
		r.seen -= r.lo
		r.lo, r.hi = 0, n
	}
	if r.hi == len(r.buf) {
		grown := make([]byte, min(2*len(r.buf), r.max+1))
		if len(grown) <= len(r.buf) {
			grown = make([]byte, len(r.buf)+4096)
		}
		copy(grown, r.buf[r.lo:r.hi])
		r.seen -= r.lo
		r.lo, r.hi = 0, r.hi-r.lo
		r.buf = grown
	}
	want := min(int64(len(r.buf)-r.hi), r.limit-end)
	n, err := r.r.ReadAt(r.buf[r.hi:r.hi+int(want)], end)
	r.hi += n
	switch {
	case errors.Is(err, io.EOF):
		r.limit = end + int64(n) // the file shrank under us
		if n == 0 {
			return io.EOF
		}
	case err != nil:
		r.err = fmt.Errorf("read at %d: %w", end, err)
		if n == 0 {
			return r.err
		}
	}
	return nil
}

// readFirstLine returns the first complete line of a file of the given size, or io.EOF when
// there is none yet.
func readFirstLine(r io.ReaderAt, size int64) ([]byte, error) {
	rd := newLineReader(r, 0, size, int(min(size, 16<<10)+1))
	line, _, err := rd.next()
	return line, err
}
