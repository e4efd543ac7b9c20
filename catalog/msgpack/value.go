package msgpack

// Generic values: msgpack decoded into the catalog's value model (nil, bool, int64, float64,
// string, []any, map[string]any, *catalog.NDArray), msgpack-numpy arrays recognised, and the
// stored form of a document rendered as JSON in its own key order.

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/brokerfs/brokerfs/catalog"
	npyenc "github.com/brokerfs/brokerfs/encode"
)

// maxDepth bounds the nesting of decoded values: hostile input must not exhaust the stack.
const maxDepth = 512

// value decodes the value at pos. With alias set, the Data of msgpack-numpy arrays points
// into b (event pages, valid during a callback); otherwise it is copied.
func value(b []byte, pos int, alias bool, depth int) (any, int, error) {
	if depth > maxDepth {
		return nil, pos, corrupt(pos, errDepth)
	}
	if pos >= len(b) {
		return nil, pos, errShort
	}
	c := b[pos]
	switch {
	case c == 0xc0:
		return nil, pos + 1, nil
	case c == 0xc2 || c == 0xc3:
		return c == 0xc3, pos + 1, nil
	case isStr(c):
		s, next, err := str(b, pos)
		return string(s), next, err
	case isArray(c):
		n, p, err := arrayLen(b, pos)
		if err != nil {
			return nil, pos, err
		}
		if n > len(b)-p {
			return nil, pos, errShort
		}
		list := make([]any, n)
		for i := range list {
			if list[i], p, err = value(b, p, alias, depth+1); err != nil {
				return nil, pos, err
			}
		}
		return list, p, nil
	case isMap(c):
		if nd, ok, end, err := numpy(b, pos, alias); err != nil || ok {
			return nd, end, err
		}
		n, p, err := mapLen(b, pos)
		if err != nil {
			return nil, pos, err
		}
		if n > len(b)-p {
			return nil, pos, errShort
		}
		m := make(map[string]any, min(n, 64))
		for range n {
			var k string
			if k, p, err = key(b, p); err != nil {
				return nil, pos, err
			}
			if m[k], p, err = value(b, p, alias, depth+1); err != nil {
				return nil, pos, err
			}
		}
		return m, p, nil
	}
	i, f, kind, next, err := number(b, pos)
	switch {
	case err != nil:
		return nil, pos, err
	case kind == numInt:
		return i, next, nil
	case kind == numFloat:
		return f, next, nil
	}
	// An extension. The only standard one is the timestamp (type -1); others have no
	// meaning to brokerfs and read as nil, as a JSON export would have to show them.
	next, err = skip(b, pos)
	if err != nil {
		return nil, pos, err
	}
	if t, ok := timestamp(b[pos:next]); ok {
		return t, next, nil
	}
	return nil, next, nil
}

// timestamp decodes a msgpack timestamp extension as float seconds.
func timestamp(e []byte) (float64, bool) {
	switch {
	case len(e) == 6 && e[0] == 0xd6 && e[1] == 0xff:
		return float64(binary.BigEndian.Uint32(e[2:])), true
	case len(e) == 10 && e[0] == 0xd7 && e[1] == 0xff:
		v := binary.BigEndian.Uint64(e[2:])
		return float64(v&(1<<34-1)) + float64(v>>34)*1e-9, true
	case len(e) == 15 && e[0] == 0xc7 && e[1] == 12 && e[2] == 0xff:
		ns := binary.BigEndian.Uint32(e[3:])
		return float64(int64(binary.BigEndian.Uint64(e[7:]))) + float64(ns)*1e-9, true
	}
	return 0, false
}

// key decodes a map key as a string, the way Python's json module would write it: str and
// bin as text, numbers and bools in their JSON spelling.
func key(b []byte, pos int) (string, int, error) {
	if pos < len(b) && isStr(b[pos]) {
		s, next, err := str(b, pos)
		return string(s), next, err
	}
	v, next, err := value(b, pos, false, maxDepth-1)
	if err != nil {
		next, err = skip(b, pos)
		return "", next, err
	}
	switch x := v.(type) {
	case nil:
		return "null", next, nil
	case bool:
		return strconv.FormatBool(x), next, nil
	case int64:
		return strconv.FormatInt(x, 10), next, nil
	case float64:
		return string(catalog.AppendFloat(nil, x)), next, nil
	}
	return string(catalog.AppendJSON(nil, v)), next, nil
}

