package msgpack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// Window sizes. A scan reads up to 1 MiB at a time: big enough that syscalls cost nothing next
// to decoding, small enough that a 2 GB file streams in constant memory. It starts with
// firstRead and doubles from read to read, so that a read of a few rows does not pull in a
// whole MiB. A window grows past scanWindow only when a single document is larger, and never
// past maxDocument (filestore.MaxDocument: larger ones are skipped unread, see skipStream).
// Start documents are read startWindow at a time (most are a few KiB).
const (
	scanWindow  = 1 << 20
	firstRead   = 64 << 10
	startWindow = 16 << 10
	maxDocument = filestore.MaxDocument
)

// errTruncated means a document runs past the end of the readable region: the last document
// of a file that is still being written, or a cut file.
var errTruncated = errors.New("truncated document")

// window is a read buffer over the region [0, limit) of a file, refilled with ReadAt (pread),
// so that readers never hold more of a file than its largest document and never share a file
// offset. A window is used by one goroutine.
type window struct {
	r     io.ReaderAt
	limit int64
	buf   []byte // the buffer; data is buf[:n]
	data  []byte // the bytes of the file at [off, off+len(data))
	off   int64
	read  int // bytes to read at the next refill (ramping up to len(buf))
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, scanWindow); return &b }}

// bigPools keep the windows that grew past scanWindow, one pool per power of two up to
// maxDocument. A stream of documents larger than scanWindow that is served without the cache
// (--cache-max smaller than the field) decodes its pages again on every kernel read, and
// grew a new window each time: 5 GB allocated, 3,700 collections, to read a 262 MB field.
var bigPools [bigClasses]sync.Pool

// bigClasses is the number of powers of two from 2*scanWindow to maxDocument (the line after
// it does not compile when that changes).
const bigClasses = 6

var _ = [1]int{}[maxDocument>>bigClasses-scanWindow]

// bigClass returns the index in bigPools and the capacity of a window of n > scanWindow
// bytes, or -1 when n is larger than maxDocument.
func bigClass(n int) (int, int) {
	for i, c := 0, 2*scanWindow; c <= maxDocument; i, c = i+1, 2*c {
		if n <= c {
			return i, c
		}
	}
	return -1, n
}

// bigBuf returns a buffer of n > scanWindow bytes, from bigPools when one is there.
func bigBuf(n int) []byte {
	i, c := bigClass(n)
	if i < 0 {
		return make([]byte, n)
	}
	if b, ok := bigPools[i].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, c)
}

// newWindow returns a window over r's first limit bytes, reading size bytes at a time.
func newWindow(r io.ReaderAt, limit int64, size int) *window {
	w := &window{r: r, limit: limit, read: min(firstRead, size)}
	if size == scanWindow {
		w.buf = *bufPool.Get().(*[]byte)
	} else {
		w.buf = make([]byte, size)
	}
	return w
}

// release returns the window's buffer to the pool. Slices into it die with it.
func (w *window) release() {
	switch c := cap(w.buf); {
	case c == scanWindow:
		b := w.buf[:scanWindow]
		bufPool.Put(&b)
	case c > scanWindow:
		if i, ci := bigClass(c); i >= 0 && ci == c {
			b := w.buf[:c]
			bigPools[i].Put(&b)
		}
	}
	w.buf, w.data = nil, nil
}

// at returns the buffered bytes from file offset pos on (at least one byte when pos < limit).
func (w *window) at(pos int64) ([]byte, error) {
	if pos >= w.off && pos < w.off+int64(len(w.data)) {
		return w.data[pos-w.off:], nil
	}
	return w.fill(pos, 0)
}

// atLeast is at, refilled when fewer than n bytes (and fewer than are left) are buffered:
// fast paths that read whole documents ask for their length before looking.
func (w *window) atLeast(pos int64, n int) ([]byte, error) {
	b, err := w.at(pos)
	if err != nil || len(b) >= n || int64(len(b)) >= w.limit-pos {
		return b, err
	}
	return w.more(pos, len(b), int(min(int64(n), w.limit-pos)))
}

// hint is the bytes to have buffered before decoding a document after one of last bytes: the
// documents of a run tend to be alike, so a document that would not fit in what is left of
// the buffer is read from its start at once, instead of being decoded up to the end of the
// buffer, found short and decoded again. It never asks for more than the buffer holds.
func (w *window) hint(last int) int {
	return min(last, len(w.buf), maxDocument)
}

