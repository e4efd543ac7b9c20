package encode

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestISOTime(t *testing.T) {
	tests := []struct {
		t    float64
		want string // "" when UnixMicros refuses it
	}{
		{0, "1970-01-01T00:00:00.000000+00:00"},
		{1704164645.123456, "2024-01-02T03:04:05.123456+00:00"},
		{951782400, "2000-02-29T00:00:00.000000+00:00"},
		{-1, "1969-12-31T23:59:59.000000+00:00"},
		{-0.5, "1969-12-31T23:59:59.500000+00:00"},
		{0.0000005, "1970-01-01T00:00:00.000000+00:00"}, // half to even
		{0.0000015, "1970-01-01T00:00:00.000002+00:00"},
		{1.9999999, "1970-01-01T00:00:02.000000+00:00"}, // carries into the second
		{-62135596800, "0001-01-01T00:00:00.000000+00:00"},
		{253402300799.5, "9999-12-31T23:59:59.500000+00:00"},
		{253402300799.999999, ""}, // rounds to year 10000, which Python refuses too
		{253402300800, ""},
		{-62135596801, ""},
		{math.NaN(), ""},
		{math.Inf(1), ""},
		{math.Inf(-1), ""},
	}
	for _, tc := range tests {
		us, ok := UnixMicros(tc.t)
		got := ""
		if ok {
			got = string(AppendISOTime(nil, us))
		}
		if got != tc.want {
			t.Errorf("ISO time of %v = %q, want %q", tc.t, got, tc.want)
		}
		if ok && len(got) != ISOTimeLen {
			t.Errorf("ISO time of %v has %d bytes, want %d", tc.t, len(got), ISOTimeLen)
		}
	}
}

// TestISOTimePython compares UnixMicros and AppendISOTime with Python's
// datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds") over random
// times of every era and fractions at the rounding edges.
func TestISOTimePython(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	times := []float64{0, -1e-7, 1e-7, 0.5e-6, 1.5e-6, 2.5e-6, -0.5e-6, 1700000000.0000005, 1700000000.9999995}
	for len(times) < 2000 {
		var f float64
		switch len(times) % 3 {
		case 0:
			f = rng.Float64()*(253402300799-(-62135596800)) - 62135596800
		case 1:
			f = 1.6e9 + rng.Float64()*1e8
		default:
			f = float64(rng.Int64N(4e9)-1e9) + float64(rng.IntN(2_000_000))/2e6 // half microseconds
		}
		times = append(times, f)
	}
	var in []string
	for _, f := range times {
		in = append(in, strconv.FormatFloat(f, 'g', -1, 64))
	}
	raw, _ := json.Marshal(in)
	out := runPython(t, `
import json, sys
from datetime import datetime, timezone
for s in json.loads(sys.argv[1]):
    print(datetime.fromtimestamp(float(s), timezone.utc).isoformat(timespec="microseconds"))
`, string(raw))
	want := strings.Fields(out)
	if len(want) != len(times) {
		t.Fatalf("python printed %d lines for %d times", len(want), len(times))
	}
	bad := 0
	for i, f := range times {
		us, ok := UnixMicros(f)
		if !ok {
			t.Errorf("UnixMicros(%v) refused a time Python takes", f)
			continue
		}
		if got := string(AppendISOTime(nil, us)); got != want[i] && bad < 10 {
			bad++
			t.Errorf("ISO time of %s = %s, Python says %s", in[i], got, want[i])
		}
	}
}

func TestDecoder(t *testing.T) {
	check := func(descr string, b []byte, want Value) {
		t.Helper()
		d, err := NewDecoder(mustDtype(t, descr))
		if err != nil {
			t.Fatal(err)
		}
		got := d.Decode(b)
		if got.Kind != want.Kind || got.Bool != want.Bool || got.Int != want.Int || got.Uint != want.Uint ||
			math.Float64bits(got.Float) != math.Float64bits(want.Float) || string(got.Str) != string(want.Str) {
			t.Errorf("%s: Decode = %+v, want %+v", descr, got, want)
		}
	}
	check("<f8", f64s(math.Copysign(0, -1)), Value{Kind: 'f', Float: math.Copysign(0, -1)})
	check(">f8", beF64s(1.5), Value{Kind: 'f', Float: 1.5})
	check("<f4", f32s(0.1), Value{Kind: 'f', Float: float64(float32(0.1))})
	check("<f2", []byte{0x00, 0x3c}, Value{Kind: 'f', Float: 1})
	check("<i8", i64s(math.MinInt64), Value{Kind: 'i', Int: math.MinInt64})
	check("<i2", i16s(-2), Value{Kind: 'i', Int: -2})
	check("|i1", []byte{0xff}, Value{Kind: 'i', Int: -1})
	check("<u8", u64s(math.MaxUint64), Value{Kind: 'u', Uint: math.MaxUint64})
	check("<u2", u16s(65535), Value{Kind: 'u', Uint: 65535})
	check("|b1", []byte{1}, Value{Kind: 'b', Bool: true})
	check("<U3", utf32("é", 3), Value{Kind: 'U', Str: []byte("é")})
	if _, err := NewDecoder(mustDtype(t, "<c16")); err == nil {
		t.Error("NewDecoder(<c16) succeeded, want ErrUnsupported")
	}
	if k := mustDtype(t, "<U4").Kind(); k != 'U' {
		t.Errorf("Kind of <U4 = %c", k)
	}
}
