package msgpack

// Low-level msgpack primitives over a byte slice. Every reader takes the slice and a position
// and returns the position after what it read. None of them allocate or panic: running past the
// end of b returns errShort (the caller reads more of the file and tries again), a byte that
// msgpack never uses returns a *corruptError, and a value of an unexpected type returns a
// *typeError (the document is malformed, not the file).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// errShort means the value continues past the end of the bytes at hand.
var errShort = errors.New("unexpected end of data")

// corruptError is a byte sequence that is not msgpack: the scan of a file stops there.
type corruptError struct {
	pos int
	msg string
}

func (e *corruptError) Error() string { return fmt.Sprintf("corrupt msgpack at +%d: %s", e.pos, e.msg) }

func corrupt(pos int, msg string) error { return &corruptError{pos: pos, msg: msg} }

// typeError is valid msgpack of the wrong type for what the document needs.
type typeError struct {
	what string // what was expected: "map", "list", "string", ...
	have string // what was found
}

func (e *typeError) Error() string { return fmt.Sprintf("want %s, have %s", e.what, e.have) }

func wrongType(b []byte, pos int, what string) error {
	return &typeError{what: what, have: typeName(b, pos)}
}

// Error classes. The checks return early on nil: the target of errors.As escapes, so declaring
// it costs an allocation, which the decoding loops cannot afford on every value.

// isCorrupt reports whether err means the bytes are not msgpack.
func isCorrupt(err error) bool {
	if err == nil {
		return false
	}
	var ce *corruptError
	return errors.As(err, &ce)
}

// isTypeError reports whether err is a value of an unexpected type.
func isTypeError(err error) bool {
	if err == nil {
		return false
	}
	var te *typeError
	return errors.As(err, &te)
}

// isInvalid reports whether err is a document that is not a valid event-model document.
func isInvalid(err error) bool {
	if err == nil {
		return false
	}
	var ie *invalidError
	return errors.As(err, &ie)
}

// typeName names the msgpack type at pos, for error messages.
func typeName(b []byte, pos int) string {
	if pos >= len(b) {
		return "nothing"
	}
	c := b[pos]
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3):
		return "integer"
	case c <= 0x8f || c == 0xde || c == 0xdf:
		return "map"
	case c <= 0x9f || c == 0xdc || c == 0xdd:
		return "list"
	case c <= 0xbf || (c >= 0xd9 && c <= 0xdb):
		return "string"
	case c == 0xc0:
		return "nil"
	case c == 0xc2 || c == 0xc3:
		return "bool"
	case c >= 0xc4 && c <= 0xc6:
		return "binary"
	case c == 0xca || c == 0xcb:
		return "float"
	}
	return "extension"
}

func be16(b []byte, pos int) int { return int(binary.BigEndian.Uint16(b[pos:])) }
func be32(b []byte, pos int) int { return int(binary.BigEndian.Uint32(b[pos:])) }

// skip returns the position after the value at pos. It walks nested containers with a counter
// instead of recursion, so hostile nesting costs no stack. On errShort the returned position is
// a lower bound of the end of the value (used to size the next read without guessing).
func skip(b []byte, pos int) (int, error) {
	for left := 1; left > 0; left-- {
		if pos >= len(b) {
			return pos + left, errShort
		}
		c := b[pos]
		if n := scalarSize[c]; n != 0 {
			pos += int(n)
			continue
		}
		if c == 0xd9 && pos+1 < len(b) { // str8: uids
			pos += 2 + int(b[pos+1])
			continue
		}
		switch {
		case c <= 0x8f:
			left += 2 * int(c&0x0f)
			pos++
		case c <= 0x9f:
			left += int(c & 0x0f)
			pos++
		default:
			// Variable-size types: a 1, 2 or 4 byte length follows the type byte (and for
			// extensions, a type code follows the length).
			var lenBytes int
			switch c {
			case 0xc4, 0xd9, 0xc7:
				lenBytes = 1
			case 0xc5, 0xda, 0xdc, 0xde, 0xc8:
				lenBytes = 2
			case 0xc6, 0xdb, 0xdd, 0xdf, 0xc9:
				lenBytes = 4
			default: // 0xc1, never used
				return pos, corrupt(pos, "reserved type byte 0xc1")
			}
			hdr := 1 + lenBytes
			if c >= 0xc7 && c <= 0xc9 {
				hdr++
			}
			if pos+hdr > len(b) {
				return pos + hdr + left - 1, errShort
			}
			var size int
			switch lenBytes {
			case 1:
				size = int(b[pos+1])
			case 2:
				size = be16(b, pos+1)
			default:
				size = be32(b, pos+1)
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
		// After a container header: each value left needs at least one byte, so a count
		// beyond the bytes at hand is short (or a lie) without walking it.
		if left-1 > len(b)-pos {
			return pos + left - 1, errShort
		}
	}
	if pos > len(b) {
		return pos, errShort
	}
	return pos, nil
}

// fixedSize is the encoded size of the types 0xc0..0xdf whose size the type byte decides
// (0 for the variable-size ones and the reserved 0xc1).
var fixedSize = [32]int{
	0: 1 /* 0xc0 */, 0xc2 - 0xc0: 1, 0xc3 - 0xc0: 1,
	0xca - 0xc0: 5, 0xcb - 0xc0: 9,
	0xcc - 0xc0: 2, 0xcd - 0xc0: 3, 0xce - 0xc0: 5, 0xcf - 0xc0: 9,
	0xd0 - 0xc0: 2, 0xd1 - 0xc0: 3, 0xd2 - 0xc0: 5, 0xd3 - 0xc0: 9,
	0xd4 - 0xc0: 3, 0xd5 - 0xc0: 4, 0xd6 - 0xc0: 6, 0xd7 - 0xc0: 10, 0xd8 - 0xc0: 18,
}

// scalarSize is the encoded size of the values whose size the type byte decides: integers,
// floats, nil, booleans, fixstr and fixext (0 for containers, the variable-size types and the
// reserved 0xc1). One table look-up passes over a scalar: columns are mostly scalars.
var scalarSize = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c <= 0x7f || c >= 0xe0:
			t[c] = 1
		case c >= 0xa0 && c <= 0xbf:
			t[c] = uint8(1 + c&0x1f)
		case c >= 0xc0:
			t[c] = uint8(fixedSize[c-0xc0])
		}
	}
	return t
}()

