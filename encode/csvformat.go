package encode

import (
	"bytes"
	"math"
	"strconv"
)

// appendFloat appends f as Python's repr(float) does, which is what pandas' to_csv writes and
// what every correct decimal parser reads back as the same bits: the shortest digits that
// round-trip (for bitSize 32, the shortest that round-trip through float32), in positional
// form with at least one decimal ("2.0", "295.5", "0.0001", "-0.0") when the decimal exponent
// is in [-4, 16), in exponent form otherwise ("1e-05", "1e+16", "5e-324", "1.5e+300").
// The ".0" keeps pandas from reading an all-integral column as int64. NaN is "NaN" and the
// infinities are "inf" and "-inf", which pandas.read_csv reads as such by default.
func appendFloat(dst []byte, f float64, bitSize int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	}
	if a := math.Abs(f); bitSize == 64 && (a == 0 || 1e-4 <= a && a < 1e16) {
		// The positional range, the common case, in one call. Testing f instead of its
		// shortest digits is exact: the shortest digits of f are below 1e16 exactly when
		// f < 1e16, and at least 1e-4 exactly when f >= 1e-4, because the two constants are
		// the doubles nearest to those powers of ten.
		n := len(dst)
		dst = strconv.AppendFloat(dst, f, 'f', -1, 64)
		if bytes.IndexByte(dst[n:], '.') < 0 {
			dst = append(dst, ".0"...)
		}
		return dst
	}
	return appendFloatLayout(dst, f, bitSize)
}

// appendFloatLayout is appendFloat for finite values, laid out from the shortest digits.
func appendFloatLayout(dst []byte, f float64, bitSize int) []byte {
	// 'e' with precision -1 gives "-d.ddddde±XX": the shortest digits and the exponent.
	var buf [32]byte
	e := appendShortestE(buf[:0], f, bitSize)
	if e[0] == '-' {
		dst = append(dst, '-')
		e = e[1:]
	}
	ei := len(e) - 1
	for e[ei] != 'e' {
		ei--
	}
	exp := 0
	for _, c := range e[ei+2:] {
		exp = exp*10 + int(c-'0')
	}
	if e[ei+1] == '-' {
		exp = -exp
	}
	mant := e[:ei]
	var digs [24]byte
	digits := append(digs[:0], mant[0])
	if len(mant) > 2 {
		digits = append(digits, mant[2:]...) // skip the '.'
	}

	decpt := exp + 1 // digits[0] is at 10^(decpt-1)
	switch {
	case decpt <= -4 || decpt > 16:
		dst = append(dst, digits[0])
		if len(digits) > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if exp < 0 {
			dst = append(dst, '-')
			exp = -exp
		} else {
			dst = append(dst, '+')
		}
		if exp < 10 {
			dst = append(dst, '0')
		}
		return strconv.AppendInt(dst, int64(exp), 10)
	case decpt <= 0:
		dst = append(dst, "0."...)
		for range -decpt {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	case decpt >= len(digits):
		dst = append(dst, digits...)
		for range decpt - len(digits) {
			dst = append(dst, '0')
		}
		return append(dst, ".0"...)
	default:
		dst = append(dst, digits[:decpt]...)
		dst = append(dst, '.')
		return append(dst, digits[decpt:]...)
	}
}

// needsQuotes reports whether a CSV field must be quoted (RFC 4180): it holds a comma, a
// double quote, CR or LF, or it is empty. An empty field is quoted because a row of one
// empty unquoted field is a blank line, which pandas.read_csv skips. Leading and trailing
// spaces are kept unquoted: RFC 4180 makes them part of the field and pandas keeps them.
func needsQuotes(s []byte) bool {
	if len(s) == 0 {
		return true
	}
	for _, c := range s {
		if c == ',' || c == '"' || c == '\r' || c == '\n' {
			return true
		}
	}
	return false
}

// appendField appends s as a CSV field, quoted with "" doubling when needsQuotes says so.
func appendField(dst, s []byte) []byte {
	if !needsQuotes(s) {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for _, c := range s {
		if c == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// appendValue appends the element at the start of b, of dtype e, as a CSV field. strBuf is
// scratch space for strings; the possibly grown buffer is returned for reuse.
func appendValue(dst, b []byte, e elem, strBuf []byte) ([]byte, []byte) {
	switch e.kind {
	case 'b':
		if b[0] != 0 {
			return append(dst, "True"...), strBuf
		}
		return append(dst, "False"...), strBuf
	case 'i':
		return strconv.AppendInt(dst, int64(e.load(b).bits), 10), strBuf
	case 'u':
		return strconv.AppendUint(dst, loadUint(b, e.size, e.big), 10), strBuf
	case 'f':
		return appendFloat(dst, loadFloat(b, e.size, e.big), 8*e.size), strBuf
	}
	// 'U': decoded first because quoting depends on the whole string.
	strBuf = appendUTF32(strBuf[:0], b[:e.size], e.big)
	return appendField(dst, strBuf), strBuf
}

// appendShortestE appends f in 'e' form with the shortest digits that read back to the same
// value of the given size. strconv has no float16: for bitSize 16 the shortest of at most 5
// significant digits that rounds back to the same half is searched (numpy's repr of float16
// does the same).
func appendShortestE(dst []byte, f float64, bitSize int) []byte {
	if bitSize != 16 {
		return strconv.AppendFloat(dst, f, 'e', -1, bitSize)
	}
	want := halfFromFloat(f)
	for prec := 0; prec < 5; prec++ {
		n := len(dst)
		dst = strconv.AppendFloat(dst, f, 'e', prec, 64)
		if v, err := strconv.ParseFloat(string(dst[n:]), 64); err == nil && halfFromFloat(v) == want {
			return dst
		}
		dst = dst[:n]
	}
	return strconv.AppendFloat(dst, f, 'e', -1, 32)
}
