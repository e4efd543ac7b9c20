package jsonl

import (
	"math"
	"strconv"
)

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// num decodes a number. Integer literals that fit in int64 come back as iv with isInt set;
// everything else (fractions, exponents, NaN, infinities, huge integers) as fv.
func (d *decoder) num() (iv int64, fv float64, isInt bool, err error) {
	d.ws()
	b, start := d.b, d.i
	i := start
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	if i < len(b) && (b[i] == 'I' || b[i] == 'N') {
		switch {
		case hasWord(b[i:], "Infinity"):
			d.i = i + len("Infinity")
			if neg {
				return 0, math.Inf(-1), false, nil
			}
			return 0, math.Inf(1), false, nil
		case !neg && hasWord(b[i:], "NaN"):
			d.i = i + len("NaN")
			return 0, math.NaN(), false, nil
		}
		return 0, 0, false, d.errorf("invalid literal")
	}
	digits := i
	if i >= len(b) || !isDigit(b[i]) {
		if i >= len(b) {
			return 0, 0, false, d.errorf("unexpected end of line")
		}
		return 0, 0, false, d.errorf("unexpected %q", b[i])
	}
	if b[i] == '0' {
		i++
	} else {
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	intEnd, frac := i, false
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			d.i = i
			return 0, 0, false, d.errorf("invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		frac = true
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			d.i = i
			return 0, 0, false, d.errorf("invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		frac = true
	}
	d.i = i
	if !frac && intEnd-digits <= 18 { // cannot overflow: no strconv, no allocation
		var v int64
		for _, c := range b[digits:intEnd] {
			v = v*10 + int64(c-'0')
		}
		if neg {
			v = -v
		}
		return v, 0, true, nil
	}
	if !frac {
		if v, err := strconv.ParseInt(string(b[start:i]), 10, 64); err == nil {
			return v, 0, true, nil
		}
	}
	if f, ok := fastFloat(b[digits:i]); ok {
		if neg {
			f = -f
		}
		return 0, f, false, nil
	}
	// Python reads out-of-range literals as infinities, and so does ParseFloat (with ErrRange).
	f, perr := strconv.ParseFloat(string(b[start:i]), 64)
	if perr != nil && !math.IsInf(f, 0) {
		return 0, 0, false, d.errorf("invalid number")
	}
	return 0, f, false, nil
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// fastFloat converts a checked, unsigned decimal literal whose digits form an integer below
// 2^53 and whose exponent is within ±22 (most measured values): then one exact multiplication or
// division by an exact power of ten rounds correctly (Clinger's fast path). ok is false for the
// rest, which strconv.ParseFloat handles.
func fastFloat(s []byte) (f float64, ok bool) {
	var mant uint64
	nd, exp, i := 0, 0, 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		mant, nd = mant*10+uint64(s[i]-'0'), nd+1
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && isDigit(s[i]); i++ {
			mant, nd, exp = mant*10+uint64(s[i]-'0'), nd+1, exp-1
		}
	}
	if nd > 19 { // mant may have overflowed
		return 0, false
	}
	if i < len(s) { // 'e' or 'E'
		i++
		sign := 1
		if s[i] == '+' || s[i] == '-' {
			if s[i] == '-' {
				sign = -1
			}
			i++
		}
		e := 0
		for ; i < len(s); i++ {
			if e < 1000 {
				e = e*10 + int(s[i]-'0')
			}
		}
		exp += sign * e
	}
	if mant > 1<<53 {
		return 0, false
	}
	f = float64(mant)
	switch {
	case exp == 0:
	case exp > 0 && exp < len(pow10):
		f *= pow10[exp]
	case exp < 0 && -exp < len(pow10):
		f /= pow10[-exp]
	default:
		return 0, false
	}
	return f, true
}

func hasWord(b []byte, w string) bool { return len(b) >= len(w) && string(b[:len(w)]) == w }

// float decodes a number as float64 (integers converted).
func (d *decoder) float() (float64, error) {
	iv, fv, isInt, err := d.num()
	if isInt {
		return float64(iv), err
	}
	return fv, err
}
