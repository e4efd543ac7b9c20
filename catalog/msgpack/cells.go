package msgpack

// Event values ("cells"): one data value of one row, appended to its page column. Scalars go
// through the typed Column appenders; msgpack-numpy maps become arrays (their Data aliasing
// the read buffer); nested lists of numbers, bools or strings become arrays when rectangular.

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/brokerfs/brokerfs/catalog"
)

// cell appends the value at pos to the slot's column.
func (d *pageDecoder) cell(s *slot, b []byte, pos int) (int, error) {
	if pos >= len(b) {
		return pos, errShort
	}
	c, col := b[pos], s.col
	switch {
	case c == 0xcb: // float64, by far the most common
		if pos+9 > len(b) {
			return pos, errShort
		}
		col.AppendFloat(math.Float64frombits(binary.BigEndian.Uint64(b[pos+1:])))
		return pos + 9, nil
	case c <= 0x7f:
		col.AppendInt(int64(c))
		return pos + 1, nil
	case c >= 0xe0:
		col.AppendInt(int64(int8(c)))
		return pos + 1, nil
	case c == 0xc2 || c == 0xc3:
		col.AppendBool(c == 0xc3)
		return pos + 1, nil
	case c == 0xc0:
		col.AppendValue(nil)
		return pos + 1, nil
	case isStr(c):
		v, next, err := str(b, pos)
		if err != nil {
			return pos, err
		}
		// Text fields (status strings, modes) mostly repeat: share the previous string.
		if string(v) != s.last {
			s.last = string(v)
		}
		col.AppendString(s.last)
		return next, nil
	case isArray(c):
		d.complex = true
		v, next, err := packList(b, pos)
		if err != nil {
			return pos, err
		}
		col.AppendValue(v)
		return next, nil
	}
	i, f, kind, next, err := number(b, pos)
	switch {
	case err != nil:
		return pos, err
	case kind == numInt:
		col.AppendInt(i)
		return next, nil
	case kind == numFloat:
		col.AppendFloat(f)
		return next, nil
	}
	// A map (a numpy array or scalar, or a plain map) or an extension.
	d.complex = true
	v, next, err := value(b, pos, true, 0)
	if err != nil {
		return pos, err
	}
	col.Append(v) // numpy scalars are plain numbers by now: the typed appenders take them
	return next, nil
}

// column appends a page column of rows values: a list, or one numpy array whose first
// dimension is the rows.
func (d *pageDecoder) column(s *slot, b []byte, pos, rows int) (int, error) {
	if pos < len(b) && isMap(b[pos]) {
		d.complex = true
		var h ndHeader
		ok, err := parseNumpy(b, pos, &h)
		if err != nil {
			return pos, err
		}
		v, isArr := ndValue(&h, true)
		a, _ := v.(*catalog.NDArray)
		if !ok || !isArr || a == nil || len(a.Shape) == 0 || a.Shape[0] != rows {
			return pos, &columnError{fmt.Sprintf("want a list or array of %d rows, have %s", rows, typeName(b, pos))}
		}
		appendRows(s.col, a)
		return h.end, nil
	}
	n, pos, err := arrayLen(b, pos)
	if err != nil {
		return pos, asColumnError(err)
	}
	if n != rows {
		return pos, &columnError{fmt.Sprintf("column of %d values in a page of %d rows", n, rows)}
	}
	col := s.col
	for range n {
		if pos+9 <= len(b) && b[pos] == 0xcb && col.Kind == catalog.KindFloat {
			// A float64 in a column of floats, the common case, inlined (cell).
			col.F = append(col.F, math.Float64frombits(binary.BigEndian.Uint64(b[pos+1:])))
			pos += 9
			continue
		}
		if pos, err = d.cell(s, b, pos); err != nil {
			return pos, err
		}
	}
	return pos, nil
}

// appendRows appends the rows of an array column: scalars through the typed appenders for a
// one-dimensional array, sub-arrays (aliasing a's data) otherwise.
func appendRows(col *catalog.Column, a *catalog.NDArray) {
	if len(a.Shape) > 1 {
		for _, r := range a.Rows() {
			col.AppendValue(r)
		}
		return
	}
	if a.Strings != nil {
		for _, s := range a.Strings {
			col.AppendString(s)
		}
		return
	}
	order, kind, size, _ := dtype([]byte(a.Dtype))
	for off := 0; off+size <= len(a.Data); off += size {
		v, _ := ndScalar(a.Data[off:off+size], order, kind, size)
		col.Append(v)
	}
}

