// Package npy reads NumPy .npy files: the NPY_SEQ handler (one file per datum), the npy
// handler (one file per resource, the whole array) and npy_FRAMEWISE (one file per resource,
// one frame per datum), as databroker and ophyd.sim define them. Its header parser is also
// what handlers/external uses to read the arrays an external program writes.
//
// Headers of format versions 1.0, 2.0 and 3.0 are parsed here, without NumPy: a .npy header
// is a Python dict literal ({'descr': '<u2', 'fortran_order': False, 'shape': (2, 3), }) and
// only that literal subset is accepted. Arrays come out as catalog.NDArray values do:
// little-endian, C order; big-endian files are byte-swapped and Fortran-order files transposed.
package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// ErrFormat means a file is not a .npy file this package can read.
var ErrFormat = errors.New("not a supported .npy file")

// maxHeader bounds the header a file may claim (numpy itself refuses headers over 10 kB
// unless told otherwise; 1 MiB leaves room for long shapes).
const maxHeader = 1 << 20

// Header is a parsed .npy header.
type Header struct {
	// Descr is the dtype as stored, e.g. ">u2".
	Descr string
	// Dtype is the dtype of the arrays this package returns: Descr in little-endian form
	// ("<u2"; one-byte types keep "|").
	Dtype string
	// Fortran is the header's fortran_order.
	Fortran bool
	// Shape is the array's shape; empty for a 0-d array.
	Shape []int
	// Offset is where the data starts in the file.
	Offset int64
	// ElemSize is the size of one element in bytes.
	ElemSize int

	swapUnit int // byte-swap unit for big-endian data (0: none)
}

// Len is the number of elements.
func (h *Header) Len() int {
	n := 1
	for _, d := range h.Shape {
		n *= d
	}
	return n
}

// DataSize is the size of the data in bytes.
func (h *Header) DataSize() int64 { return int64(h.Len()) * int64(h.ElemSize) }

// ReadHeader reads a .npy header from r, leaving r at the start of the data.
func ReadHeader(r io.Reader) (*Header, error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read npy header: file too short: %w", ErrFormat)
		}
		return nil, fmt.Errorf("read npy header: %w", err)
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf("read npy header: bad magic %q: %w", pre[:6], ErrFormat)
	}
	major, minor := pre[6], pre[7]
	var hlen, prefix int
	switch major {
	case 1:
		hlen, prefix = int(binary.LittleEndian.Uint16(pre[8:10])), 10
	case 2, 3:
		var more [2]byte
		if _, err := io.ReadFull(r, more[:]); err != nil {
			return nil, fmt.Errorf("read npy header: %w", ErrFormat)
		}
		n := binary.LittleEndian.Uint32([]byte{pre[8], pre[9], more[0], more[1]})
		if n > maxHeader {
			return nil, fmt.Errorf("read npy header: header of %d bytes: %w", n, ErrFormat)
		}
		hlen, prefix = int(n), 12
	default:
		return nil, fmt.Errorf("read npy header: format version %d.%d: %w", major, minor, ErrFormat)
	}
	text := make([]byte, hlen)
	if _, err := io.ReadFull(r, text); err != nil {
		return nil, fmt.Errorf("read npy header: truncated header: %w", ErrFormat)
	}
	if major < 3 {
		// Versions 1 and 2 are latin-1; everything a valid header holds is ASCII.
		for _, c := range text {
			if c >= 0x80 {
				return nil, fmt.Errorf("read npy header: non-ASCII byte in a version %d header: %w", major, ErrFormat)
			}
		}
	} else if !utf8.Valid(text) {
		return nil, fmt.Errorf("read npy header: invalid UTF-8: %w", ErrFormat)
	}
	h, err := parseDict(string(text))
	if err != nil {
		return nil, fmt.Errorf("read npy header %q: %w", strings.TrimSpace(string(text)), err)
	}
	h.Offset = int64(prefix + hlen)
	return h, nil
}

// parseDict parses the header dict and checks its dtype and shape.
func parseDict(s string) (*Header, error) {
	p := &lit{s: s}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("trailing text at %d: %w", p.i, ErrFormat)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("header is not a dict: %w", ErrFormat)
	}
	descr, ok := d["descr"].(string)
	if !ok {
		return nil, fmt.Errorf("descr missing or not a string (structured dtypes are not supported): %w", ErrFormat)
	}
	fortran, ok := d["fortran_order"].(bool)
	if !ok {
		return nil, fmt.Errorf("fortran_order missing or not a bool: %w", ErrFormat)
	}
	tup, ok := d["shape"].([]any)
	if !ok {
		return nil, fmt.Errorf("shape missing or not a tuple: %w", ErrFormat)
	}
	h := &Header{Descr: descr, Fortran: fortran, Shape: make([]int, len(tup))}
	if h.Dtype, h.ElemSize, h.swapUnit, err = ParseDescr(descr); err != nil {
		return nil, err
	}
	n := uint64(h.ElemSize)
	for i, x := range tup {
		v, ok := x.(int64)
		if !ok || v < 0 {
			return nil, fmt.Errorf("shape %v: want non-negative integers: %w", tup, ErrFormat)
		}
		h.Shape[i] = int(v)
		hi, lo := bits.Mul64(n, uint64(v))
		if hi != 0 || lo > math.MaxInt64/2 {
			return nil, fmt.Errorf("shape %v is too large: %w", tup, ErrFormat)
		}
		n = lo
	}
	return h, nil
}

