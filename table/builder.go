package table

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
	"golang.org/x/sys/unix"
)

// builder turns one field's values, page by page, into the bytes of its .npy data. The dtype
// is decided from the data key and the values seen so far; when a later value needs a wider
// dtype (an integer column meets a float, a longer string), the rows already written are
// converted once into the new dtype. Strings grow their width geometrically and are cut to the
// exact width at the end, so a column of ever longer strings costs O(n log n), not O(n^2).
type builder struct {
	name     string
	dk       catalog.DataKey
	k        kinds
	dt       encode.Dtype // the stored dtype; valid once decided
	rowShape []int
	rb       int // bytes per row
	decided  bool
	rows     int // rows appended, the pending ones included
	pending  int // missing values seen before any value decided the dtype
	err      error
	out      sink // nil: values are only observed (the column is re-read from the catalog)
	newSink  func() (sink, error)
	scratch  []byte
}

// errSpill means a sink ran out of its budget: the scan falls back to a plainer mode.
var errSpill = errors.New("column storage exhausted")

func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = fmt.Errorf("field %s: %w", b.name, err)
	}
	if b.out != nil {
		b.out.discard()
		b.out = nil
	}
}

// appendColumn appends the first n values of col (nil: n missing values). Only a storage
// failure is returned; a value that cannot be encoded fails this field alone.
func (b *builder) appendColumn(col *catalog.Column, n int) error {
	if n == 0 {
		return nil
	}
	b.k.observeColumn(col, n)
	defer func() { b.rows += n }()
	if b.err != nil {
		return nil
	}
	if !b.decided {
		if !b.k.shapeOK {
			b.pending += n
			return nil
		}
		dt, shape, err := decide(b.dk, &b.k)
		if err != nil {
			b.fail(err)
			return nil
		}
		b.k.changed = false
		b.dt, b.rowShape, b.decided = dt, shape, true
		b.rb, _ = rowBytes(dt, shape)
		if b.newSink != nil {
			if b.out, err = b.newSink(); err != nil {
				return err
			}
		}
		if err := b.writeMissing(b.pending); err != nil {
			return err
		}
	} else if err := b.widen(false); err != nil {
		return err
	}
	if b.out == nil {
		// Observe only; still check that every value fits the decided shape and dtype.
		return b.check(col, n)
	}
	// Encode in pieces of at most encodeChunk bytes: a page of a hundred large rows must not
	// cost a buffer of its whole size.
	per := max(1, encodeChunk/max(b.rb, 1))
	fs, _ := b.out.(*fileSink)
	for i := 0; i < n; i += per {
		k := min(per, n-i)
		if buf := fs.spare(k * b.rb); buf != nil {
			// Big pieces are written by another goroutine while the next page decodes.
			if err := b.encode(buf, col, i, k); err != nil {
				b.fail(err)
				return nil
			}
			if err := fs.appendAsync(buf); err != nil {
				return err
			}
			continue
		}
		buf := b.buffer(k * b.rb)
		if err := b.encode(buf, col, i, k); err != nil {
			b.fail(err)
			return nil
		}
		if err := b.out.append(buf); err != nil {
			return err
		}
	}
	return nil
}

// encodeChunk is the most bytes of rows encoded at once.
const encodeChunk = 8 << 20

func (b *builder) buffer(n int) []byte {
	if cap(b.scratch) < n {
		b.scratch = make([]byte, n)
	}
	return b.scratch[:n]
}

// check encodes the values one row at a time without keeping them, so that a field re-read
// from the catalog fails at once when one of its values cannot be encoded.
func (b *builder) check(col *catalog.Column, n int) error {
	row := b.buffer(b.rb)
	for i := 0; i < n; i++ {
		var v any
		if col != nil {
			v = col.At(i)
		}
		if err := putValue(row, b.dt, b.rowShape, v); err != nil {
			b.fail(fmt.Errorf("row %d: %w", b.rows+i, err))
			return nil
		}
	}
	return nil
}