// Leaf kinds of a nested list, in the order they may merge (int and float make float).
const (
	leafNone = iota
	leafInt
	leafFloat
	leafBool
	leafString
)

// packList decodes the list at pos as an event value: a rectangular list of numbers ("<f8"
// if any is a float, else "<i8"), bools ("|b1") or strings ("<U0") becomes an *NDArray;
// anything else a []any.
func packList(b []byte, pos int) (any, int, error) {
	// The shape, from the first element at each depth; checkRect then holds every list to it.
	var dims [32]int
	ndim := 0
	for p := pos; ; {
		if p >= len(b) {
			return nil, pos, errShort
		}
		if !isArray(b[p]) {
			break
		}
		if ndim == len(dims) {
			return value(b, pos, true, 0)
		}
		n, q, err := arrayLen(b, p)
		if err != nil {
			return nil, pos, err
		}
		dims[ndim], ndim, p = n, ndim+1, q
		if n == 0 {
			break
		}
	}
	kind := leafNone
	end, rect, err := checkRect(b, pos, dims[:ndim], &kind)
	if err != nil {
		return nil, pos, err
	}
	if !rect {
		return value(b, pos, true, 0)
	}
	a := &catalog.NDArray{Shape: append([]int(nil), dims[:ndim]...)}
	count := a.Len() // bounded by the bytes: checkRect walked every element
	size := 8
	switch kind {
	case leafBool:
		a.Dtype, size = "|b1", 1
	case leafString:
		a.Dtype, size = "<U0", 0
		a.Strings = make([]string, 0, count)
	case leafInt:
		a.Dtype = "<i8"
	default:
		a.Dtype = "<f8"
	}
	a.Data = make([]byte, count*size)
	for p, i := pos, 0; i < count; {
		if isArray(b[p]) {
			_, p, _ = arrayLen(b, p)
			continue
		}
		switch kind {
		case leafBool:
			if b[p] == 0xc3 {
				a.Data[i] = 1
			}
			p++
		case leafString:
			var s []byte
			s, p, _ = str(b, p)
			a.Strings = append(a.Strings, string(s))
		case leafInt:
			var v int64
			v, p, _ = integer(b, p)
			binary.LittleEndian.PutUint64(a.Data[8*i:], uint64(v))
		default:
			var f float64
			f, p, _ = float(b, p)
			binary.LittleEndian.PutUint64(a.Data[8*i:], math.Float64bits(f))
		}
		i++
	}
	if kind == leafString {
		a.Data = nil
	}
	return a, end, nil
}

// checkRect reports whether the value at pos is a list of shape dims whose leaves are all
// of one kind (ints and floats mix), merging the leaf kind into *kind.
func checkRect(b []byte, pos int, dims []int, kind *int) (int, bool, error) {
	if pos >= len(b) {
		return pos, false, errShort
	}
	if len(dims) == 0 {
		c := b[pos]
		var k int
		switch {
		case c == 0xc2 || c == 0xc3:
			k, pos = leafBool, pos+1
		case isStr(c):
			var err error
			if _, pos, err = str(b, pos); err != nil {
				return pos, false, err
			}
			k = leafString
		default:
			_, _, nk, next, err := number(b, pos)
			if err != nil || nk == numNone {
				return pos, false, err
			}
			k, pos = leafInt, next
			if nk == numFloat {
				k = leafFloat
			}
		}
		switch {
		case *kind == leafNone || *kind == k:
			*kind = k
		case (*kind == leafInt && k == leafFloat) || (*kind == leafFloat && k == leafInt):
			*kind = leafFloat
		default:
			return pos, false, nil
		}
		return pos, true, nil
	}
	if !isArray(b[pos]) {
		return pos, false, nil
	}
	n, pos, err := arrayLen(b, pos)
	if err != nil || n != dims[0] {
		return pos, false, err
	}
	for range n {
		var rect bool
		if pos, rect, err = checkRect(b, pos, dims[1:], kind); err != nil || !rect {
			return pos, false, err
		}
	}
	return pos, true, nil
}