// ParseDescr checks a numpy descr of a numeric or bool dtype and returns its little-endian
// form, its element size and the unit big-endian data is swapped in (0 when the data needs
// no swap). The descr is parsed by encode.ParseDtype, brokerfs's one dtype model.
func ParseDescr(descr string) (dtype string, size, swapUnit int, err error) {
	d, err := encode.ParseDtype(descr)
	if err != nil || d.Descr[1] == 'U' {
		return "", 0, 0, fmt.Errorf("dtype %q: want a numeric or bool dtype: %w", descr, ErrFormat)
	}
	kind, rest := d.Descr[1], d.Descr[1:]
	if d.Size == 1 {
		return "|" + rest, 1, 0, nil
	}
	if d.Descr[0] == '>' {
		swapUnit = d.Size
		if kind == 'c' {
			swapUnit = d.Size / 2
		}
	}
	return "<" + rest, d.Size, swapUnit, nil
}

// Read reads a whole .npy file from r.
func Read(r io.Reader) (*catalog.NDArray, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	return h.ReadData(r)
}

// ReadData reads the data that follows h from r (positioned at h.Offset) and returns it
// little-endian in C order.
func (h *Header) ReadData(r io.Reader) (*catalog.NDArray, error) {
	n := h.DataSize()
	var buf []byte
	var k int64
	var err error
	if n <= bigData {
		buf = make([]byte, n)
		var m int
		m, err = io.ReadFull(r, buf)
		k = int64(m)
	} else {
		// A header may claim more than the stream holds: let the buffer grow with the data
		// that arrives instead of trusting the claim.
		var b bytes.Buffer
		k, err = io.CopyN(&b, r, n)
		buf = b.Bytes()
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read npy data: truncated: want %d bytes for shape %v %s, have %d: %w",
				n, h.Shape, h.Descr, k, ErrFormat)
		}
		return nil, fmt.Errorf("read npy data: %w", err)
	}
	return h.finish(buf, h.Shape), nil
}

// bigData is the size above which ReadData does not allocate what a header claims up front.
const bigData = 64 << 20

// finish byte-swaps and, for Fortran order, transposes data of the given shape.
func (h *Header) finish(data []byte, shape []int) *catalog.NDArray {
	if h.swapUnit > 0 {
		Swap(data, h.swapUnit)
	}
	if h.Fortran && len(shape) > 1 {
		data = fortranToC(data, shape, h.ElemSize)
	}
	return &catalog.NDArray{Dtype: h.Dtype, Shape: append([]int{}, shape...), Data: data}
}

// ReadIndex reads a[i] (numpy indexing of the first axis; negative i counts from the end)
// from r, reading only that part of the data when the file is in C order.
func (h *Header) ReadIndex(r io.ReaderAt, i int) (*catalog.NDArray, error) {
	if len(h.Shape) == 0 {
		return nil, fmt.Errorf("index %d of a 0-d array: %w", i, ErrFormat)
	}
	n := h.Shape[0]
	j := i
	if j < 0 {
		j += n
	}
	if j < 0 || j >= n {
		return nil, fmt.Errorf("index %d is out of range for an array of length %d: %w", i, n, ErrIndex)
	}
	rest := h.Shape[1:]
	if h.Fortran && len(h.Shape) > 1 {
		a, err := h.ReadData(io.NewSectionReader(r, h.Offset, h.DataSize()))
		if err != nil {
			return nil, err
		}
		row := len(a.Data) / n
		return &catalog.NDArray{Dtype: a.Dtype, Shape: append([]int{}, rest...), Data: a.Data[j*row : (j+1)*row]}, nil
	}
	row := h.DataSize() / int64(n)
	buf := make([]byte, row)
	if k, err := r.ReadAt(buf, h.Offset+int64(j)*row); k < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read npy index %d: truncated file: %w", i, ErrFormat)
		}
		return nil, fmt.Errorf("read npy index %d: %w", i, err)
	}
	return h.finish(buf, rest), nil
}

// ErrIndex means a datum names an index the array does not have.
var ErrIndex = errors.New("index out of range")

// Swap reverses the byte order of each unit-byte group of b in place.
func Swap(b []byte, unit int) {
	switch unit {
	case 2:
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	case 4:
		for i := 0; i+3 < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:]))
		}
	case 8:
		for i := 0; i+7 < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.BigEndian.Uint64(b[i:]))
		}
	}
}

