package jsonl

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

func decodeValue(s string) (any, error) {
	var d decoder
	d.reset([]byte(s), 0)
	v, err := d.value()
	if err == nil && skipWS(d.b, d.i) != len(d.b) {
		err = d.errorf("trailing data")
	}
	return v, err
}

// same is reflect.DeepEqual with NaN equal to NaN.
func same(a, b any) bool {
	if fa, ok := a.(float64); ok {
		fb, ok := b.(float64)
		return ok && (fa == fb && math.Signbit(fa) == math.Signbit(fb) || math.IsNaN(fa) && math.IsNaN(fb))
	}
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !same(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if _, ok := y[k]; !ok || !same(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestDecodeValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{`null`, nil},
		{` true `, true},
		{`false`, false},
		{`0`, int64(0)},
		{`-12`, int64(-12)},
		{`9223372036854775807`, int64(math.MaxInt64)},
		{`-9223372036854775808`, int64(math.MinInt64)},
		{`9223372036854775808`, 9223372036854775808.0},
		{`1.0`, 1.0},
		{`-0.0`, math.Copysign(0, -1)},
		{`1e3`, 1000.0},
		{`2.5E-3`, 0.0025},
		{`1e400`, math.Inf(1)},
		{`NaN`, math.NaN()},
		{`Infinity`, math.Inf(1)},
		{`-Infinity`, math.Inf(-1)},
		{`"a b"`, "a b"},
		{`"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
		{`"\u00e9\u03bc"`, "éμ"},
		{`"\ud83d\ude00"`, "😀"},
		{`"\ud83d x"`, "\ufffd x"},
		{"\"\xff\"", "\ufffd"},
		{`"μ-ü"`, "μ-ü"},
		{`[]`, []any{}},
		{`[1, 2.0, "x", [null]]`, []any{int64(1), 2.0, "x", []any{nil}}},
		{`{}`, map[string]any{}},
		{`{"Ion Ch 1": {"a": [1]}, "b\u0020": NaN}`, map[string]any{"Ion Ch 1": map[string]any{"a": []any{int64(1)}}, "b ": math.NaN()}},
	} {
		got, err := decodeValue(tc.in)
		if err != nil || !same(got, tc.want) {
			t.Errorf("decode %s = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{
		``, `nul`, `tru`, `01`, `1.`, `.5`, `1e`, `-`, `+1`, `-NaN`, `NaNx`, `Inf`, `"abc`, "\"a\nb\"", `"\x"`, `"\u12"`,
		`[1,]`, `[1 2]`, `{"a" 1}`, `{"a": 1,}`, `{1: 2}`, `[`, `{`, strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	} {
		if v, err := decodeValue(in); err == nil {
			t.Errorf("decode %q = %#v, want an error", in, v)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	got, err := DecodeObject([]byte(` {"uid": "u1", "x": [1, 2.0, NaN], "n": {"a": -Infinity}}` + "\n"))
	want := map[string]any{"uid": "u1", "x": []any{int64(1), 2.0, math.NaN()}, "n": map[string]any{"a": math.Inf(-1)}}
	if err != nil || !same(got, want) {
		t.Errorf("DecodeObject = %#v, %v", got, err)
	}
	for _, in := range []string{``, `[]`, `"x"`, `{"a": 1} {}`, `{"a": 1}x`, `{"a": 1`, "{\"a\": 1}\x00"} {
		if m, err := DecodeObject([]byte(in)); err == nil {
			t.Errorf("DecodeObject(%q) = %v, want an error", in, m)
		}
	}
}

func TestPack(t *testing.T) {
	for _, tc := range []struct {
		in    string
		dtype string
		shape []int
	}{
		{`[1, 2, 3]`, "<i8", []int{3}},
		{`[1, 2.5, NaN]`, "<f8", []int{3}},
		{`[[1.0, 2], [3, 4]]`, "<f8", []int{2, 2}},
		{`[[[true]], [[false]]]`, "|b1", []int{2, 1, 1}},
		{`["a", "b\n"]`, "<U0", []int{2}},
		{`[]`, "", nil},
		{`[[], []]`, "", nil},
		{`[[1, 2], [3]]`, "", nil},
		{`[[1, 2], 3]`, "", nil},
		{`[1, "a"]`, "", nil},
		{`[true, 1]`, "", nil},
		{`[null]`, "", nil},
		{`[{"a": 1}]`, "", nil},
	} {
		var d decoder
		d.reset([]byte(tc.in), 0)
		a := d.pack()
		if tc.dtype == "" {
			if a != nil || d.i != 0 {
				t.Errorf("pack %s = %+v at %d, want nil at 0", tc.in, a, d.i)
			}
			continue
		}
		if a == nil || a.Dtype != tc.dtype || !reflect.DeepEqual(a.Shape, tc.shape) || d.i != len(tc.in) {
			t.Errorf("pack %s = %+v, want %s %v", tc.in, a, tc.dtype, tc.shape)
			continue
		}
		want, _ := decodeValue(tc.in)
		if got := a.List(); !numericSame(got, want) {
			t.Errorf("pack %s: List() = %v", tc.in, got)
		}
	}
}

// numericSame is same, with ints equal to floats of the same value (packed arrays are "<f8" when
// any element is a float).
func numericSame(a, b any) bool {
	switch x := a.(type) {
	case int64:
		return numericSame(float64(x), b)
	case float64:
		if y, ok := b.(int64); ok {
			return x == float64(y)
		}
	case *catalog.NDArray:
		return numericSame(x.List(), b)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !numericSame(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return same(a, b)
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 5000)
	text := "a\n\n" + long + "\nbb\n" + long + long + "\nccc\npartial"
	r := newLineReader(strings.NewReader(text), 0, int64(len(text)), 16)
	r.max = 6000
	var got []string
	var offs []int64
	for {
		line, off, err := r.next()
		if err == io.EOF {
			break
		}
		if err == errLongLine {
			line = []byte("LONG")
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(line))
		offs = append(offs, off)
	}
	want := []string{"a", "", long, "bb", "LONG", "ccc"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lines %.20q, want %.20q", got, want)
	}
	for i, off := range offs {
		if want[i] != "LONG" && !strings.HasPrefix(text[off:], want[i]+"\n") {
			t.Errorf("line %d at offset %d", i, off)
		}
	}
	if off := r.offset(); off != int64(len(text)-len("partial")) {
		t.Errorf("end offset %d", off)
	}
	r.seek(offs[3])
	if line, _, err := r.next(); string(line) != "bb" || err != nil {
		t.Errorf("after seek: %q, %v", line, err)
	}
}

// seedLines adds every line of the APS test files to a fuzz corpus.
func seedLines(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/apstools/jsonl/*.jsonl")
	if len(files) == 0 {
		f.Fatal("no seed files")
	}
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			f.Add(bytes.Clone(sc.Bytes()))
		}
		fh.Close()
	}
	f.Add([]byte(`["event_page", {"descriptor": "d", "time": [1, 2.5], "seq_num": [1, 2], "data": {"a": [[1, 2], [3, NaN]], "b": ["x", "y"]}, "timestamps": {"a": [1, null]}, "filled": {"a": [false, "id"]}}]`))
	f.Add([]byte(`["datum", {"datum_id": "r/1", "datum_kwargs": {"point_number": 1}}]`))
}

// FuzzLine feeds arbitrary lines to everything that reads one: the outline of the index, the
// generic decoder (which must round-trip through catalog.AppendJSON) and the event decoder
// (which must agree with catalog.AppendEvent on the generic document).
func FuzzLine(f *testing.F) {
	seedLines(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		info, cerr := classify(line)
		checkAgreement(t, line, info, cerr)
		var d decoder
		kind, doc, raw, err := d.decodeLine(line)
		if err != nil {
			return
		}
		again, err := decodeValue(string(catalog.AppendJSON(nil, doc)))
		if err != nil || !same(again, doc) {
			t.Fatalf("round trip: %v\n got %#v\nwant %#v", err, again, doc)
		}
		if string(raw) != strings.TrimSpace(string(line[info.doc:bytes.LastIndexByte(line, ']')])) {
			t.Fatalf("raw %q", raw)
		}
		if kind != kindEvent || cerr != nil {
			return
		}
		e := newEventDecoder("", nil)
		_, err = e.add(line, kind, info.doc)
		var want catalog.EventPage
		want.Reset("", 0)
		werr := catalog.AppendEvent(&want, doc, nil)
		if werr != nil {
			return // AppendEvent is laxer in places (timestamps), never stricter
		}
		if err != nil {
			t.Fatalf("event decoder: %v; AppendEvent accepted %#v", err, doc)
		}
		_ = e.flush("", 0, func(p *catalog.EventPage) error {
			if p.Time[0] != want.Time[0] && !math.IsNaN(p.Time[0]) || p.SeqNum[0] != want.SeqNum[0] || len(p.Data) != len(want.Data) {
				t.Fatalf("event decoder %v %v %v, AppendEvent %v %v %v", p.Time, p.SeqNum, p.Data, want.Time, want.SeqNum, want.Data)
			}
			for k, c := range want.Data {
				if !numericSame(p.Data[k].At(0), c.At(0)) {
					t.Fatalf("field %q: %#v, want %#v", k, p.Data[k].At(0), c.At(0))
				}
			}
			return nil
		})
	})
}

// checkAgreement checks that the event decoder takes an event line exactly when classify (the
// index) does, whatever fields it decodes, and with as many rows: else the index and the reads
// would disagree on row numbers, or a read would fail on a line the index counted.
func checkAgreement(t *testing.T, line []byte, info lineInfo, cerr error) {
	t.Helper()
	kind, doc, err := header(line)
	if err == nil && cerr == nil && (kind == kindDatum || kind == kindDatumPage) {
		// Datums reads only the lines the index took: each must decode.
		var d decoder
		_, m, _, err := d.decodeLine(line)
		p := &catalog.DatumPage{}
		if err == nil && kind == kindDatum {
			err = catalog.AppendDatum(p, m)
		} else if err == nil {
			err = catalog.AppendDatumPage(p, m)
		}
		if err != nil {
			t.Fatalf("classify took a datum line Datums fails on: %v\n%q", err, line)
		}
	}
	if err != nil || kind != kindEvent && kind != kindEventPage {
		return
	}
	for _, fields := range [][]string{nil, {"x"}, {}} {
		e := newEventDecoder("", fields)
		n, err := e.add(line, kind, doc)
		if (err == nil) != (cerr == nil) || err == nil && n != info.rows {
			t.Fatalf("fields %v: decoder %d rows, %v; classify %d rows, %v\n%q", fields, n, err, info.rows, cerr, line)
		}
	}
}

// TestAgreementSweep replaces each byte of a few event and datum lines by each of a set of bytes
// (or removes it), one at a time, and checks that the decoders and classify agree on every
// result (checkAgreement).
func TestAgreementSweep(t *testing.T) {
	for _, line := range []string{
		`["event", {"descriptor": "d", "time": 1.5, "seq_num": 2, "data": {"x": [[1, 2], [3, 4]], "y": "a\u00e9\"", "z": {"k": [true, null]}}, "timestamps": {"x": 1, "y": null}, "filled": {"x": false}, "uid": "u"}]`,
		`["event_page", {"descriptor": "d", "time": [1, 2.5], "seq_num": [1, 2e0], "data": {"x": [[1], [2]], "y": ["a", "b"]}, "timestamps": {"x": [1, 2], "y": [NaN, -Infinity]}, "filled": {"x": [false, "id"]}}]`,
		`["datum_page", {"resource": "r", "datum_id": ["r/1", "r/2"], "datum_kwargs": {"i": [1, 2], "j": [[1], {"k": null}]}}]`,
		`["datum", {"resource": "r", "datum_id": "r/1", "datum_kwargs": {"i": 1, "j": [true]}}]`,
	} {
		for pos := range len(line) {
			for _, b := range []byte("0-9.eE+\"{}[],:tnNI \\u\x01\xff") {
				m := []byte(line)
				m[pos] = b
				info, cerr := classify(m)
				checkAgreement(t, m, info, cerr)
				// And with the byte removed.
				m = append([]byte(line[:pos]), line[pos+1:]...)
				info, cerr = classify(m)
				checkAgreement(t, m, info, cerr)
			}
		}
	}
}

// TestFastFloat checks the fast path against strconv on literals around its limits.
func TestFastFloat(t *testing.T) {
	lits := []string{"0.0", "1.5", "12345.678", "1748985786.503867", "9007199254740992.0", "9007199254740993.0",
		"1e22", "1e23", "1.5e-22", "3e-23", "0.000001", "123456789012345678901.0", "1.7976931348623157e308",
		"4.9e-324", "0.1", "0.30000000000000004", "1E+5", "2.5e-0", "1700000012.3000002"}
	for i := range 2000 {
		lits = append(lits, strconv.FormatFloat(float64(i)*0.37+1e-3*float64(i%7), 'g', -1, 64), fmt.Sprintf("%.*f", i%17, float64(i)/7))
	}
	for _, lit := range lits {
		want, _ := strconv.ParseFloat(lit, 64)
		got, err := decodeValue(lit)
		if f, ok := got.(float64); !ok {
			if n, isInt := got.(int64); !isInt || float64(n) != want || err != nil {
				t.Errorf("%s: %v, %v", lit, got, err)
			}
		} else if f != want || err != nil {
			t.Errorf("%s = %v, want %v", lit, f, want)
		}
		if neg, _ := decodeValue("-" + lit); neg != -want && !(want == 0 && neg == math.Copysign(0, -1)) {
			if n, isInt := neg.(int64); !isInt || float64(n) != -want {
				t.Errorf("-%s = %v, want %v", lit, neg, -want)
			}
		}
	}
}

// TestPlainWord checks the word-at-a-time string scan against the byte table, on every byte
// value at every position of a word of plain bytes.
func TestPlainWord(t *testing.T) {
	for _, fill := range []byte{'a', 0x7f, 0x80, 0xff, ' '} {
		for pos := range 8 {
			for c := range 256 {
				w := bytes.Repeat([]byte{fill}, 8)
				w[pos] = byte(c)
				want := !stringStop[byte(c)]
				if got := plainWord(binary.LittleEndian.Uint64(w)); got != want {
					t.Fatalf("byte %#x at %d among %#x: plainWord %v, want %v", c, pos, fill, got, want)
				}
			}
		}
	}
}

// BenchmarkClassify checks one event line as the index does, as writeBenchRun writes them.
func BenchmarkClassify(b *testing.B) {
	line := []byte(`["event", {"descriptor": "d1", "uid": "e-00001234-0000-4000-8000-000000000000", "time": 1700000123.4, "seq_num": 1235, "data": {"motor": 12.34, "I0": 13579.678, "Ion Ch 1": 234, "det": 0.0001234, "temp": 295.15}, "timestamps": {"motor": 1700000123.4, "I0": 1700000123.4, "Ion Ch 1": 1700000123.4, "det": 1700000123.4, "temp": 1700000123.4}, "filled": {}}]`)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := classify(line); err != nil {
			b.Fatal(err)
		}
	}
}
