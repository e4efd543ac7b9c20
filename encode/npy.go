package encode

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"weak"
)

// npyAlign is the multiple NumPy pads the whole header to, so that the data of an mmap'ed
// file is aligned for every dtype.
const npyAlign = 64

// npyGrowthDigits is numpy.lib.format.GROWTH_AXIS_MAX_DIGITS: NumPy (>= 1.23) leaves room
// after the dict for the first dimension to grow to 21 digits in place. Writing the same
// spaces makes our headers byte-identical to np.save's.
const npyGrowthDigits = 21

// NPYHeader returns the header NumPy's np.save writes for an array of dtype dt and the given
// shape in C order: the magic "\x93NUMPY", version 1.0 with a 2-byte little-endian header
// length (2.0 with a 4-byte length when the header does not fit in 65535 bytes), then the
// dict {'descr': ..., 'fortran_order': False, 'shape': (...), } padded with spaces and a
// final '\n' to a multiple of 64 bytes. dt.Descr is written as given; use ParseDtype's
// canonical form.
func NPYHeader(dt Dtype, shape []int) []byte { return NPYHeaderAligned(dt, shape, npyAlign) }

// NPYHeaderAligned is NPYHeader padded with spaces to a multiple of align bytes (a multiple
// of 64), so that the data starts aligned: 4096 puts it on a page of its own, which NumPy
// reads as any other header.
func NPYHeaderAligned(dt Dtype, shape []int, align int) []byte {
	if align < npyAlign || align%npyAlign != 0 {
		align = npyAlign
	}
	dict := make([]byte, 0, 128)
	dict = append(dict, "{'descr': '"...)
	dict = append(dict, dt.Descr...)
	dict = append(dict, "', 'fortran_order': False, 'shape': ("...)
	for i, d := range shape {
		if i > 0 {
			dict = append(dict, ", "...)
		}
		dict = strconv.AppendInt(dict, int64(d), 10)
	}
	if len(shape) == 1 {
		dict = append(dict, ',') // Python's one-tuple
	}
	dict = append(dict, "), }"...)
	if len(shape) > 0 {
		for range npyGrowthDigits - len(strconv.Itoa(shape[0])) {
			dict = append(dict, ' ')
		}
	}

	// As numpy.lib.format._wrap_header: +1 for the '\n'; the pad is 1..64, never 0.
	prefix := 6 + 2 + 2
	hlen := len(dict) + 1
	pad := align - (prefix+hlen)%align
	if hlen+pad > 0xffff {
		prefix = 6 + 2 + 4
		pad = align - (prefix+hlen)%align
	}
	out := make([]byte, prefix, prefix+hlen+pad)
	copy(out, "\x93NUMPY")
	if prefix == 10 {
		out[6], out[7] = 1, 0
		binary.LittleEndian.PutUint16(out[8:], uint16(hlen+pad))
	} else {
		out[6], out[7] = 2, 0
		binary.LittleEndian.PutUint32(out[8:], uint32(hlen+pad))
	}
	out = append(out, dict...)
	for range pad {
		out = append(out, ' ')
	}
	return append(out, '\n')
}

// NPY is the .npy encoding of an Array: its header followed by the rows' bytes, read at any
// offset. The shape is taken when NewNPY is called; rows added to the Array later are not
// part of this NPY (the header has already stated the shape).
//
// A read calls Array.ReadRows for the rows that cover it and no others: the whole rows go
// straight into the caller's buffer, a row cut by either end of the read goes through a
// one-row scratch buffer. That row is cached, so that reading a large row (a detector frame)
// in kernel-sized pieces asks the Array for it once, not once per piece. The cache holds
// its row weakly: the garbage collector frees it once no read is using it, so an NPY kept
// for the life of the mount does not pin a frame.
type NPY struct {
	a        Array
	header   []byte
	rows     int
	rowBytes int64
	size     int64

	mu   sync.Mutex
	edge weak.Pointer[edgeRow] // guarded by mu
}

// edgeRow is one whole row, never written after it is stored.
type edgeRow struct {
	row int
	b   []byte
}

// NewNPY returns the .npy encoding of a, with shape (a.Rows(), a.RowShape()...).
func NewNPY(a Array) *NPY { return NewNPYAligned(a, npyAlign) }