// more is called when a decoder ran short on the bytes at from pos (had bytes of them):
// it returns at least need bytes from pos (need > had), growing the buffer when one document
// is larger than it. It returns errTruncated when the region ends before need bytes.
func (w *window) more(pos int64, had, need int) ([]byte, error) {
	if need <= had {
		need = had + 1
	}
	if int64(need) > w.limit-pos {
		return nil, errTruncated
	}
	if need > maxDocument {
		return nil, fmt.Errorf("document of more than %d bytes", maxDocument)
	}
	// The bytes from pos that are buffered already move to the front of the buffer instead of
	// being read again: a file of 3.2 MB pages read through a 4 MiB buffer was otherwise read
	// 1.3 times (each page read from its start, the head of the next one with it).
	keep := 0
	if pos >= w.off && pos < w.off+int64(len(w.data)) {
		keep = min(had, len(w.data)-int(pos-w.off))
	}
	kept := w.data[max(pos-w.off, 0):][:keep]
	size := len(w.buf)
	if had >= size || need > size {
		// The document is bigger than the buffer: double it (at least to need), so that a
		// document costs O(its size) to find however it is split.
		size = max(2*size, need)
		if int64(size) > w.limit-pos {
			size = int(w.limit - pos)
		}
		var nb []byte
		if size > scanWindow {
			nb = bigBuf(size)
		} else {
			nb = make([]byte, size)
		}
		copy(nb, kept) // before the old buffer goes back to the pool
		w.release()
		w.buf = nb
	} else {
		copy(w.buf, kept)
	}
	return w.fillFrom(pos, keep, need)
}

// fillFrom is fill when the first keep bytes at pos are at the start of the buffer already.
func (w *window) fillFrom(pos int64, keep, need int) ([]byte, error) {
	if keep == 0 {
		return w.fill(pos, need)
	}
	size := min(max(w.read, need), len(w.buf))
	w.read = min(2*w.read, len(w.buf))
	n := min(int64(size), w.limit-pos)
	w.data = w.buf[:n]
	w.off = pos
	got, err := w.r.ReadAt(w.data[keep:], pos+int64(keep))
	if int64(keep+got) < n {
		w.data = w.data[:keep+got]
		if err == nil || err == io.EOF {
			err = fmt.Errorf("file shorter than %d bytes: %w", w.limit, errTruncated)
		}
		return nil, err
	}
	return w.data, nil
}

// fill reads at least need bytes at pos into the buffer (the ramping read size when more),
// and doubles the read size for next time.
func (w *window) fill(pos int64, need int) ([]byte, error) {
	if pos >= w.limit {
		return nil, io.EOF
	}
	size := min(max(w.read, need), len(w.buf))
	w.read = min(2*w.read, len(w.buf))
	n := min(int64(size), w.limit-pos)
	w.data = w.buf[:n]
	w.off = pos
	got, err := w.r.ReadAt(w.data, pos)
	if int64(got) < n {
		w.data = w.data[:got]
		if err == nil || err == io.EOF {
			// The file shrank under us (it was rewritten): what we indexed is gone.
			err = fmt.Errorf("file shorter than %d bytes: %w", w.limit, errTruncated)
		}
		return nil, err
	}
	return w.data, nil
}

// errTooBig means a document is longer than maxDocument.
var errTooBig = fmt.Errorf("document longer than %d MiB", maxDocument>>20)

// byteReader reads single bytes of a file through a small buffer, for walks that must not
// hold what they walk over.
type byteReader struct {
	r     io.ReaderAt
	limit int64
	buf   [64 << 10]byte
	off   int64 // file offset of buf[0]
	n     int   // valid bytes in buf
}

// at returns the byte at pos, errTruncated past the limit.
func (br *byteReader) at(pos int64) (byte, error) {
	if pos >= br.off && pos < br.off+int64(br.n) {
		return br.buf[pos-br.off], nil
	}
	if pos >= br.limit {
		return 0, errTruncated
	}
	n := int(min(int64(len(br.buf)), br.limit-pos))
	got, err := br.r.ReadAt(br.buf[:n], pos)
	if got == 0 {
		if err == nil || err == io.EOF {
			err = errTruncated
		}
		return 0, err
	}
	br.off, br.n = pos, got
	return br.buf[0], nil
}

