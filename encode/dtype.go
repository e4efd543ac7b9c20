package encode

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrUnsupported reports a dtype, or a dtype and shape, that this package cannot encode: an
// unknown descr, a complex-to-real conversion, or a field that has no CSV form.
var ErrUnsupported = errors.New("unsupported")

// maxUnicodeWidth bounds <U{n}: a row of one such string is then at most 1 GiB, which keeps
// every size computation far from overflow.
const maxUnicodeWidth = 1 << 28

// elem is a parsed Dtype: what the byte-level code switches on.
type elem struct {
	kind byte // 'b' bool, 'i' signed, 'u' unsigned, 'f' float, 'c' complex, 'U' unicode
	size int  // bytes per element (4*width for 'U')
	big  bool // big-endian multi-byte values
}

// unit is the size of the byte-swapped unit: a UTF-32 code point for 'U', one float of a
// complex pair for 'c', the whole element otherwise.
func (e elem) unit() int {
	switch e.kind {
	case 'U':
		return 4
	case 'c':
		return e.size / 2
	}
	return e.size
}

// ParseDtype parses a NumPy descr and returns it in the canonical form NumPy itself writes:
//
//	"<f8" "<f4" "<i2" "<u8" ...   byte order '<' or '>' ('=' and a missing order mean '<')
//	"|b1" "|i1" "|u1"             one-byte types take '|' whatever order was given; "?" is "|b1"
//	"<U12" "<U0"                  UTF-32 strings of a fixed number of code points (0 allowed)
//	"<f2"                         IEEE half floats (float16), converted exactly
//	"<c8" "<c16"                  complex pairs of float32 / float64
//
// Sizes other than those (long double, bytes "S", structured dtypes) are refused
// with an error that names the descr and wraps ErrUnsupported.
func ParseDtype(descr string) (Dtype, error) {
	e, err := parseDescr(descr)
	if err != nil {
		return Dtype{}, fmt.Errorf("parse dtype %q: %w", descr, err)
	}
	return e.dtype(), nil
}

// Unicode returns the dtype of NumPy strings of width code points, "<U{width}".
// It panics if width is negative or unreasonably large (more than 2^28).
func Unicode(width int) Dtype {
	if width < 0 || width > maxUnicodeWidth {
		panic(fmt.Sprintf("encode: unicode width %d out of range", width))
	}
	return elem{kind: 'U', size: 4 * width}.dtype()
}

// dtype is the canonical Dtype of e.
func (e elem) dtype() Dtype {
	order := byte('<')
	if e.big {
		order = '>'
	}
	n := e.size
	if e.kind == 'U' {
		n /= 4
	} else if e.size == 1 {
		order = '|'
	}
	return Dtype{Descr: string(order) + string(e.kind) + strconv.Itoa(n), Size: e.size}
}

// elem parses d and checks that its Size agrees with its Descr, so that a hand-written
// Dtype literal with a wrong Size is caught before it can slice a buffer wrongly.
func (d Dtype) elem() (elem, error) {
	e, err := parseDescr(d.Descr)
	if err != nil {
		return elem{}, fmt.Errorf("dtype %q: %w", d.Descr, err)
	}
	if e.size != d.Size {
		return elem{}, fmt.Errorf("dtype %q: size %d, want %d", d.Descr, d.Size, e.size)
	}
	return e, nil
}

// parseDescr parses the forms listed at ParseDtype. It is on the per-value path of PutFloat
// and friends, so it avoids allocating.
func parseDescr(s string) (elem, error) {
	var e elem
	if s == "?" {
		return elem{kind: 'b', size: 1}, nil
	}
	if s != "" {
		switch s[0] {
		case '>':
			e.big = true
			s = s[1:]
		case '<', '=', '|':
			s = s[1:]
		}
	}
	if len(s) < 2 {
		return e, ErrUnsupported
	}
	e.kind = s[0]
	n, ok := parseCount(s[1:])
	if !ok {
		return e, ErrUnsupported
	}
	e.size = n
	switch e.kind {
	case 'b':
		ok = n == 1
	case 'i', 'u':
		ok = n == 1 || n == 2 || n == 4 || n == 8
	case 'f':
		ok = n == 2 || n == 4 || n == 8
	case 'c':
		ok = n == 8 || n == 16
	case 'U':
		ok = n <= maxUnicodeWidth
		e.size = 4 * n
	default:
		ok = false
	}
	if !ok {
		return e, ErrUnsupported
	}
	if e.size == 1 {
		e.big = false // byte order is meaningless for one byte; keeps dtype() canonical
	}
	return e, nil
}

// parseCount parses a decimal count of at most 9 digits without sign or leading zeros.
func parseCount(s string) (int, bool) {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
