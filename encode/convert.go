package encode

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Convert converts the elements in src, of dtype st, into dst, of dtype dt. Both hold the
// same number of elements. Either side may be little- or big-endian.
//
// The rules are NumPy's astype with casting="unsafe", except where NumPy's result is
// platform-dependent; those cases are pinned down here so that a file's bytes never depend
// on the machine:
//   - integer to narrower integer, signed to unsigned and back: two's complement wrap-around;
//   - float to integer: truncation toward zero, saturating at the destination's range, NaN -> 0;
//   - to bool: nonzero (NaN is true); from bool: 0 or 1;
//   - float64 to float32 or float16 (and float32 to float16): round to nearest even, straight
//     from the value (no double rounding), overflow to ±Inf, NaN stays NaN;
//   - real to complex: imaginary part 0; complex to real is refused (it would drop data);
//   - <U{m} to <U{n}: zero-padded or truncated to n code points; strings and numbers do not mix.
//
// A same-dtype conversion is a copy.
func Convert(dst []byte, dt Dtype, src []byte, st Dtype) error {
	d, err := dt.elem()
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	s, err := st.elem()
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("convert %s to %s: "+format, append([]any{st.Descr, dt.Descr}, args...)...)
	}
	n, err := elemCount(dst, d, src, s)
	if err != nil {
		return fail("%w", err)
	}
	switch {
	case d == s:
		copy(dst, src)
	case d.kind == 'U' || s.kind == 'U':
		if d.kind != s.kind {
			return fail("%w: strings and numbers do not convert", ErrUnsupported)
		}
		convertUnicode(dst, d, src, s, n)
	case d.kind == s.kind && d.size == s.size:
		swapUnits(dst, src, d.unit()) // same type, other byte order
	case d.kind == 'c':
		convertToComplex(dst, d, src, s, n)
	case s.kind == 'c':
		return fail("%w: complex to real would drop the imaginary part", ErrUnsupported)
	default:
		for i := range n {
			d.store(dst[i*d.size:], s.load(src[i*s.size:]))
		}
	}
	return nil
}

// elemCount checks that dst and src hold whole elements, the same number of them, and returns
// that number. A zero-size element (<U0) carries no count; the other side decides it.
func elemCount(dst []byte, d elem, src []byte, s elem) (int, error) {
	count := func(b []byte, e elem) (int, error) {
		if e.size == 0 {
			if len(b) != 0 {
				return 0, fmt.Errorf("%d bytes for zero-size elements", len(b))
			}
			return -1, nil
		}
		if len(b)%e.size != 0 {
			return 0, fmt.Errorf("%d bytes is not a whole number of %d-byte elements", len(b), e.size)
		}
		return len(b) / e.size, nil
	}
	nd, err := count(dst, d)
	if err != nil {
		return 0, fmt.Errorf("destination: %w", err)
	}
	ns, err := count(src, s)
	if err != nil {
		return 0, fmt.Errorf("source: %w", err)
	}
	switch {
	case nd < 0 && ns < 0:
		return 0, nil
	case nd < 0:
		return ns, nil
	case ns < 0:
		return nd, nil
	case nd != ns:
		return 0, fmt.Errorf("%d elements into %d", ns, nd)
	}
	return nd, nil
}

// PutFloat stores v as one element of dtype dt at the start of dst, converting as Convert
// does. dt must be numeric or bool.
func PutFloat(dst []byte, dt Dtype, v float64) error {
	return put(dst, dt, scalar{kind: 'f', f: v})
}

// PutInt stores v as one element of dtype dt at the start of dst, converting as Convert does.
func PutInt(dst []byte, dt Dtype, v int64) error {
	return put(dst, dt, scalar{kind: 'i', bits: uint64(v)})
}

// PutUint stores v as one element of dtype dt at the start of dst, converting as Convert does.
// It exists for msgpack's uint64, which does not fit PutInt above 2^63-1.
func PutUint(dst []byte, dt Dtype, v uint64) error {
	return put(dst, dt, scalar{kind: 'u', bits: v})
}

// PutBool stores v (as 0 or 1) as one element of dtype dt at the start of dst.
func PutBool(dst []byte, dt Dtype, v bool) error {
	var b uint64
	if v {
		b = 1
	}
	return put(dst, dt, scalar{kind: 'u', bits: b})
}