// arrayLen reads an array header.
func arrayLen(b []byte, pos int) (n, next int, err error) {
	if pos >= len(b) {
		return 0, pos, errShort
	}
	c := b[pos]
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), pos + 1, nil
	case c == 0xdc:
		if pos+3 > len(b) {
			return 0, pos, errShort
		}
		return be16(b, pos+1), pos + 3, nil
	case c == 0xdd:
		if pos+5 > len(b) {
			return 0, pos, errShort
		}
		return be32(b, pos+1), pos + 5, nil
	}
	return 0, pos, wrongType(b, pos, "list")
}

// mapLen reads a map header.
func mapLen(b []byte, pos int) (n, next int, err error) {
	if pos >= len(b) {
		return 0, pos, errShort
	}
	c := b[pos]
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), pos + 1, nil
	case c == 0xde:
		if pos+3 > len(b) {
			return 0, pos, errShort
		}
		return be16(b, pos+1), pos + 3, nil
	case c == 0xdf:
		if pos+5 > len(b) {
			return 0, pos, errShort
		}
		return be32(b, pos+1), pos + 5, nil
	}
	return 0, pos, wrongType(b, pos, "map")
}

// isMap and isArray look at the type byte only.
func isMap(c byte) bool   { return c>>4 == 0x8 || c == 0xde || c == 0xdf }
func isArray(c byte) bool { return c>>4 == 0x9 || c == 0xdc || c == 0xdd }

// str reads a str or bin value (raw=false readers accept both for names and keys). The
// result aliases b.
func str(b []byte, pos int) (s []byte, next int, err error) {
	if pos >= len(b) {
		return nil, pos, errShort
	}
	c := b[pos]
	var n int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n, pos = int(c&0x1f), pos+1
	case c == 0xd9 || c == 0xc4:
		if pos+2 > len(b) {
			return nil, pos, errShort
		}
		n, pos = int(b[pos+1]), pos+2
	case c == 0xda || c == 0xc5:
		if pos+3 > len(b) {
			return nil, pos, errShort
		}
		n, pos = be16(b, pos+1), pos+3
	case c == 0xdb || c == 0xc6:
		if pos+5 > len(b) {
			return nil, pos, errShort
		}
		n, pos = be32(b, pos+1), pos+5
	default:
		return nil, pos, wrongType(b, pos, "string")
	}
	if n > len(b)-pos {
		return nil, pos, errShort
	}
	return b[pos : pos+n : pos+n], pos + n, nil
}

// Fast paths for what event pages are mostly made of: fixstr keys, float64 values and lists
// of one value (single-row pages). They are small enough for the compiler to inline, which
// the general readers are not; each reports ok false for anything else (including bytes that
// run short), and the caller then uses the general reader.

// fixKey reads a fixstr.
func fixKey(b []byte, pos int) (s []byte, next int, ok bool) {
	if pos < len(b) {
		if c := b[pos]; c&0xe0 == 0xa0 {
			if end := pos + 1 + int(c&0x1f); end <= len(b) {
				return b[pos+1 : end], end, true
			}
		}
	}
	return nil, pos, false
}