// uint reads a big-endian length of size bytes at pos.
func (br *byteReader) uint(pos int64, size int) (int64, error) {
	var v int64
	for i := range size {
		c, err := br.at(pos + int64(i))
		if err != nil {
			return 0, err
		}
		v = v<<8 | int64(c)
	}
	return v, nil
}

// skipStream returns the end of the msgpack value at pos of a file of limit bytes, as skip
// does, reading only the type bytes and lengths: the payloads of strings and binaries are
// passed over unread, so a document of any size costs a few KiB of memory. Running past the
// limit is errTruncated.
func skipStream(r io.ReaderAt, pos, limit int64) (int64, error) {
	br := &byteReader{r: r, limit: limit}
	for left := int64(1); left > 0; left-- {
		c, err := br.at(pos)
		if err != nil {
			return pos, err
		}
		switch {
		case c <= 0x7f || c >= 0xe0:
			pos++
			continue
		case c <= 0x8f:
			left += 2 * int64(c&0x0f)
			pos++
		case c <= 0x9f:
			left += int64(c & 0x0f)
			pos++
		case c <= 0xbf:
			pos += 1 + int64(c&0x1f)
			continue
		default:
			if n := fixedSize[c-0xc0]; n != 0 {
				pos += int64(n)
				continue
			}
			var lenBytes int
			switch c {
			case 0xc4, 0xd9, 0xc7:
				lenBytes = 1
			case 0xc5, 0xda, 0xdc, 0xde, 0xc8:
				lenBytes = 2
			case 0xc6, 0xdb, 0xdd, 0xdf, 0xc9:
				lenBytes = 4
			default:
				return pos, corrupt(0, "reserved type byte 0xc1")
			}
			size, err := br.uint(pos+1, lenBytes)
			if err != nil {
				return pos, err
			}
			hdr := int64(1 + lenBytes)
			if c >= 0xc7 && c <= 0xc9 {
				hdr++
			}
			switch c {
			case 0xdc, 0xdd:
				left += size
			case 0xde, 0xdf:
				left += 2 * size
			default:
				pos += hdr + size
				continue
			}
			pos += hdr
		}
		if left-1 > limit-pos {
			return pos, errTruncated // each value left takes a byte at least
		}
	}
	if pos > limit {
		return pos, errTruncated
	}
	return pos, nil
}

// Drop-behind: documents of more than bigDocument bytes hold array data (a page of spectra,
// images). When the caller keeps what it reads (catalog.WithKeptReads: a scan writing a cache
// entry), keeping the catalog's copy in the page cache as well would hold the bytes twice:
// EventPages drops the pages of such documents of its descriptor from the page cache once
// decoded (posix_fadvise DONTNEED, whole pages only, in batches of dropBatch bytes). Besides
// the memory, the freed pages are the ones the cache file is then written into: in a VM whose
// host reclaims the guest's free memory (virtio-balloon free page reporting, as here), a write
// into never-used pages costs a host fault per page, and the copy into the cache file took
// about twice as long (BENCHMARKS.md, h/wide). Small documents, other descriptors' documents
// and reads that keep nothing (no cache: they read the catalog again) are left alone.
const (
	bigDocument = scanWindow
	dropBatch   = 8 << 20
)

// dropBehind gathers the ranges of big documents read and drops their pages in batches.
type dropBehind struct {
	fd         int // -1: nothing is dropped
	start, end int64
}

func newDropBehind(r any, kept bool) *dropBehind {
	db := &dropBehind{fd: -1}
	if f, ok := r.(*os.File); ok && kept {
		db.fd = int(f.Fd())
	}
	return db
}

// read notes the document [pos, pos+n) as decoded.
func (db *dropBehind) read(pos int64, n int) {
	if db.fd < 0 || n <= bigDocument {
		return
	}
	if db.end != pos {
		db.flush()
		db.start = pos
	}
	db.end = pos + int64(n)
	if db.end-db.start >= dropBatch {
		db.flush()
	}
}

// flush drops the gathered range. Advice only: errors are ignored.
func (db *dropBehind) flush() {
	if db.fd >= 0 && db.end > db.start {
		_ = unix.Fadvise(db.fd, db.start, db.end-db.start, unix.FADV_DONTNEED)
	}
	db.start, db.end = 0, 0
}