func put(dst []byte, dt Dtype, v scalar) error {
	d, err := dt.elem()
	if err != nil {
		return fmt.Errorf("put value: %w", err)
	}
	if d.kind == 'U' {
		return fmt.Errorf("put number into %s: %w", dt.Descr, ErrUnsupported)
	}
	if len(dst) < d.size {
		return fmt.Errorf("put value into %s: %d bytes, need %d", dt.Descr, len(dst), d.size)
	}
	if d.kind == 'c' {
		storeFloat(dst, d.size/2, d.big, v.float())
		storeFloat(dst[d.size/2:], d.size/2, d.big, 0)
		return nil
	}
	d.store(dst, v)
	return nil
}

// scalar is one real value in transit between two dtypes. Integers keep all 64 bits so that
// int64 and uint64 convert without a detour through float64.
type scalar struct {
	kind byte   // 'i' (bits is two's complement), 'u' or 'f'
	bits uint64 // the integer, for 'i' and 'u'
	f    float64
}

func (v scalar) float() float64 {
	switch v.kind {
	case 'i':
		return float64(int64(v.bits))
	case 'u':
		return float64(v.bits)
	}
	return v.f
}

func (v scalar) nonzero() bool {
	if v.kind == 'f' {
		return v.f != 0 // NaN is nonzero, as in NumPy
	}
	return v.bits != 0
}

// load decodes one element of real kind ('b', 'i', 'u', 'f') from the start of b.
func (e elem) load(b []byte) scalar {
	switch e.kind {
	case 'b':
		if b[0] != 0 {
			return scalar{kind: 'u', bits: 1}
		}
		return scalar{kind: 'u'}
	case 'f':
		return scalar{kind: 'f', f: loadFloat(b, e.size, e.big)}
	}
	u := loadUint(b, e.size, e.big)
	if e.kind == 'i' {
		shift := uint(64 - 8*e.size)
		return scalar{kind: 'i', bits: uint64(int64(u<<shift) >> shift)}
	}
	return scalar{kind: 'u', bits: u}
}

// store encodes v as one element of real kind ('b', 'i', 'u', 'f') at the start of b.
func (e elem) store(b []byte, v scalar) {
	switch e.kind {
	case 'b':
		b[0] = 0
		if v.nonzero() {
			b[0] = 1
		}
	case 'f':
		storeFloat(b, e.size, e.big, v.float())
	case 'i':
		u := v.bits // wraps: storeUint keeps the low bytes
		if v.kind == 'f' {
			u = uint64(floatToInt(v.f, 8*e.size))
		}
		storeUint(b, e.size, e.big, u)
	case 'u':
		u := v.bits
		if v.kind == 'f' {
			u = floatToUint(v.f, 8*e.size)
		}
		storeUint(b, e.size, e.big, u)
	}
}

// floatToInt truncates f toward zero into a signed integer of the given width, saturating.
// Go leaves out-of-range float-to-int conversions implementation-defined, hence the checks.
func floatToInt(f float64, bits int) int64 {
	if f != f {
		return 0
	}
	lim := math.Ldexp(1, bits-1) // 2^(bits-1), exact in float64
	switch {
	case f >= lim:
		return 1<<(bits-1) - 1
	case f <= -lim:
		return -1 << (bits - 1)
	}
	return int64(f)
}

// floatToUint truncates f toward zero into an unsigned integer of the given width, saturating.
func floatToUint(f float64, bits int) uint64 {
	if f != f || f <= 0 {
		return 0
	}
	if f >= math.Ldexp(1, bits) {
		return math.MaxUint64 >> (64 - bits)
	}
	return uint64(f)
}

// convertToComplex converts n real or complex elements into complex ones.
func convertToComplex(dst []byte, d elem, src []byte, s elem, n int) {
	half := d.size / 2
	for i := range n {
		out := dst[i*d.size:]
		in := src[i*s.size:]
		if s.kind == 'c' {
			sh := s.size / 2
			storeFloat(out, half, d.big, loadFloat(in, sh, s.big))
			storeFloat(out[half:], half, d.big, loadFloat(in[sh:], sh, s.big))
			continue
		}
		storeFloat(out, half, d.big, s.load(in).float())
		storeFloat(out[half:], half, d.big, 0)
	}
}

// convertUnicode copies n strings between widths and byte orders, zero padding or truncating.
func convertUnicode(dst []byte, d elem, src []byte, s elem, n int) {
	clear(dst)
	w := min(d.size, s.size)
	for i := range n {
		out := dst[i*d.size : i*d.size+w]
		in := src[i*s.size : i*s.size+w]
		if d.big == s.big {
			copy(out, in)
		} else {
			swapUnits(out, in, 4)
		}
	}
}

// swapUnits copies src to dst reversing the bytes of every unit-byte group.
func swapUnits(dst, src []byte, unit int) {
	if unit == 1 {
		copy(dst, src)
		return
	}
	for i := 0; i+unit <= len(src); i += unit {
		for j := range unit {
			dst[i+j] = src[i+unit-1-j]
		}
	}
}

