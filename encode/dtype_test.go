package encode

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDtype(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical descr, "" for an error
		size int
	}{
		{"<f8", "<f8", 8},
		{"<f4", "<f4", 4},
		{">f8", ">f8", 8},
		{"=f8", "<f8", 8},
		{"f8", "<f8", 8},
		{"|f8", "<f8", 8},
		{"<i1", "|i1", 1},
		{"<i2", "<i2", 2},
		{"<i4", "<i4", 4},
		{"<i8", "<i8", 8},
		{">i8", ">i8", 8},
		{"<u1", "|u1", 1},
		{"<u2", "<u2", 2},
		{"<u4", "<u4", 4},
		{"<u8", "<u8", 8},
		{"|b1", "|b1", 1},
		{">b1", "|b1", 1},
		{"?", "|b1", 1},
		{"|u1", "|u1", 1},
		{"|i1", "|i1", 1},
		{"<U0", "<U0", 0},
		{"<U12", "<U12", 48},
		{">U3", ">U3", 12},
		{"U7", "<U7", 28},
		{"<c8", "<c8", 8},
		{"<c16", "<c16", 16},
		{"<f2", "<f2", 2},
		{">f2", ">f2", 2},
		{"<f16", "", 0},
		{"<i3", "", 0},
		{"<b2", "", 0},
		{"|S5", "", 0},
		{"<M8[ns]", "", 0},
		{"", "", 0},
		{"<", "", 0},
		{"<f", "", 0},
		{"<f08", "", 0},
		{"<f+8", "", 0},
		{"<U-1", "", 0},
		{"<U999999999", "", 0},
		{"float64", "", 0},
	}
	for _, tt := range tests {
		dt, err := ParseDtype(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseDtype(%q) = %v, want an error", tt.in, dt)
			} else if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("ParseDtype(%q) error %q: want ErrUnsupported naming the descr", tt.in, err)
			}
			continue
		}
		if err != nil || dt != (Dtype{Descr: tt.want, Size: tt.size}) {
			t.Errorf("ParseDtype(%q) = %v, %v; want {%s %d}", tt.in, dt, err, tt.want, tt.size)
		}
	}
}

func TestUnicode(t *testing.T) {
	if got := Unicode(5); got != (Dtype{"<U5", 20}) {
		t.Errorf("Unicode(5) = %v", got)
	}
	if got := Unicode(0); got != (Dtype{"<U0", 0}) {
		t.Errorf("Unicode(0) = %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Unicode(-1) did not panic")
		}
	}()
	Unicode(-1)
}

func TestDtypeSizeMismatch(t *testing.T) {
	// A hand-written literal with a wrong Size must not be trusted to slice buffers.
	err := PutFloat(make([]byte, 8), Dtype{Descr: "<f8", Size: 4}, 1)
	if err == nil {
		t.Fatal("PutFloat with a wrong Size succeeded")
	}
}
