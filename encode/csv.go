package encode

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"sync"
)

const (
	// csvBlockRows is the most rows in one block, the unit of the checkpoint index: a read
	// formats from the start of the block that holds its offset.
	csvBlockRows = 1024
	// csvBlockText is the text a block should be at most, by estimate (estimateText): it
	// bounds the text a read formats before reaching its offset, so wide rows make short
	// blocks.
	csvBlockText = 64 << 10
	// csvChunk is how much text is formatted before it is handed on; with the raw block it
	// bounds the memory of a read.
	csvChunk = 64 << 10
)

// CSV is the CSV text of arrays side by side, read at any offset without ever holding the
// whole text. Lines end in "\n" (not RFC 4180's CRLF: it is what pandas.to_csv writes on
// Unix and what line-oriented tools expect; every CSV reader accepts it).
//
// The rows are cut into blocks of up to 1024 rows and about 64 KiB of text. The byte offset
// at which each block starts (a checkpoint, 8 bytes per block) is learnt the first time the
// block is formatted, by Size or by a read, and kept: a read at offset X binary-searches the
// checkpoints and formats only from the block that holds X until its buffer is full. A read
// past the last known checkpoint first measures the blocks in between (formats them without
// keeping the text). A read holds one block of raw rows and 64 KiB of text at most.
//
// The row count is taken when NewCSV is called; the rows must not change afterwards.
type CSV struct {
	cols   []csvColumn
	header []byte
	rows   int
	block  int // rows per block

	scan sync.Mutex // held while measuring blocks past the frontier, so only one goroutine does

	mu    sync.Mutex
	marks []int64 // guarded by mu; marks[b] is where block b starts; the last one is the frontier
	size  int64   // guarded by mu; -1 until the last block has been measured

	scratch sync.Pool // of *csvScratch
}

type csvColumn struct {
	a        Array
	e        elem
	values   int // CSV columns, values per row
	rowBytes int
}

// csvScratch is the memory of one block's formatting.
type csvScratch struct {
	raw  [][]byte // one block of rows per column
	text []byte
	str  []byte
}

// NewCSV returns the CSV text of cols, one line per row, after a header line that names the
// columns: names[i] for a column with scalar rows (RowShape []), "names[i][0]" ...
// "names[i][n-1]" for rows of shape [n]. All columns must have the same number of rows.
// Columns with rows of 2 or more dimensions and complex columns have no CSV form; the error
// then wraps ErrUnsupported.
//
// Values: floats as Python's repr (shortest round-trip, "2.0", "1e-07", "NaN", "inf"),
// integers in decimal, bools as "True"/"False", strings as they are, quoted when they hold a
// comma, a quote, CR or LF, or are empty. pandas.read_csv reads every float back bit for bit
// with float_precision="round_trip"; its default parser can be one unit in the last place
// off for 17-digit values whatever the writer does (0.30000000000000004 reads as 0.3).
func NewCSV(names []string, cols []Array) (*CSV, error) {
	if len(names) != len(cols) {
		return nil, fmt.Errorf("new csv: %d names for %d columns", len(names), len(cols))
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("new csv: no columns")
	}
	c := &CSV{rows: cols[0].Rows(), size: -1}
	rowText := 1 // the '\n'
	for i, a := range cols {
		col, err := newCSVColumn(a)
		if err != nil {
			return nil, fmt.Errorf("new csv: column %q: %w", names[i], err)
		}
		if r := a.Rows(); r != c.rows {
			return nil, fmt.Errorf("new csv: column %q has %d rows, column %q has %d", names[i], r, names[0], c.rows)
		}
		c.cols = append(c.cols, col)
		rowText += col.values * (estimateText(col.e) + 1)
		c.header = appendHeader(c.header, names[i], a.RowShape())
	}
	if len(c.header) == 0 {
		return nil, fmt.Errorf("new csv: %w: no values per row", ErrUnsupported)
	}
	c.header[len(c.header)-1] = '\n' // the last separator

	c.block = max(1, min(csvBlockRows, csvBlockText/rowText))
	c.marks = []int64{int64(len(c.header))}
	if c.rows == 0 {
		c.size = int64(len(c.header))
	}
	c.scratch.New = func() any { return &csvScratch{raw: make([][]byte, len(c.cols))} }
	return c, nil
}

func newCSVColumn(a Array) (csvColumn, error) {
	dt := a.Dtype()
	e, err := dt.elem()
	if err != nil {
		return csvColumn{}, err
	}
	if e.kind == 'c' {
		return csvColumn{}, fmt.Errorf("%w: complex dtype %s", ErrUnsupported, dt.Descr)
	}
	col := csvColumn{a: a, e: e, values: 1, rowBytes: RowBytes(a)}
	switch rs := a.RowShape(); len(rs) {
	case 0:
	case 1:
		col.values = rs[0]
	default:
		return csvColumn{}, fmt.Errorf("%w: rows of shape %v", ErrUnsupported, rs)
	}
	return col, nil
}

// estimateText is about the longest text of one value of e: the estimate sizes blocks, it
// need not be exact.
func estimateText(e elem) int {
	switch e.kind {
	case 'b':
		return len("False")
	case 'f':
		if e.size <= 4 {
			return len("-1.2345678e-38")
		}
		return len("-2.2250738585072014e-308")
	case 'U':
		return 2 + e.size/4 // quotes and ASCII; wider text is rare
	}
	return len(strconv.FormatUint(math.MaxUint64>>(64-8*e.size), 10)) + 1 // sign
}