// loadUint and storeUint use encoding/binary's concrete byte orders so that the compiler
// emits one load or store (with a BSWAP) per element: values come one at a time from the
// CSV and Put* loops.
func loadUint(b []byte, size int, big bool) uint64 {
	if big {
		switch size {
		case 1:
			return uint64(b[0])
		case 2:
			return uint64(binary.BigEndian.Uint16(b))
		case 4:
			return uint64(binary.BigEndian.Uint32(b))
		}
		return binary.BigEndian.Uint64(b)
	}
	switch size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

func storeUint(b []byte, size int, big bool, u uint64) {
	switch {
	case size == 1:
		b[0] = byte(u)
	case big && size == 2:
		binary.BigEndian.PutUint16(b, uint16(u))
	case big && size == 4:
		binary.BigEndian.PutUint32(b, uint32(u))
	case big:
		binary.BigEndian.PutUint64(b, u)
	case size == 2:
		binary.LittleEndian.PutUint16(b, uint16(u))
	case size == 4:
		binary.LittleEndian.PutUint32(b, uint32(u))
	default:
		binary.LittleEndian.PutUint64(b, u)
	}
}

func loadFloat(b []byte, size int, big bool) float64 {
	if size == 2 {
		return halfToFloat(uint16(loadUint(b, 2, big)))
	}
	if size == 4 {
		return float64(math.Float32frombits(uint32(loadUint(b, 4, big))))
	}
	return math.Float64frombits(loadUint(b, 8, big))
}

func storeFloat(b []byte, size int, big bool, f float64) {
	if size == 2 {
		storeUint(b, 2, big, uint64(halfFromFloat(f)))
		return
	}
	if size == 4 {
		storeUint(b, 4, big, uint64(math.Float32bits(float32(f))))
		return
	}
	storeUint(b, 8, big, math.Float64bits(f))
}

// Float16ToFloat64 returns the value of the IEEE 754 binary16 (numpy float16) bits h,
// exactly, as numpy's float16 -> float64 cast does.
func Float16ToFloat64(h uint16) float64 { return halfToFloat(h) }

// Float64ToFloat16 rounds f to the nearest binary16 (ties to even) and returns its bits, as
// numpy's float64 -> float16 cast does.
func Float64ToFloat16(f float64) uint16 { return halfFromFloat(f) }

// halfToFloat converts IEEE 754 binary16 bits to the float64 of the same value (exact).
func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24) // zero and subnormals
	case 0x1f:
		if frac != 0 {
			// Keep the payload's top bit pattern in a quiet NaN of float64.
			return math.Float64frombits(uint64(h&0x8000)<<48 | 0x7ff8000000000000 | uint64(h&0x3ff)<<42)
		}
		return sign * math.Inf(1)
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}

// halfFromFloat rounds f to the nearest IEEE 754 binary16 (ties to even), as numpy's
// float64 -> float16 cast does: overflow gives ±Inf, tiny values subnormals or ±0.
func halfFromFloat(f float64) uint16 {
	b := math.Float64bits(f)
	sign := uint16(b>>48) & 0x8000
	exp := int(b>>52) & 0x7ff
	mant := b & (1<<52 - 1)
	if exp == 0x7ff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>42) // NaN: quiet, payload's top bits
		}
		return sign | 0x7c00
	}
	e := exp - 1023 // unbiased
	if e > 15 {
		return sign | 0x7c00 // at least 2^16: over the largest half (65504) by far
	}
	var shift int // bits of the 53-bit significand dropped
	var base uint16
	sig := mant | 1<<52
	if exp == 0 {
		sig = mant // float64 subnormals are far below half's smallest subnormal
		e = -1022
	}
	if e >= -14 {
		shift = 42 // 52 fraction bits -> 10
		base = uint16(e+15) << 10
		sig &^= 1 << 52 // the implicit bit is in the exponent field
	} else {
		// Subnormal half: value = m * 2^-24, m = sig * 2^(e-52+24).
		shift = 52 - 24 - e // 28 - e
		if shift > 63 {
			return sign
		}
	}
	q := sig >> uint(shift)
	rem := sig & (1<<uint(shift) - 1)
	halfway := uint64(1) << uint(shift-1)
	if rem > halfway || (rem == halfway && q&1 == 1) {
		q++
	}
	// A carry out of the fraction moves into the exponent field, which is right (1.111..
	// rounds to 2.0, the largest subnormal rounds to the smallest normal, 65520 rounds to Inf).
	return sign | (base + uint16(q))
}
