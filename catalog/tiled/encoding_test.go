package tiled

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"
)

// Bombs: a tiny body that declares or inflates to more than the limit is refused before the
// memory is spent.
func TestBombs(t *testing.T) {
	lz4 := binary.LittleEndian.AppendUint32(nil, 1<<31)
	lz4 = append(lz4, 0x1f, 0, 1, 0, 255, 255, 255, 255)
	if _, err := decodeBody("lz4", lz4, 1<<20); !errors.Is(err, errTooBig) {
		t.Errorf("lz4 declaring 2 GiB: %v", err)
	}
	blosc := make([]byte, 16)
	blosc[0], blosc[2], blosc[3] = 2, 0x21, 8
	binary.LittleEndian.PutUint32(blosc[4:], 1<<31)
	binary.LittleEndian.PutUint32(blosc[8:], 1<<16)
	binary.LittleEndian.PutUint32(blosc[12:], 16)
	if _, err := decodeBody("blosc", blosc, 1<<20); !errors.Is(err, errTooBig) {
		t.Errorf("blosc declaring 2 GiB: %v", err)
	}
	if _, err := decodeBody("br", []byte("x"), 10); err == nil {
		t.Error("unknown encoding accepted")
	}
}

// TestLZ4Block: literals, an overlapping match (run-length) and a long match, built by hand
// from the block format's definition.
func TestLZ4Block(t *testing.T) {
	// "abc" then a match of offset 3, length 4+5 = 9: "abcabcabcabc", then literal "Z".
	src := []byte{0x35, 'a', 'b', 'c', 3, 0, 0x10, 'Z'}
	dst := make([]byte, 13)
	if err := lz4Block(dst, src); err != nil || string(dst) != "abcabcabcabcZ" {
		t.Errorf("lz4Block = %q, %v", dst, err)
	}
	for _, bad := range [][]byte{{0x35, 'a'}, {0x35, 'a', 'b', 'c', 9, 0}, {0x15, 'a', 0, 0}} {
		if err := lz4Block(make([]byte, 13), bad); err == nil {
			t.Errorf("lz4Block(%v): no error", bad)
		}
	}
}

func TestParseJSON(t *testing.T) {
	v, err := parseJSON([]byte(`{"a": [1, 2.0, -3e2, NaN, Infinity, -Infinity, true, null, "x\u00e9\n"], "b": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	l := v.(map[string]any)["a"].([]any)
	if l[0] != int64(1) || l[1] != 2.0 || l[2] != -300.0 || !math.IsNaN(l[3].(float64)) || !math.IsInf(l[4].(float64), 1) || !math.IsInf(l[5].(float64), -1) || l[6] != true || l[7] != nil || l[8] != "xé\n" {
		t.Errorf("parseJSON = %#v", l)
	}
	if !reflect.DeepEqual(v.(map[string]any)["b"], map[string]any{}) {
		t.Errorf("b = %v", v)
	}
	if v, _ := parseJSON([]byte("123456789012345678901234567890")); v != 1.2345678901234568e29 {
		t.Errorf("big integer = %v, want a float", v)
	}
	for _, bad := range []string{"", "[", "{\"a\" 1}", "nul", "[1,]", "\"abc", "1 2", "[" + string(bytes.Repeat([]byte("["), 600))} {
		if _, err := parseJSON([]byte(bad)); err == nil {
			t.Errorf("parseJSON(%q): no error", bad)
		}
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		if fx.BodyJSON != nil && len(fx.BodyJSON) < 1<<16 {
			f.Add([]byte(fx.BodyJSON))
		}
	}
	f.Add([]byte(`[NaN, -Infinity, "\ud83d\ude00"]`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseJSON(b) })
}

// FuzzDecode: no input makes a codec panic or return more than its limit.
func FuzzDecode(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		if enc := fx.header("content-encoding"); enc != "" {
			f.Add(enc, fx.body())
		}
	}
	f.Fuzz(func(t *testing.T, enc string, b []byte) {
		out, err := decodeBody(enc, b, 1<<16)
		if err == nil && len(out) > 1<<16 {
			t.Errorf("%s: %d bytes past the limit", enc, len(out))
		}
	})
}

func FuzzParseDocuments(f *testing.F) {
	for _, name := range []string{"172", "118"} {
		f.Add(loadFixtures(f)[name].body())
	}
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseDocuments(b) })
}
