package encode

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestConvert(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name   string
		st     string
		src    []byte
		dt     string
		want   []byte
		errIs  error // nil: want success unless errAny
		errAny bool
	}{
		{"same dtype copies", "<f8", f64s(1.5, nan), "<f8", f64s(1.5, nan), nil, false},
		{"f8 to f4", "<f8", f64s(0.1, 1e300, -1e300), "<f4", f32s(0.1, float32(inf), float32(-inf)), nil, false},
		{"f4 to f8", "<f4", f32s(0.1), "<f8", f64s(float64(float32(0.1))), nil, false},
		{"f8 to i4 truncates", "<f8", f64s(1.9, -1.9, 0.5), "<i4", i32s(1, -1, 0), nil, false},
		{"f8 to i4 saturates", "<f8", f64s(1e10, -1e10, nan, inf, -inf), "<i4",
			i32s(math.MaxInt32, math.MinInt32, 0, math.MaxInt32, math.MinInt32), nil, false},
		{"f8 to i8 edges", "<f8", f64s(9.223372036854775807e18, -9.223372036854775808e18, 9.2233720368547748e18), "<i8",
			i64s(math.MaxInt64, math.MinInt64, 9223372036854774784), nil, false},
		{"f8 to u8", "<f8", f64s(-1, 1.8446744073709552e19, 1.8446744073709550e19, -0.5), "<u8",
			u64s(0, math.MaxUint64, 18446744073709549568, 0), nil, false},
		{"f8 to u1", "<f8", f64s(255.9, 256, -3), "|u1", []byte{255, 255, 0}, nil, false},
		{"i8 to i2 wraps", "<i8", i64s(70000, -1, -32769), "<i2", i16s(4464, -1, 32767), nil, false},
		{"i8 to u2 wraps", "<i8", i64s(-1, 65536), "<u2", u16s(65535, 0), nil, false},
		{"u8 to i8 wraps", "<u8", u64s(math.MaxUint64), "<i8", i64s(-1), nil, false},
		{"i1 sign-extends", "|i1", []byte{0xff, 0x80}, "<i8", i64s(-1, -128), nil, false},
		{"u1 does not", "|u1", []byte{0xff}, "<i8", i64s(255), nil, false},
		{"i8 to f8", "<i8", i64s(math.MinInt64, 1<<53+1), "<f8", f64s(-9.223372036854775808e18, 1<<53), nil, false},
		{"u8 to f8", "<u8", u64s(math.MaxUint64), "<f8", f64s(1.8446744073709552e19), nil, false},
		{"i8 to u8 keeps bits", "<i8", i64s(math.MinInt64), "<u8", u64s(1 << 63), nil, false},
		{"u8 to i8 exact", "<u8", u64s(1<<63 - 1), "<i8", i64s(math.MaxInt64), nil, false},
		{"to bool", "<f8", f64s(0, math.Copysign(0, -1), 2, nan), "|b1", []byte{0, 0, 1, 1}, nil, false},
		{"bool bytes", "|b1", []byte{0, 1, 7}, "<i4", i32s(0, 1, 1), nil, false},
		{"bool to f8", "|b1", []byte{1, 0}, "<f8", f64s(1, 0), nil, false},
		{"big-endian f8", ">f8", beF64s(1.5, -2), "<f8", f64s(1.5, -2), nil, false},
		{"big-endian f8 to i8", ">f8", beF64s(-3.5), "<i8", i64s(-3), nil, false},
		{"big-endian i2", ">i2", []byte{0xff, 0xfe, 0x01, 0x00}, "<i2", i16s(-2, 256), nil, false},
		{"to big-endian", "<i2", i16s(258), ">i2", []byte{1, 2}, nil, false},
		{"f8 to c16", "<f8", f64s(1.5), "<c16", f64s(1.5, 0), nil, false},
		{"i4 to c8", "<i4", i32s(-2), "<c8", f32s(-2, 0), nil, false},
		{"c8 to c16", "<c8", f32s(1.5, -2.5), "<c16", f64s(1.5, -2.5), nil, false},
		{"c16 to f8", "<c16", f64s(1, 2), "<f8", make([]byte, 8), ErrUnsupported, false},
		{"U widen", "<U2", utf32("ab", 2), "<U4", utf32("ab", 4), nil, false},
		{"U narrow truncates", "<U3", utf32("abc", 3), "<U1", utf32("a", 1), nil, false},
		{"U big-endian", ">U1", []byte{0, 0, 0, 'x'}, "<U2", utf32("x", 2), nil, false},
		{"U0 to U2", "<U0", nil, "<U2", make([]byte, 16), nil, false},
		{"U to number", "<U2", utf32("1", 2), "<f8", make([]byte, 8), ErrUnsupported, false},
		{"number to U", "<f8", f64s(1), "<U2", make([]byte, 8), ErrUnsupported, false},
		{"count mismatch", "<f8", f64s(1, 2), "<f4", f32s(1), nil, true},
		{"partial element", "<f8", make([]byte, 12), "<f8", make([]byte, 12), nil, true},
		{"bad descr", "<f3", nil, "<f8", nil, ErrUnsupported, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := Dtype{Descr: tt.st}
			if e, err := parseDescr(tt.st); err == nil {
				st = e.dtype()
				st.Descr = tt.st
			}
			dt := mustDtype(t, tt.dt)
			dst := bytes.Repeat([]byte{0xAA}, len(tt.want)) // garbage: Convert must overwrite
			err := Convert(dst, dt, tt.src, st)
			switch {
			case tt.errIs != nil || tt.errAny:
				if err == nil || (tt.errIs != nil && !errors.Is(err, tt.errIs)) {
					t.Fatalf("err = %v, want %v", err, tt.errIs)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(dst, tt.want):
				t.Errorf("got % x\nwant % x", dst, tt.want)
			}
		})
	}
}