// fortranToC reorders column-major data of the given shape into row-major order.
func fortranToC(src []byte, shape []int, size int) []byte {
	dst := make([]byte, len(src))
	nd := len(shape)
	// Fortran strides, in elements.
	stride := make([]int, nd)
	s := 1
	for k := 0; k < nd; k++ {
		stride[k] = s
		s *= shape[k]
	}
	if s == 0 {
		return dst
	}
	idx := make([]int, nd)
	off := 0 // Fortran offset of idx, in elements
	for o := 0; o < len(dst); o += size {
		copy(dst[o:o+size], src[off*size:off*size+size])
		// Advance the C-order index (last axis fastest), keeping off in step.
		for k := nd - 1; k >= 0; k-- {
			idx[k]++
			off += stride[k]
			if idx[k] < shape[k] {
				break
			}
			off -= stride[k] * shape[k]
			idx[k] = 0
		}
	}
	return dst
}

// lit parses the Python literal subset .npy headers use: dicts, tuples, lists, strings,
// integers (with Python 2's L suffix), True, False and None.
type lit struct {
	s string
	i int
}

func (p *lit) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *lit) errf(format string, args ...any) error {
	return fmt.Errorf("header at %d: %s: %w", p.i, fmt.Sprintf(format, args...), ErrFormat)
}

func (p *lit) value() (any, error) {
	p.space()
	if p.i >= len(p.s) {
		return nil, p.errf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		d := map[string]any{}
		for {
			p.space()
			if p.i < len(p.s) && p.s[p.i] == '}' {
				p.i++
				return d, nil
			}
			k, err := p.value()
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, p.errf("dict key is not a string")
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, p.errf("want ':'")
			}
			p.i++
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			d[ks] = v
			if err := p.sep('}'); err != nil {
				return nil, err
			}
		}
	case c == '(' || c == '[':
		end := byte(')')
		if c == '[' {
			end = ']'
		}
		p.i++
		var t []any
		for {
			p.space()
			if p.i < len(p.s) && p.s[p.i] == end {
				p.i++
				if t == nil {
					t = []any{}
				}
				return t, nil
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			t = append(t, v)
			if err := p.sep(end); err != nil {
				return nil, err
			}
		}
	case c == '\'' || c == '"':
		j := strings.IndexByte(p.s[p.i+1:], c)
		if j < 0 {
			return nil, p.errf("unterminated string")
		}
		v := p.s[p.i+1 : p.i+1+j]
		if strings.IndexByte(v, '\\') >= 0 {
			return nil, p.errf("escapes in strings are not supported")
		}
		p.i += j + 2
		return v, nil
	case c == '-' || c >= '0' && c <= '9':
		j := p.i + 1
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		v, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
		if err != nil {
			return nil, p.errf("bad integer %q", p.s[p.i:j])
		}
		if j < len(p.s) && (p.s[j] == 'L' || p.s[j] == 'l') {
			j++
		}
		p.i = j
		return v, nil
	default:
		for _, w := range []struct {
			s string
			v any
		}{{"True", true}, {"False", false}, {"None", nil}} {
			if strings.HasPrefix(p.s[p.i:], w.s) {
				p.i += len(w.s)
				return w.v, nil
			}
		}
		return nil, p.errf("unexpected %q", c)
	}
}

// sep consumes a ',' or sees the closing bracket.
func (p *lit) sep(end byte) error {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ',' {
		p.i++
		return nil
	}
	if p.i < len(p.s) && p.s[p.i] == end {
		return nil
	}
	return p.errf("want ',' or %q", end)
}

// Header bytes for writing, used by tests and external programs written in Go.

// Encode returns a version 1.0 (or 2.0 when needed) .npy file holding a.
func Encode(a *catalog.NDArray) []byte {
	shape := make([]string, len(a.Shape))
	for i, d := range a.Shape {
		shape[i] = strconv.Itoa(d)
	}
	st := strings.Join(shape, ", ")
	if len(a.Shape) == 1 {
		st += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", a.Dtype, st)
	var b bytes.Buffer
	pre := 10
	if len(dict)+11 > 65535 {
		pre = 12
	}
	pad := 64 - (pre+len(dict)+1)%64
	if pad == 64 {
		pad = 0
	}
	hlen := len(dict) + pad + 1
	b.WriteString("\x93NUMPY")
	if pre == 10 {
		b.Write([]byte{1, 0, byte(hlen), byte(hlen >> 8)})
	} else {
		b.Write([]byte{2, 0})
		_ = binary.Write(&b, binary.LittleEndian, uint32(hlen))
	}
	b.WriteString(dict)
	b.WriteString(strings.Repeat(" ", pad))
	b.WriteByte('\n')
	b.Write(a.Data)
	return b.Bytes()
}
