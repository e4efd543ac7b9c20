package jsonl

import (
	"encoding/binary"
	"math"

	"github.com/brokerfs/brokerfs/catalog"
)

// packKind is the element type of an array being packed.
type packKind uint8

const (
	packNone packKind = iota
	packInt
	packFloat
	packBool
	packString
)

// pack reads the list at d.i as a rectangular array of numbers ("<f8" if any is a float, else
// "<i8"), bools ("|b1") or strings ("<U0"). A list that is not one (ragged, empty, mixed, holding
// null or maps) is left unread and pack returns nil: the caller decodes it as []any. Packing
// spares a spectrum of 1,000 floats its 1,000 boxed values.
func (d *decoder) pack() *catalog.NDArray {
	start, depth := d.i, d.depth
	d.shape, d.rank, d.kind = d.shape[:0], 0, packNone
	d.ints, d.floats, d.bools, d.strs = d.ints[:0], d.floats[:0], d.bools[:0], d.strs[:0]
	if !d.packList(0) {
		d.i, d.depth = start, depth
		return nil
	}
	a := &catalog.NDArray{Shape: append([]int(nil), d.shape...)}
	switch d.kind {
	case packInt:
		a.Dtype, a.Data = "<i8", make([]byte, 8*len(d.ints))
		for i, v := range d.ints {
			binary.LittleEndian.PutUint64(a.Data[8*i:], uint64(v))
		}
	case packFloat:
		a.Dtype, a.Data = "<f8", make([]byte, 8*len(d.floats))
		for i, v := range d.floats {
			binary.LittleEndian.PutUint64(a.Data[8*i:], math.Float64bits(v))
		}
	case packBool:
		a.Dtype, a.Data = "|b1", make([]byte, len(d.bools))
		for i, v := range d.bools {
			if v {
				a.Data[i] = 1
			}
		}
	case packString:
		a.Dtype, a.Strings = "<U0", append([]string(nil), d.strs...)
	}
	return a
}

func (d *decoder) packList(level int) bool {
	if d.depth+level >= maxDepth { // the list's depth, as value would count it
		return false
	}
	d.i++ // '['
	n := 0
	for {
		c := d.peek()
		if c == ']' && n == 0 {
			return false // an empty dimension tells no dtype
		}
		if c == '[' {
			if !d.packList(level + 1) {
				return false
			}
		} else {
			if d.rank == 0 {
				d.rank = level + 1
			}
			if d.rank != level+1 || !d.packLeaf(c) {
				return false
			}
		}
		n++
		switch d.peek() {
		case ',':
			d.i++
			continue
		case ']':
			d.i++
		default:
			return false
		}
		break
	}
	for len(d.shape) <= level {
		d.shape = append(d.shape, -1)
	}
	if d.shape[level] == -1 {
		d.shape[level] = n
	}
	return d.shape[level] == n
}

func (d *decoder) packLeaf(c byte) bool {
	switch {
	case c == 't' || c == 'f':
		if d.kind != packNone && d.kind != packBool {
			return false
		}
		d.kind = packBool
		d.bools = append(d.bools, c == 't')
		if c == 't' {
			return d.literal("true") == nil
		}
		return d.literal("false") == nil
	case c == '"':
		if d.kind != packNone && d.kind != packString {
			return false
		}
		d.kind = packString
		s, err := d.str()
		d.strs = append(d.strs, s)
		return err == nil
	case c == '-' || c == 'N' || c == 'I' || isDigit(c):
		iv, fv, isInt, err := d.num()
		if err != nil {
			return false
		}
		switch {
		case d.kind == packNone && isInt:
			d.kind = packInt
		case d.kind == packNone || d.kind == packInt && !isInt:
			for _, v := range d.ints {
				d.floats = append(d.floats, float64(v))
			}
			d.kind = packFloat
		case d.kind != packInt && d.kind != packFloat:
			return false
		}
		switch {
		case d.kind == packInt:
			d.ints = append(d.ints, iv)
		case isInt:
			d.floats = append(d.floats, float64(iv))
		default:
			d.floats = append(d.floats, fv)
		}
		return true
	}
	return false
}