// NewNPYAligned is NewNPY with the header padded to a multiple of align (NPYHeaderAligned).
func NewNPYAligned(a Array, align int) *NPY {
	rows, rs := a.Rows(), a.RowShape() // once: a live array may grow between two calls
	shape := make([]int, 0, 1+len(rs))
	shape = append(shape, rows)
	shape = append(shape, rs...)
	n := &NPY{a: a, header: NPYHeaderAligned(a.Dtype(), shape, align), rows: rows, rowBytes: int64(RowBytes(a))}
	n.size = int64(len(n.header)) + int64(n.rows)*n.rowBytes
	return n
}

// Size is the exact length of the encoding, known without reading any row.
func (n *NPY) Size() int64 { return n.size }

// HeaderLen is the length of the header; the data of row r starts at HeaderLen + r*RowBytes.
func (n *NPY) HeaderLen() int { return len(n.header) }

// ReadAt reads len(p) bytes of the encoding at offset off, with io.ReaderAt's rules: fewer
// than len(p) bytes come with an error, io.EOF at the end of the encoding.
func (n *NPY) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read npy at %d: negative offset", off)
	}
	if off >= n.size {
		return 0, io.EOF
	}
	want := p
	if rest := n.size - off; int64(len(p)) > rest {
		want = p[:rest]
	}
	done := 0
	if off < int64(len(n.header)) {
		done = copy(want, n.header[off:])
	}
	if done < len(want) {
		k, err := n.readData(ctx, want[done:], off+int64(done)-int64(len(n.header)))
		done += k
		if err != nil {
			return done, err
		}
	}
	if len(want) < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// readData fills p with the row bytes at data offset off; p lies within the data. It returns
// how many leading bytes of p are filled.
func (n *NPY) readData(ctx context.Context, p []byte, off int64) (int, error) {
	rb := n.rowBytes
	row := int(off / rb)
	done := 0

	// A read that starts or ends inside rows no larger than itself (the kernel's 128 KiB
	// pieces of a file of 32 KiB rows) is one ReadRows call into a scratch buffer: the rows at
	// its edges would otherwise each cost a walk through the catalog of their own.
	if last := int((off + int64(len(p)) - 1) / rb); (off%rb != 0 || (off+int64(len(p)))%rb != 0) && rb <= int64(len(p)) {
		scratch := make([]byte, int64(last-row+1)*rb)
		if err := n.a.ReadRows(ctx, row, last+1, scratch); err != nil {
			return 0, fmt.Errorf("read npy rows %d-%d: %w", row, last+1, err)
		}
		return copy(p, scratch[off-int64(row)*rb:]), nil
	}

	// A leading row that the read starts inside, or ends inside.
	if skip := off % rb; skip != 0 || int64(len(p)) < rb {
		b, err := n.edgeRowBytes(ctx, row)
		if err != nil {
			return 0, err
		}
		done = copy(p, b[skip:])
		row++
	}

	// Whole rows, without a copy.
	if full := int64(len(p)-done) / rb; full > 0 {
		end := done + int(full*rb)
		if err := n.a.ReadRows(ctx, row, row+int(full), p[done:end]); err != nil {
			return done, fmt.Errorf("read npy rows %d-%d: %w", row, row+int(full), err)
		}
		done = end
		row += int(full)
	}

	// A trailing row that the read ends inside.
	if done < len(p) {
		b, err := n.edgeRowBytes(ctx, row)
		if err != nil {
			return done, err
		}
		done += copy(p[done:], b)
	}
	return done, nil
}

// edgeRowBytes returns row r, from the edge cache or from the Array. The slice is shared:
// callers only read it.
func (n *NPY) edgeRowBytes(ctx context.Context, r int) ([]byte, error) {
	n.mu.Lock()
	e := n.edge.Value()
	n.mu.Unlock()
	if e != nil && e.row == r {
		return e.b, nil
	}

	// Read outside the lock: a slow row must not stall reads of other rows.
	e = &edgeRow{row: r, b: make([]byte, n.rowBytes)}
	if err := n.a.ReadRows(ctx, r, r+1, e.b); err != nil {
		return nil, fmt.Errorf("read npy row %d: %w", r, err)
	}
	n.mu.Lock()
	n.edge = weak.Make(e)
	n.mu.Unlock()
	return e.b, nil
}