// encode writes rows [from, from+n) of col into dst.
func (b *builder) encode(dst []byte, col *catalog.Column, from, n int) error {
	if col == nil {
		return putMissing(dst, b.dt)
	}
	if len(b.rowShape) == 0 {
		switch {
		case col.Kind == catalog.KindFloat && b.dt.Descr == "<f8":
			putFloats(dst, col.F[from:from+n])
			return nil
		case col.Kind == catalog.KindInt && b.dt.Descr == "<i8":
			putInts(dst, col.I[from:from+n])
			return nil
		}
	}
	for i := 0; i < n; i++ {
		if err := putValue(dst[i*b.rb:(i+1)*b.rb], b.dt, b.rowShape, col.At(from+i)); err != nil {
			return fmt.Errorf("row %d: %w", b.rows+from+i, err)
		}
	}
	return nil
}

func (b *builder) writeMissing(n int) error {
	if n == 0 || b.out == nil {
		return nil
	}
	const chunk = 1 << 16
	per := max(1, chunk/max(b.rb, 1))
	for n > 0 {
		k := min(n, per)
		buf := b.buffer(k * b.rb)
		if err := putMissing(buf, b.dt); err != nil {
			b.fail(err)
			return nil
		}
		if err := b.out.append(buf); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// widen converts the stored rows when the values now call for another dtype. While building,
// strings grow to at least twice their width; final cuts them to the exact width.
func (b *builder) widen(final bool) error {
	if !b.k.changed && !final {
		return nil
	}
	b.k.changed = false
	want, _, err := decide(b.dk, &b.k)
	if err != nil {
		b.fail(err)
		return nil
	}
	if want == b.dt {
		return nil
	}
	if want.Descr[1] == 'U' && b.dt.Descr[1] == 'U' && !final {
		if want.Size <= b.dt.Size {
			return nil
		}
		if w := 2 * b.dt.Size / 4; w > want.Size/4 && w <= maxRowBytes/4 {
			want = encode.Unicode(w)
		}
	}
	rb, err := rowBytes(want, b.rowShape)
	if err != nil {
		b.fail(err)
		return nil
	}
	old, oldDt, oldRB := b.out, b.dt, b.rb
	b.dt, b.rb = want, rb
	if old == nil {
		return nil
	}
	out, err := b.newSink()
	if err != nil {
		return err
	}
	// Convert in chunks of whole rows.
	per := max(1, (1<<20)/max(oldRB, 1))
	src := make([]byte, per*oldRB)
	rows := int(old.size() / int64(max(oldRB, 1)))
	for r := 0; r < rows; r += per {
		k := min(per, rows-r)
		if err := old.readAt(src[:k*oldRB], int64(r)*int64(oldRB)); err != nil {
			out.discard()
			return err
		}
		dst := b.buffer(k * rb)
		if err := encode.Convert(dst, want, src[:k*oldRB], oldDt); err != nil {
			out.discard()
			b.out = old
			b.fail(err)
			return nil
		}
		if err := out.append(dst); err != nil {
			out.discard()
			return err
		}
	}
	old.discard()
	b.out = out
	return nil
}

// finish settles the dtype once every value has been seen. A field with no value at all is
// float64 NaNs (databroker's reading of an all-None column), shaped as its data key says.
func (b *builder) finish() error {
	if b.err != nil {
		return nil
	}
	if !b.decided {
		dt, shape, err := decide(b.dk, &b.k)
		if err != nil {
			b.fail(err)
			return nil
		}
		b.dt, b.rowShape, b.decided = dt, shape, true
		b.rb, _ = rowBytes(dt, shape)
		if b.newSink != nil {
			if b.out, err = b.newSink(); err != nil {
				return err
			}
		}
		return b.writeMissing(b.pending)
	}
	return b.widen(true)
}

// sink holds a column's data bytes (no header) while it is built.
type sink interface {
	append(p []byte) error
	readAt(p []byte, off int64) error
	size() int64
	discard()
}

// memSink keeps the bytes in memory, within a budget shared by the columns of one stream. The
// budget is charged with the buffer's capacity, not its length: append's doubling would
// otherwise hold up to twice the budget (a 64 MiB budget made a 128 MiB slice, 192 MiB while
// it was copied).
type memSink struct {
	b      []byte
	budget *int64
}

func (m *memSink) append(p []byte) error {
	need := len(m.b) + len(p)
	if need > cap(m.b) {
		c := max(2*cap(m.b), need)
		if int64(c-cap(m.b)) > *m.budget {
			c = cap(m.b) + int(*m.budget) // the most that fits
			if c < need {
				return errSpill
			}
		}
		*m.budget -= int64(c - cap(m.b))
		b := make([]byte, len(m.b), c)
		copy(b, m.b)
		m.b = b
	}
	m.b = append(m.b, p...)
	return nil
}

func (m *memSink) readAt(p []byte, off int64) error {
	if off+int64(len(p)) > int64(len(m.b)) {
		return fmt.Errorf("read %d bytes at %d of %d", len(p), off, len(m.b))
	}
	copy(p, m.b[off:])
	return nil
}

func (m *memSink) size() int64 { return int64(len(m.b)) }

func (m *memSink) discard() {
	*m.budget += int64(cap(m.b))
	m.b = nil
}

// Storage is where a scan writes the files of a cache entry (a cache.Builder).
type Storage interface {
	Create(name string) (*os.File, error)
	Discard(name string) error
	Reserve(n int64) error
}

// fileSink writes the bytes into a file of a cache entry, after room for the .npy header,
// through a buffer: a stream of a million one-row pages must not cost a write per row.
//
// Pieces of sinkBuffer bytes or more that the builder encodes into one of the sink's two spare
// buffers are written by a goroutine of their own (one at a time), while the scan decodes the
// next page: the copy into the page cache of fresh cache-file pages is the largest cost of
// decoding a wide field, and it then runs on another core. A write's error is returned by the
// next call that waits for it (appendAsync, readAt, finish).
type fileSink struct {
	st       Storage
	f        *os.File
	hdr      int64 // header room at the start of the file
	n        int64 // data bytes appended, buffered ones included
	reserved int64
	buf      []byte // appended, not yet written; they start at data offset n-len(buf)

	spares      [2][]byte  // encode buffers of appendAsync
	spareBudget *int64     // shared by the scan's sinks; nil: no spares
	writing     int        // index in spares of the buffer being written, -1 when none
	next        int        // index in spares of the buffer spare returned last
	done        chan error // the write in flight, nil when none
	err         error      // a failed write: the sink is unusable

	// deferWriteback: the scan reads a file that is being read from the disk (a prescan
	// behind an index pass): the writeback of what the sink writes would share the disk
	// with that read, so it is left to the entry's sync after the commit (and to the
	// kernel's own dirty limits, which write back and throttle when a field is big).
	deferWriteback bool
}

// sinkBuffer is how much a fileSink gathers before it writes; sinkStart the buffer it starts
// with.
const (
	sinkBuffer = 1 << 20
	sinkStart  = 16 << 10
)

// writebackMin is the least a write must be to start its writeback at once: a column's small
// tail waits for the entry's sync (in the background, after the commit) like the rest.
const writebackMin = 256 << 10

// reserveChunk is how much cache space a column asks for at a time.
const reserveChunk = 8 << 20

// reserve makes sure the cache has room for n more bytes of the column, asking in slices of
// up to reserveChunk.
func (s *fileSink) reserve(n int) error {
	if s.n+int64(n) <= s.reserved {
		return nil
	}
	need := s.n + int64(n) - s.reserved
	ask := max(need, min(reserveChunk, s.reserved+int64(n)))
	if err := s.st.Reserve(ask); err != nil {
		return fmt.Errorf("%w: %w", errSpill, err)
	}
	s.reserved += ask
	return nil
}

func (s *fileSink) append(p []byte) error {
	if err := s.reserve(len(p)); err != nil {
		return err
	}
	if len(s.buf)+len(p) > sinkBuffer {
		if err := s.flush(); err != nil {
			return err
		}
	}
	if len(p) >= sinkBuffer {
		if _, err := s.f.WriteAt(p, s.hdr+s.n); err != nil {
			return fmt.Errorf("%w: %w", errSpill, err)
		}
		s.writeback(s.f, s.hdr+s.n, int64(len(p)))
	} else {
		if s.buf == nil {
			// Grown by append up to about sinkBuffer: most columns of a stream are a few
			// KiB, and a MiB each to allocate and zero costs a stream of many fields.
			s.buf = make([]byte, 0, max(len(p), sinkStart))
		}
		s.buf = append(s.buf, p...)
	}
	s.n += int64(len(p))
	return nil
}

// spare returns a buffer of n bytes that is not being written, for appendAsync; nil when the
// piece is small, or when the spares of the scan's sinks would exceed their budget (the piece
// is then written the plain way, from the builder's buffer). A nil sink has no spare.
func (s *fileSink) spare(n int) []byte {
	if s == nil || n < sinkBuffer {
		return nil
	}
	i := 0
	if s.done != nil && s.writing == 0 {
		i = 1
	}
	if c := cap(s.spares[i]); c < n {
		if s.spareBudget == nil || *s.spareBudget < int64(n-c) {
			return nil
		}
		*s.spareBudget -= int64(n - c)
		s.spares[i] = make([]byte, n)
	}
	s.next = i
	return s.spares[i][:n]
}

// releaseSpares returns the spares' bytes to the budget.
func (s *fileSink) releaseSpares() {
	if s.spareBudget != nil {
		*s.spareBudget += int64(cap(s.spares[0]) + cap(s.spares[1]))
	}
	s.spares = [2][]byte{}
}

// spareBudget is the most bytes the spare buffers of one scan's sinks hold together: a stream
// of many wide fields must not double the scan's memory (each field's builder has an encode
// buffer of up to encodeChunk bytes already).
const spareBudget = 32 << 20

// appendAsync appends p, a buffer from spare, writing it in the background: it waits for the
// previous background write first, so that one is in flight at most and the other spare is
// free for the next piece.
func (s *fileSink) appendAsync(p []byte) error {
	if err := s.wait(); err != nil {
		return err
	}
	if err := s.reserve(len(p)); err != nil {
		return err
	}
	if err := s.flush(); err != nil {
		return err
	}
	s.writing = s.next
	done := make(chan error, 1)
	go func(f *os.File, p []byte, off int64) {
		_, err := f.WriteAt(p, off)
		if err == nil {
			s.writeback(f, off, int64(len(p)))
		}
		done <- err
	}(s.f, p, s.hdr+s.n)
	s.done = done
	s.n += int64(len(p))
	return nil
}

// wait waits for the background write in flight, if any, and returns the first write error.
func (s *fileSink) wait() error {
	if s.done != nil {
		err := <-s.done
		s.done, s.writing = nil, -1
		if err != nil && s.err == nil {
			s.err = fmt.Errorf("%w: %w", errSpill, err)
		}
	}
	return s.err
}

// sync writes the buffered bytes and waits for the background write: every byte appended is
// then in the file.
func (s *fileSink) sync() error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.wait()
}

// flush writes the buffered bytes.
func (s *fileSink) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	off := s.hdr + s.n - int64(len(s.buf))
	if _, err := s.f.WriteAt(s.buf, off); err != nil {
		return fmt.Errorf("%w: %w", errSpill, err)
	}
	if len(s.buf) >= writebackMin {
		s.writeback(s.f, off, int64(len(s.buf)))
	}
	s.buf = s.buf[:0]
	return nil
}

// writeback starts the writeback of [off, off+n) of f unless the sink defers it.
func (s *fileSink) writeback(f *os.File, off, n int64) {
	if !s.deferWriteback {
		startWriteback(f, off, n)
	}
}

// startWriteback asks the kernel to start writing [off, off+n) of f to the disk now, without
// waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE): the entry's sync after its commit
// fsyncs every file, and what was written back while the scan went on does not wait there, nor
// fills memory with dirty pages. Advice only.
func startWriteback(f *os.File, off, n int64) {
	if c, err := f.SyscallConn(); err == nil {
		_ = c.Control(func(fd uintptr) { _ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE) })
	}
}

func (s *fileSink) readAt(p []byte, off int64) error {
	if err := s.sync(); err != nil {
		return err
	}
	_, err := s.f.ReadAt(p, s.hdr+off)
	return err
}

func (s *fileSink) size() int64 { return s.n }

func (s *fileSink) discard() {
	s.wait()
	s.releaseSpares()
	s.st.Discard(filepath.Base(s.f.Name()))
}