// ndHeader is a msgpack-numpy map taken apart: {b"nd": bool, b"type": descr, b"kind": b"",
// b"shape": [...], b"data": bytes}.
type ndHeader struct {
	nd    bool
	typ   []byte
	kind  []byte
	ndim  int
	shape [32]int
	data  []byte
	end   int
}

// parseNumpy recognises a msgpack-numpy map at pos. ok is false (and err nil) for any other
// map, which then decodes as a plain map; shapes of more than 32 dimensions are not numpy's.
func parseNumpy(b []byte, pos int, h *ndHeader) (ok bool, err error) {
	n, p, err := mapLen(b, pos)
	if err != nil || n < 3 || n > 5 {
		return false, err
	}
	var seen int
	for range n {
		k, next, err := str(b, p)
		if err != nil {
			return false, nil
		}
		p = next
		switch string(k) {
		case "nd":
			if p >= len(b) || (b[p] != 0xc2 && b[p] != 0xc3) {
				return false, nil
			}
			h.nd, p = b[p] == 0xc3, p+1
			seen |= 1
		case "type":
			if h.typ, p, err = str(b, p); err != nil {
				return false, nil
			}
			seen |= 2
		case "kind":
			if h.kind, p, err = str(b, p); err != nil {
				return false, nil
			}
		case "data":
			if h.data, p, err = str(b, p); err != nil {
				return false, nil
			}
			seen |= 4
		case "shape":
			dims, q, err := arrayLen(b, p)
			if err != nil || dims > len(h.shape) {
				return false, nil
			}
			p = q
			for i := range dims {
				d, q, err := integer(b, p)
				if err != nil || d < 0 || d > math.MaxInt32 {
					return false, nil
				}
				h.shape[i], p = int(d), q
			}
			h.ndim = dims
			seen |= 8
		default:
			return false, nil
		}
	}
	if seen&7 != 7 || (h.nd && seen&8 == 0) || len(h.kind) != 0 {
		return false, nil // kind b"V" (structured arrays) and pickled objects stay maps
	}
	h.end = p
	return true, nil
}

// dtype parses a numpy type string: byte order, kind letter and item size in bytes
// ("<f8" -> '<', 'f', 8; "<U3" -> '<', 'U', 12). Numeric, bool and unicode types are
// parsed by npyenc.ParseDtype, the one dtype model brokerfs has (float16 included), and
// returned in its canonical form ('|' for one-byte types); bytes ("|S5") are handled here
// because they only ever become strings. Complex types are left to stay maps, as before.
func dtype(t []byte) (order, kind byte, size int, ok bool) {
	if len(t) < 3 {
		return 0, 0, 0, false
	}
	if t[1] == 'S' {
		order = t[0]
		if order != '<' && order != '>' && order != '|' && order != '=' {
			return 0, 0, 0, false
		}
		n, err := strconv.Atoi(string(t[2:]))
		if err != nil || n <= 0 || n > 1<<20 {
			return 0, 0, 0, false
		}
		return '|', 'S', n, true
	}
	if t[0] != '<' && t[0] != '>' && t[0] != '|' && t[0] != '=' {
		return 0, 0, 0, false
	}
	d, err := npyenc.ParseDtype(string(t))
	if err != nil {
		return 0, 0, 0, false
	}
	order, kind, size = d.Descr[0], d.Descr[1], d.Size
	switch kind {
	case 'f', 'i', 'u', 'b':
		return order, kind, size, true
	case 'U':
		return order, kind, size, size > 0 && size <= 4<<20
	}
	return 0, 0, 0, false
}

// numpy decodes a msgpack-numpy map at pos: an *NDArray for nd: true, a scalar for nd: false.
// ok is false for other maps.
func numpy(b []byte, pos int, alias bool) (v any, ok bool, end int, err error) {
	var h ndHeader
	if ok, err = parseNumpy(b, pos, &h); !ok {
		return nil, false, pos, err
	}
	v, ok = ndValue(&h, alias)
	return v, ok, h.end, nil
}

