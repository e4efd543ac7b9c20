package jsonl

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 512

// decoder parses JSON text into the generic values of package catalog: nil, bool, int64 (integer
// literals that fit), float64 (literals with '.', 'e' or 'E', and larger integers), string, []any
// and map[string]any. Like Python's json module, which suitcase-jsonl writes with, it also reads
// NaN, Infinity and -Infinity. It works on one line at a time and keeps its scratch buffers
// between lines; it is not safe for concurrent use.
type decoder struct {
	b     []byte
	i     int
	depth int
	buf   []byte // unescaped string scratch

	// Scratch of pack, reused across arrays.
	shape  []int
	rank   int
	kind   packKind
	ints   []int64
	floats []float64
	bools  []bool
	strs   []string
}

// syntaxError is a malformed JSON text, with the byte offset in the line where it was found.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("offset %d: %s", e.off, e.msg) }

func (d *decoder) errorf(format string, args ...any) error {
	return &syntaxError{off: d.i, msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) reset(b []byte, i int) { d.b, d.i, d.depth = b, i, 0 }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *decoder) ws() {
	for d.i < len(d.b) && isSpace(d.b[d.i]) {
		d.i++
	}
}

// peek returns the next byte after whitespace, or 0 at the end.
func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) expect(c byte) error {
	if d.peek() != c {
		if d.i >= len(d.b) {
			return d.errorf("unexpected end of line, want %q", c)
		}
		return d.errorf("unexpected %q, want %q", d.b[d.i], c)
	}
	d.i++
	return nil
}

func (d *decoder) literal(word string) error {
	if len(d.b)-d.i < len(word) || string(d.b[d.i:d.i+len(word)]) != word {
		return d.errorf("invalid literal")
	}
	d.i += len(word)
	return nil
}

// value decodes any JSON value.
func (d *decoder) value() (any, error) {
	switch c := d.peek(); c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		return d.str()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	case 0:
		return nil, d.errorf("unexpected end of line")
	default:
		iv, fv, isInt, err := d.num()
		if err != nil {
			return nil, err
		}
		if isInt {
			return iv, nil
		}
		return fv, nil
	}
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return d.errorf("nesting deeper than %d", maxDepth)
	}
	d.i++ // the opening bracket
	return nil
}

func (d *decoder) object() (map[string]any, error) {
	m := make(map[string]any)
	err := d.members(func(key []byte) error {
		k := string(key) // before value(), which may reuse d.buf
		v, err := d.value()
		m[k] = v
		return err
	})
	return m, err
}

// members walks the object at d.i: fn gets each key and must consume its value. The key may
// alias scratch space that decoding the value reuses.
func (d *decoder) members(fn func(key []byte) error) error {
	if d.peek() != '{' {
		return d.errorf("want object")
	}
	if err := d.enter(); err != nil {
		return err
	}
	if d.peek() == '}' {
		d.i++
		d.depth--
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.errorf("want object key")
		}
		key, err := d.strBytes()
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := fn(key); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			d.depth--
			return nil
		default:
			return d.errorf("want ',' or '}' in object")
		}
	}
}

// elements walks the array at d.i: fn is called for each element and must consume it.
func (d *decoder) elements(fn func() error) error {
	if d.peek() != '[' {
		return d.errorf("want list")
	}
	if err := d.enter(); err != nil {
		return err
	}
	if d.peek() == ']' {
		d.i++
		d.depth--
		return nil
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			d.depth--
			return nil
		default:
			return d.errorf("want ',' or ']' in list")
		}
	}
}

func (d *decoder) array() ([]any, error) {
	out := []any{}
	err := d.elements(func() error {
		v, err := d.value()
		out = append(out, v)
		return err
	})
	return out, err
}

// skip passes over one value, checking its syntax and nesting as decoding it would (scanValue);
// the fields an event page does not want cost no decoding.
func (d *decoder) skip() error {
	d.ws()
	end, err := scanValue(d.b, d.i, maxDepth-d.depth)
	if err != nil {
		return err
	}
	d.i = end
	return nil
}

func (d *decoder) str() (string, error) {
	b, err := d.strBytes()
	return string(b), err
}

// strBytes decodes the string at d.i. The result aliases the line when the string has no
// escapes and is valid UTF-8, else d.buf; it is valid until the next call.
func (d *decoder) strBytes() ([]byte, error) {
	b := d.b
	start := d.i + 1
	ascii := true
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			s := b[start:i]
			if !ascii && !utf8.Valid(s) {
				return d.sanitize(s), nil
			}
			return s, nil
		case c == '\\':
			return d.unescape(start, i)
		case c < 0x20:
			d.i = i
			return nil, d.errorf("control character in string")
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	d.i = len(b)
	return nil, d.errorf("unterminated string")
}

// sanitize replaces each invalid UTF-8 byte by U+FFFD, as encoding/json and catalog.AppendJSON do.
func (d *decoder) sanitize(s []byte) []byte {
	out := d.buf[:0]
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		out = utf8.AppendRune(out, r)
		s = s[n:]
	}
	d.buf = out
	return out
}

// unescape decodes a string with escapes; i is the first backslash.
func (d *decoder) unescape(start, i int) ([]byte, error) {
	b := d.b
	out := append(d.buf[:0], b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			if !utf8.Valid(out) {
				d.buf = out
				return d.sanitize(append([]byte(nil), out...)), nil
			}
			d.buf = out
			return out, nil
		case c < 0x20:
			d.i = i
			return nil, d.errorf("control character in string")
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			break
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b[i+2:])
			if !ok {
				d.i = i
				return nil, d.errorf("invalid \\u escape")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(-1), false
				if len(b) > i+3 && b[i+2] == '\\' && b[i+3] == 'u' {
					r2, ok = hex4(b[i+4:])
				}
				if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError // a lone surrogate, which a Go string cannot hold
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			d.i = i
			return nil, d.errorf("invalid escape")
		}
		i += 2
	}
	d.i = len(b)
	return nil, d.errorf("unterminated string")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// DecodeObject decodes b, one JSON object and nothing but whitespace around it, into the
// generic values documents are decoded into (NaN, Infinity and -Infinity included, as
// Python's json module writes them; nesting bounded by maxDepth). It is for documents that
// come from elsewhere as JSON: what a transform helper returns, for one.
func DecodeObject(b []byte) (map[string]any, error) {
	var d decoder
	d.reset(b, 0)
	if d.peek() != '{' {
		return nil, d.errorf("not a JSON object")
	}
	m, err := d.object()
	if err != nil {
		return nil, err
	}
	if d.ws(); d.i < len(d.b) {
		return nil, d.errorf("data after the object")
	}
	return m, nil
}