func TestPut(t *testing.T) {
	tests := []struct {
		name string
		put  func([]byte, Dtype) error
		dt   string
		want []byte
	}{
		{"float f8", func(b []byte, d Dtype) error { return PutFloat(b, d, 295.5) }, "<f8", f64s(295.5)},
		{"float f4", func(b []byte, d Dtype) error { return PutFloat(b, d, 0.1) }, "<f4", f32s(0.1)},
		{"float i8", func(b []byte, d Dtype) error { return PutFloat(b, d, -7.9) }, "<i8", i64s(-7)},
		{"float >f8", func(b []byte, d Dtype) error { return PutFloat(b, d, 1.5) }, ">f8", beF64s(1.5)},
		{"float c16", func(b []byte, d Dtype) error { return PutFloat(b, d, 2) }, "<c16", f64s(2, 0)},
		{"int i8", func(b []byte, d Dtype) error { return PutInt(b, d, math.MinInt64) }, "<i8", i64s(math.MinInt64)},
		{"int f8", func(b []byte, d Dtype) error { return PutInt(b, d, 1<<53+1) }, "<f8", f64s(1 << 53)},
		{"int u2", func(b []byte, d Dtype) error { return PutInt(b, d, 65537) }, "<u2", u16s(1)},
		{"int b1", func(b []byte, d Dtype) error { return PutInt(b, d, -5) }, "|b1", []byte{1}},
		{"uint u8", func(b []byte, d Dtype) error { return PutUint(b, d, math.MaxUint64) }, "<u8", u64s(math.MaxUint64)},
		{"uint i8", func(b []byte, d Dtype) error { return PutUint(b, d, math.MaxUint64) }, "<i8", i64s(-1)},
		{"bool b1", func(b []byte, d Dtype) error { return PutBool(b, d, true) }, "|b1", []byte{1}},
		{"bool f8", func(b []byte, d Dtype) error { return PutBool(b, d, true) }, "<f8", f64s(1)},
		{"bool i1", func(b []byte, d Dtype) error { return PutBool(b, d, false) }, "|i1", []byte{0}},
	}
	for _, tt := range tests {
		dst := bytes.Repeat([]byte{0xAA}, len(tt.want))
		if err := tt.put(dst, mustDtype(t, tt.dt)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		} else if !bytes.Equal(dst, tt.want) {
			t.Errorf("%s: got % x, want % x", tt.name, dst, tt.want)
		}
	}
	if err := PutFloat(make([]byte, 8), mustDtype(t, "<U2"), 1); !errors.Is(err, ErrUnsupported) {
		t.Errorf("PutFloat into <U2: %v, want ErrUnsupported", err)
	}
	if err := PutFloat(make([]byte, 4), mustDtype(t, "<f8"), 1); err == nil {
		t.Error("PutFloat into a short buffer succeeded")
	}
}

func TestPutUnicode(t *testing.T) {
	tests := []struct {
		s     string
		width int
		want  []byte
	}{
		{"", 0, nil},
		{"", 2, u32s(0, 0)},
		{"ab", 3, u32s('a', 'b', 0)},
		{"日本", 2, u32s(0x65e5, 0x672c)},
		{"😀x", 2, u32s(0x1f600, 'x')},
		{"abcdef", 2, u32s('a', 'b')},         // truncated
		{"a\xffb", 3, u32s('a', 0xfffd, 'b')}, // invalid byte: U+FFFD
	}
	for _, tt := range tests {
		dst := bytes.Repeat([]byte{0xAA}, 4*tt.width+4)
		PutUnicode(dst, tt.s, tt.width)
		if !bytes.Equal(dst[:4*tt.width], tt.want) || !bytes.Equal(dst[4*tt.width:], []byte{0xAA, 0xAA, 0xAA, 0xAA}) {
			t.Errorf("PutUnicode(%q, %d) = % x, want % x", tt.s, tt.width, dst, tt.want)
		}
		if tt.width >= UnicodeLen(tt.s) {
			got := string(appendUTF32(nil, tt.want, false))
			if want := string([]rune(tt.s)); got != want {
				t.Errorf("appendUTF32(PutUnicode(%q)) = %q", tt.s, got)
			}
		}
	}
	for s, n := range map[string]int{"": 0, "abc": 3, "日本語": 3, "😀": 1, "a\xff\xfe": 3} {
		if got := UnicodeLen(s); got != n {
			t.Errorf("UnicodeLen(%q) = %d, want %d", s, got, n)
		}
	}
	// NumPy drops trailing NULs on read; embedded ones stay. Invalid code points: U+FFFD.
	if got := string(appendUTF32(nil, u32s('a', 0, 'b', 0, 0), false)); got != "a\x00b" {
		t.Errorf("trailing NULs: %q", got)
	}
	if got := string(appendUTF32(nil, u32s(0xd800, 0x110000), false)); got != "\ufffd\ufffd" {
		t.Errorf("invalid code points: %q", got)
	}
}