// ndValue turns a parsed msgpack-numpy header into a value; ok is false when the dtype is not
// one brokerfs understands or the data does not match the shape.
func ndValue(h *ndHeader, alias bool) (any, bool) {
	order, kind, size, ok := dtype(h.typ)
	if !ok {
		return nil, false
	}
	if !h.nd {
		return ndScalar(h.data, order, kind, size)
	}
	// The element count, checked against the data as it grows so that hostile shapes cannot
	// overflow it: each element takes at least one byte.
	count := 1
	for _, d := range h.shape[:h.ndim] {
		if d == 0 {
			count = 0
			break
		}
		if count > len(h.data)/d {
			return nil, false
		}
		count *= d
	}
	if count*size != len(h.data) {
		return nil, false
	}
	a := &catalog.NDArray{Dtype: string(h.typ), Shape: append(make([]int, 0, h.ndim), h.shape[:h.ndim]...)}
	switch kind {
	case 'U', 'S':
		a.Dtype = "<U0"
		a.Strings = make([]string, count)
		for i := range a.Strings {
			a.Strings[i] = fixedString(h.data[i*size:(i+1)*size], order, kind)
		}
		return a, true
	}
	if h.typ[0] == '=' || h.typ[0] == '|' || size == 1 {
		a.Dtype = string([]byte{order, kind}) + strconv.Itoa(size) // canonical: "<f8", "|u1"
	}
	if alias {
		a.Data = h.data
	} else {
		a.Data = append([]byte(nil), h.data...)
	}
	return a, true
}

// fixedString decodes one element of a numpy 'S' (bytes) or 'U' (UTF-32) array, dropping
// the trailing NULs that pad it.
func fixedString(e []byte, order, kind byte) string {
	if kind == 'S' {
		for len(e) > 0 && e[len(e)-1] == 0 {
			e = e[:len(e)-1]
		}
		return string(e)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if order == '>' {
		bo = binary.BigEndian
	}
	out := make([]byte, 0, len(e)/4)
	for i := 0; i+4 <= len(e); i += 4 {
		r := rune(bo.Uint32(e[i:]))
		if r == 0 {
			break
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}

// ndScalar decodes a numpy scalar (nd: false) into a plain value.
func ndScalar(d []byte, order, kind byte, size int) (any, bool) {
	if kind == 'U' || kind == 'S' {
		return fixedString(d, order, kind), true
	}
	if len(d) != size {
		return nil, false
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if order == '>' {
		bo = binary.BigEndian
	}
	var u uint64
	switch size {
	case 1:
		u = uint64(d[0])
	case 2:
		u = uint64(bo.Uint16(d))
	case 4:
		u = uint64(bo.Uint32(d))
	case 8:
		u = bo.Uint64(d)
	}
	switch kind {
	case 'b':
		return u != 0, true
	case 'f':
		switch size {
		case 2:
			return npyenc.Float16ToFloat64(uint16(u)), true
		case 4:
			return float64(math.Float32frombits(uint32(u))), true
		}
		return math.Float64frombits(u), true
	case 'i':
		shift := 64 - 8*size
		return int64(u<<shift) >> shift, true
	}
	if u > math.MaxInt64 {
		return float64(u), true
	}
	return int64(u), true
}

// appendJSON renders the value at pos as JSON with the separators of Python's json module,
// maps in their stored key order, NaN and infinities as Python writes them and numpy arrays
// as nested lists. It is how Raw fields show a document as stored.
func appendJSON(dst, b []byte, pos, depth int) ([]byte, int, error) {
	if depth > maxDepth {
		return dst, pos, corrupt(pos, errDepth)
	}
	if pos >= len(b) {
		return dst, pos, errShort
	}
	c := b[pos]
	switch {
	case isArray(c):
		n, p, err := arrayLen(b, pos)
		if err != nil {
			return dst, pos, err
		}
		dst = append(dst, '[')
		for i := range n {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			if dst, p, err = appendJSON(dst, b, p, depth+1); err != nil {
				return dst, pos, err
			}
		}
		return append(dst, ']'), p, nil
	case isMap(c):
		if v, ok, end, err := numpy(b, pos, true); err != nil || ok {
			return catalog.AppendJSON(dst, v), end, err
		}
		n, p, err := mapLen(b, pos)
		if err != nil {
			return dst, pos, err
		}
		dst = append(dst, '{')
		for i := range n {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			var k string
			if k, p, err = key(b, p); err != nil {
				return dst, pos, err
			}
			dst = append(catalog.AppendJSONString(dst, k), ": "...)
			if dst, p, err = appendJSON(dst, b, p, depth+1); err != nil {
				return dst, pos, err
			}
		}
		return append(dst, '}'), p, nil
	case isStr(c):
		s, next, err := str(b, pos)
		if err != nil {
			return dst, pos, err
		}
		return catalog.AppendJSONString(dst, string(s)), next, nil
	}
	v, next, err := value(b, pos, true, depth)
	if err != nil {
		return dst, pos, err
	}
	return catalog.AppendJSON(dst, v), next, nil
}