// appendHeader appends the column names of one array, each followed by a ','.
func appendHeader(dst []byte, name string, rowShape []int) []byte {
	if len(rowShape) == 0 {
		return append(appendField(dst, []byte(name)), ',')
	}
	var buf []byte
	for k := range rowShape[0] {
		buf = append(append(append(buf[:0], name...), '['), strconv.Itoa(k)...)
		dst = append(appendField(dst, append(buf, ']')), ',')
	}
	return dst
}

// Size is the exact length of the text. The first call formats every row once (without
// keeping the text) and records the checkpoints; later calls return at once. A failure is
// not remembered: the next call tries again.
func (c *CSV) Size(ctx context.Context) (int64, error) {
	if err := c.measure(ctx, math.MaxInt64); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, nil
}

// ReadAt reads len(p) bytes of the text at offset off, with io.ReaderAt's rules: fewer than
// len(p) bytes come with an error, io.EOF at the end of the text.
func (c *CSV) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read csv at %d: negative offset", off)
	}
	if err := c.measure(ctx, off); err != nil {
		return 0, err
	}
	c.mu.Lock()
	size, marks := c.size, c.marks // marks' elements are never rewritten, only appended
	c.mu.Unlock()
	if size >= 0 && off >= size {
		return 0, io.EOF
	}
	want := p
	if size >= 0 && int64(len(p)) > size-off {
		want = p[:size-off]
	}

	done := 0
	if off < int64(len(c.header)) {
		done = copy(want, c.header[off:])
	}
	if done < len(want) {
		k, err := c.readText(ctx, want[done:], off+int64(done), marks)
		done += k
		if err != nil {
			return done, err
		}
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// readText fills p with the text after the header at offset pos, formatting from the block
// that holds pos on. It returns fewer bytes only at the end of the text.
func (c *CSV) readText(ctx context.Context, p []byte, pos int64, marks []int64) (int, error) {
	done := 0
	b := sort.Search(len(marks), func(i int) bool { return marks[i] > pos }) - 1
	start := marks[b]
	s := c.scratch.Get().(*csvScratch)
	defer c.scratch.Put(s)
	for done < len(p) && b*c.block < c.rows {
		at := start
		n, err := c.formatBlock(ctx, b, s, func(text []byte) bool {
			if end := at + int64(len(text)); end > pos {
				k := copy(p[done:], text[pos-at:])
				done += k
				pos += int64(k)
			}
			at += int64(len(text))
			return done < len(p)
		})
		if err != nil {
			return done, err
		}
		if n < 0 {
			break // stopped early: p is full
		}
		c.record(b, n)
		start += n
		b++
	}
	return done, nil
}

// measure makes sure the checkpoints reach past off, or to the end of the text.
func (c *CSV) measure(ctx context.Context, off int64) error {
	reached := func() (bool, int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.size >= 0 || c.marks[len(c.marks)-1] > off, len(c.marks) - 1
	}
	if ok, _ := reached(); ok {
		return nil
	}
	c.scan.Lock()
	defer c.scan.Unlock()
	s := c.scratch.Get().(*csvScratch)
	defer c.scratch.Put(s)
	for {
		ok, b := reached()
		if ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("measure csv: %w", err)
		}
		n, err := c.formatBlock(ctx, b, s, func([]byte) bool { return true })
		if err != nil {
			return err
		}
		c.record(b, n)
	}
}

// record notes that block b is n bytes long, if b is the block at the frontier. The length
// of a block never changes, so a block measured twice (by a read and by measure) agrees.
func (c *CSV) record(b int, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size >= 0 || b != len(c.marks)-1 {
		return
	}
	c.marks = append(c.marks, c.marks[b]+n)
	if (b+1)*c.block >= c.rows {
		c.size = c.marks[b+1]
	}
}

// formatBlock formats the rows of block b, handing the text to sink in chunks of about
// csvChunk bytes, in order. It stops early when sink returns false. It returns the block's
// length in bytes, or -1 if it stopped before the end.
func (c *CSV) formatBlock(ctx context.Context, b int, s *csvScratch, sink func(text []byte) bool) (int64, error) {
	from := b * c.block
	to := min(from+c.block, c.rows)
	for i, col := range c.cols {
		need := (to - from) * col.rowBytes
		if cap(s.raw[i]) < need {
			s.raw[i] = make([]byte, need)
		}
		s.raw[i] = s.raw[i][:need]
		if need == 0 {
			continue // ReadRows has nothing to give; do not bother the Array
		}
		if err := col.a.ReadRows(ctx, from, to, s.raw[i]); err != nil {
			return -1, fmt.Errorf("read csv rows %d-%d: %w", from, to, err)
		}
	}

	var n int64
	text := s.text[:0]
	defer func() { s.text = text[:0] }()
	for r := range to - from {
		first := true
		for i, col := range c.cols {
			raw := s.raw[i][r*col.rowBytes:]
			for k := range col.values {
				if !first {
					text = append(text, ',')
				}
				first = false
				text, s.str = appendValue(text, raw[k*col.e.size:], col.e, s.str)
			}
		}
		text = append(text, '\n')
		if len(text) >= csvChunk || r == to-from-1 {
			n += int64(len(text))
			if !sink(text) && r < to-from-1 {
				return -1, nil
			}
			text = text[:0]
		}
	}
	return n, nil
}
