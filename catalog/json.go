package catalog

import (
	"encoding/binary"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Document is one named Bluesky document in generic form, as a backend or a writer sees it.
type Document struct {
	Name string // start, descriptor, event, event_page, resource, datum, datum_page, stop
	Doc  map[string]any
}

// AppendJSON appends the JSON encoding of a generic value. Map keys are sorted; NaN and
// infinities are written as Python's json module writes them (NaN, Infinity, -Infinity), so
// that documents round-trip through Python; an *NDArray becomes nested lists.
func AppendJSON(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, x)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case float64:
		return AppendFloat(dst, x)
	case string:
		return AppendJSONString(dst, x)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = AppendJSON(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = AppendJSONString(dst, k)
			dst = append(dst, ": "...)
			dst = AppendJSON(dst, x[k])
		}
		return append(dst, '}')
	case *NDArray:
		return AppendJSON(dst, x.List())
	}
	return append(dst, "null"...)
}

// AppendFloat appends a float the way Python's repr does for the values that matter: the
// shortest text that reads back to the same float64, with ".0" on integral values.
func AppendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	start := len(dst)
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-4 || abs >= 1e16) {
		dst = strconv.AppendFloat(dst, f, 'e', -1, 64)
		return dst
	}
	dst = strconv.AppendFloat(dst, f, 'f', -1, 64)
	for _, c := range dst[start:] {
		if c == '.' {
			return dst
		}
	}
	return append(dst, ".0"...)
}

// AppendJSONString appends s as a JSON string literal.
func AppendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// List returns the array as nested []any of float64, int64, bool or string.
func (a *NDArray) List() any {
	flat := make([]any, 0, a.Len())
	if a.Strings != nil {
		for _, s := range a.Strings {
			flat = append(flat, s)
		}
	} else {
		flat = appendElements(flat, a)
	}
	if len(a.Shape) == 0 {
		if len(flat) == 0 {
			return nil
		}
		return flat[0]
	}
	var nest func(dims []int, flat []any) []any
	nest = func(dims []int, flat []any) []any {
		if len(dims) == 1 {
			return flat
		}
		stride := len(flat) / max(dims[0], 1)
		out := make([]any, dims[0])
		for i := range out {
			out[i] = nest(dims[1:], flat[i*stride:(i+1)*stride])
		}
		return out
	}
	return nest(a.Shape, flat)
}

func appendElements(dst []any, a *NDArray) []any {
	if len(a.Dtype) < 3 {
		return dst
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if a.Dtype[0] == '>' {
		bo = binary.BigEndian
	}
	size, _ := strconv.Atoi(a.Dtype[2:])
	if size <= 0 {
		return dst
	}
	for off := 0; off+size <= len(a.Data); off += size {
		b := a.Data[off : off+size]
		switch a.Dtype[1] {
		case 'f':
			switch size {
			case 4:
				dst = append(dst, float64(math.Float32frombits(bo.Uint32(b))))
			case 8:
				dst = append(dst, math.Float64frombits(bo.Uint64(b)))
			}
		case 'i':
			switch size {
			case 1:
				dst = append(dst, int64(int8(b[0])))
			case 2:
				dst = append(dst, int64(int16(bo.Uint16(b))))
			case 4:
				dst = append(dst, int64(int32(bo.Uint32(b))))
			case 8:
				dst = append(dst, int64(bo.Uint64(b)))
			}
		case 'u':
			switch size {
			case 1:
				dst = append(dst, int64(b[0]))
			case 2:
				dst = append(dst, int64(bo.Uint16(b)))
			case 4:
				dst = append(dst, int64(bo.Uint32(b)))
			case 8:
				dst = append(dst, int64(bo.Uint64(b)))
			}
		case 'b':
			dst = append(dst, b[0] != 0)
		}
	}
	return dst
}
