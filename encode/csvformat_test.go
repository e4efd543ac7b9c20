package encode

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestAppendFloat(t *testing.T) {
	// Wants are Python's repr(float(x)).
	tests := []struct {
		f    float64
		want string
	}{
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1, "1.0"},
		{2, "2.0"},
		{-2, "-2.0"},
		{0.1, "0.1"},
		{295.5, "295.5"},
		{1.0 / 3, "0.3333333333333333"},
		{0.30000000000000004, "0.30000000000000004"},
		{1e-07, "1e-07"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{0.000123, "0.000123"},
		{1.5e-05, "1.5e-05"},
		{1e15, "1000000000000000.0"},
		{1234567890123456, "1234567890123456.0"},
		{1e16, "1e+16"},
		{1.2345e16, "1.2345e+16"},
		{1e22, "1e+22"},
		{123456789012345678, "1.2345678901234568e+17"},
		{1e-300, "1e-300"},
		{5e-324, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{2.2250738585072014e-308, "2.2250738585072014e-308"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
		{9007199254740993, "9007199254740992.0"},
	}
	for _, tt := range tests {
		if got := string(appendFloat(nil, tt.f, 64)); got != tt.want {
			t.Errorf("appendFloat(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}
	// float32: NumPy's str(np.float32(x)) digits, in the same layout.
	f32 := []struct {
		f    float32
		want string
	}{
		{0.1, "0.1"},
		{1, "1.0"},
		{16777217, "16777216.0"},
		{1e-45, "1e-45"},
		{3.4028235e38, "3.4028235e+38"},
	}
	for _, tt := range f32 {
		if got := string(appendFloat(nil, float64(tt.f), 32)); got != tt.want {
			t.Errorf("appendFloat(float32 %v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

// TestAppendFloatRoundTrip checks on random bit patterns that a correct parser reads the
// text back as the same bits, and that the text always reads as a float (a '.', 'e', "NaN"
// or "inf" in it), never as an integer.
func TestAppendFloatRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) {
			continue
		}
		s := string(appendFloat(nil, f, 64))
		g, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(g) != math.Float64bits(f) {
			t.Fatalf("%v: %q reads back as %v, %v", f, s, g, err)
		}
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			t.Fatalf("%v: %q reads as an integer", f, s)
		}
		f32 := math.Float32frombits(rng.Uint32())
		if f32 != f32 {
			continue
		}
		s = string(appendFloat(nil, float64(f32), 32))
		g, err = strconv.ParseFloat(s, 32)
		if err != nil || math.Float32bits(float32(g)) != math.Float32bits(f32) {
			t.Fatalf("float32 %v: %q reads back as %v, %v", f32, s, g, err)
		}
	}
}

// TestAppendFloatFastPath checks appendFloat's positional shortcut against the general
// layout, around its bounds and on values of every magnitude in between.
func TestAppendFloatFastPath(t *testing.T) {
	vals := []float64{1e-4, math.Nextafter(1e-4, 0), math.Nextafter(1e-4, 1), 1e16, math.Nextafter(1e16, 0),
		9999999999999998, 0.00010000000000000002, 1, 123.456}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		vals = append(vals, math.Pow(10, rng.Float64()*24-6)*(rng.Float64()+0.5))
		vals = append(vals, math.Round(rng.Float64()*1e6)/100) // few digits, often integral
	}
	for _, v := range vals {
		for _, f := range []float64{v, -v} {
			got, want := appendFloat(nil, f, 64), appendFloatLayout(nil, f, 64)
			if string(got) != string(want) {
				t.Fatalf("appendFloat(%v) = %q, general layout %q", f, got, want)
			}
		}
	}
}

func TestAppendField(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"", `""`},
		{" spaced ", " spaced "},
		{"a,b", `"a,b"`},
		{`say "hi"`, `"say ""hi"""`},
		{"two\nlines", "\"two\nlines\""},
		{"cr\r", "\"cr\r\""},
		{"ünï", "ünï"},
		{"name[0]", "name[0]"},
	}
	for _, tt := range tests {
		if got := string(appendField(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("appendField(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