// fastFloat reads a float64.
func fastFloat(b []byte, pos int) (f float64, next int, ok bool) {
	if pos+9 <= len(b) && b[pos] == 0xcb {
		return math.Float64frombits(binary.BigEndian.Uint64(b[pos+1:])), pos + 9, true
	}
	return 0, pos, false
}

// one reports whether the value at pos is a list of one value, returning the value's position.
func one(b []byte, pos int) (int, bool) {
	if pos < len(b) && b[pos] == 0x91 {
		return pos + 1, true
	}
	return pos, false
}

// keyStr reads a map key or a document name: a str or bin, usually a fixstr.
func keyStr(b []byte, pos int) ([]byte, int, error) {
	if k, next, ok := fixKey(b, pos); ok {
		return k, next, nil
	}
	return str(b, pos)
}

// isStr reports whether the value at pos is a str or bin.
func isStr(c byte) bool { return c>>5 == 0x5 || (c >= 0xd9 && c <= 0xdb) || (c >= 0xc4 && c <= 0xc6) }

// Number kinds returned by number.
const (
	numNone = iota
	numInt
	numFloat
)

// number reads an integer or float. Integers above MaxInt64 become floats (the generic value
// model has no uint64). kind is numNone, with err nil, when the value is not a number.
func number(b []byte, pos int) (i int64, f float64, kind int, next int, err error) {
	if pos >= len(b) {
		return 0, 0, numNone, pos, errShort
	}
	c := b[pos]
	if c <= 0x7f {
		return int64(c), 0, numInt, pos + 1, nil
	}
	if c >= 0xe0 {
		return int64(int8(c)), 0, numInt, pos + 1, nil
	}
	if c < 0xca || c > 0xd3 {
		return 0, 0, numNone, pos, nil
	}
	n := fixedSize[c-0xc0]
	if pos+n > len(b) {
		return 0, 0, numNone, pos, errShort
	}
	p := pos + 1
	switch c {
	case 0xca:
		return 0, float64(math.Float32frombits(binary.BigEndian.Uint32(b[p:]))), numFloat, pos + n, nil
	case 0xcb:
		return 0, math.Float64frombits(binary.BigEndian.Uint64(b[p:])), numFloat, pos + n, nil
	case 0xcc:
		return int64(b[p]), 0, numInt, pos + n, nil
	case 0xcd:
		return int64(binary.BigEndian.Uint16(b[p:])), 0, numInt, pos + n, nil
	case 0xce:
		return int64(binary.BigEndian.Uint32(b[p:])), 0, numInt, pos + n, nil
	case 0xcf:
		u := binary.BigEndian.Uint64(b[p:])
		if u > math.MaxInt64 {
			return 0, float64(u), numFloat, pos + n, nil
		}
		return int64(u), 0, numInt, pos + n, nil
	case 0xd0:
		return int64(int8(b[p])), 0, numInt, pos + n, nil
	case 0xd1:
		return int64(int16(binary.BigEndian.Uint16(b[p:]))), 0, numInt, pos + n, nil
	case 0xd2:
		return int64(int32(binary.BigEndian.Uint32(b[p:]))), 0, numInt, pos + n, nil
	default: // 0xd3
		return int64(binary.BigEndian.Uint64(b[p:])), 0, numInt, pos + n, nil
	}
}

// float reads a number as float64 (catalog.AsFloat semantics).
func float(b []byte, pos int) (float64, int, error) {
	if pos+9 <= len(b) && b[pos] == 0xcb { // the common case, inlined
		return math.Float64frombits(binary.BigEndian.Uint64(b[pos+1:])), pos + 9, nil
	}
	i, f, kind, next, err := number(b, pos)
	switch {
	case err != nil:
		return 0, pos, err
	case kind == numInt:
		return float64(i), next, nil
	case kind == numFloat:
		return f, next, nil
	}
	return 0, pos, wrongType(b, pos, "number")
}

// integer reads an integral number as int64 (catalog.AsInt semantics: 5.0 is 5).
func integer(b []byte, pos int) (int64, int, error) {
	if pos < len(b) && b[pos] <= 0x7f {
		return int64(b[pos]), pos + 1, nil
	}
	i, f, kind, next, err := number(b, pos)
	switch {
	case err != nil:
		return 0, pos, err
	case kind == numInt:
		return i, next, nil
	case kind == numFloat && f == math.Trunc(f) && !math.IsInf(f, 0) && math.Abs(f) < 1<<63:
		return int64(f), next, nil
	}
	return 0, pos, wrongType(b, pos, "integer")
}
