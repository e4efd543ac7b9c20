package encode

import (
	"fmt"
	"math"
	"strconv"
)

// Element access for typed writers (the Parquet tables of package table): what one element of
// an Array row holds, decoded from its raw bytes.

// Kind is the kind of d's elements: 'b' bool, 'i' signed, 'u' unsigned, 'f' float,
// 'c' complex, 'U' unicode; 0 for a dtype this package does not know.
func (d Dtype) Kind() byte {
	e, err := d.elem()
	if err != nil {
		return 0
	}
	return e.kind
}

// Value is one element decoded: the field its kind uses is set.
type Value struct {
	Kind  byte // as Dtype.Kind
	Bool  bool
	Int   int64   // 'i'
	Uint  uint64  // 'u'
	Float float64 // 'f' (float16 and float32 exactly)
	Str   []byte  // 'U': UTF-8, trailing NULs dropped as NumPy reads it; reused by the next call
}

// Decoder decodes elements of one dtype.
type Decoder struct {
	e   elem
	str []byte
}

// NewDecoder returns a Decoder of dt's elements; complex and unknown dtypes are refused with
// an error wrapping ErrUnsupported.
func NewDecoder(dt Dtype) (*Decoder, error) {
	e, err := dt.elem()
	if err != nil {
		return nil, err
	}
	if e.kind == 'c' {
		return nil, fmt.Errorf("%w: complex dtype %s", ErrUnsupported, dt.Descr)
	}
	return &Decoder{e: e}, nil
}

// Decode decodes the element at the start of b, which holds at least one element.
func (d *Decoder) Decode(b []byte) Value {
	e := d.e
	switch e.kind {
	case 'b':
		return Value{Kind: 'b', Bool: b[0] != 0}
	case 'f':
		return Value{Kind: 'f', Float: loadFloat(b, e.size, e.big)}
	case 'U':
		d.str = appendUTF32(d.str[:0], b[:e.size], e.big)
		return Value{Kind: 'U', Str: d.str}
	case 'u':
		return Value{Kind: 'u', Uint: loadUint(b, e.size, e.big)}
	}
	return Value{Kind: 'i', Int: int64(e.load(b).bits)}
}

// Event times become date-times as Python's datetime.fromtimestamp(t, timezone.utc) makes
// them, so that a table's ISO 8601 column and its Parquet timestamps agree with what a
// databroker user computes.

// ISOTimeLen is the length of every text AppendISOTime writes.
const ISOTimeLen = len("2006-01-02T15:04:05.000000+00:00")

// minMicros and maxMicros bound the times Python's datetime can hold: years 1 to 9999.
const (
	minMicros = -62135596800 * 1e6
	maxMicros = 253402300800*1e6 - 1
)

// UnixMicros converts seconds since the epoch into whole microseconds as CPython's
// datetime.fromtimestamp rounds them: the fraction of a second (math.Modf) times 1e6,
// rounded half to even. ok is false for NaN, the infinities and times outside years 1-9999.
func UnixMicros(t float64) (us int64, ok bool) {
	if math.IsNaN(t) || math.IsInf(t, 0) || t < -62135596801 || t > 253402300801 {
		return 0, false
	}
	sec, frac := math.Modf(t)
	f := math.RoundToEven(frac * 1e6)
	us = int64(sec)*1_000_000 + int64(f)
	if us < minMicros || us > maxMicros {
		return 0, false
	}
	return us, true
}

// AppendISOTime appends the UTC date-time of us microseconds since the epoch as ISO 8601 with
// microseconds and offset, as Python's isoformat(timespec="microseconds") writes it:
// "2024-01-02T03:04:05.123456+00:00". us must be in UnixMicros' range.
func AppendISOTime(dst []byte, us int64) []byte {
	sec := us / 1_000_000
	frac := us % 1_000_000
	if frac < 0 {
		sec--
		frac += 1_000_000
	}
	days := sec / 86400
	rem := sec % 86400
	if rem < 0 {
		days--
		rem += 86400
	}
	y, m, d := civil(days)
	dst = pad(dst, y, 4)
	dst = append(dst, '-')
	dst = pad(dst, m, 2)
	dst = append(dst, '-')
	dst = pad(dst, d, 2)
	dst = append(dst, 'T')
	dst = pad(dst, rem/3600, 2)
	dst = append(dst, ':')
	dst = pad(dst, rem/60%60, 2)
	dst = append(dst, ':')
	dst = pad(dst, rem%60, 2)
	dst = append(dst, '.')
	dst = pad(dst, frac, 6)
	return append(dst, "+00:00"...)
}

// civil converts days since 1970-01-01 into a proleptic Gregorian date (Howard Hinnant's
// days_from_civil inverse).
func civil(days int64) (y, m, d int64) {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func pad(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}
