package msgpack

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// binMap is a map written with bin keys in this order, as msgpack-numpy writes its maps.
type binMap []struct {
	k string
	v any
}

// enc encodes a test value: what the Writer takes, plus binMap and rawBin (a bin value).
func enc(t testing.TB, v any) []byte {
	t.Helper()
	switch x := v.(type) {
	case binMap:
		b := appendMapHeader(nil, len(x))
		for _, e := range x {
			b = append(appendBin(b, []byte(e.k)), enc(t, e.v)...)
		}
		return b
	case rawBin:
		return appendBin(nil, x)
	case strMap:
		b := appendMapHeader(nil, len(x))
		for _, e := range x {
			b = append(appendStr(b, e.k), enc(t, e.v)...)
		}
		return b
	case []any:
		b := appendArrayHeader(nil, len(x))
		for _, e := range x {
			b = append(b, enc(t, e)...)
		}
		return b
	}
	b, err := NewWriter(nil).appendValue(nil, v, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type rawBin []byte

// strMap is a map written with str keys in this order (the Writer sorts keys).
type strMap []struct {
	k string
	v any
}

func nd(typ string, shape []any, data []byte) binMap {
	return binMap{{"nd", true}, {"type", typ}, {"kind", rawBin{}}, {"shape", shape}, {"data", rawBin(data)}}
}

func f64s(fs ...float64) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return b
}

func TestNumpyValues(t *testing.T) {
	ucs4 := []byte{'a', 0, 0, 0, 'b', 0, 0, 0, 0xe9, 0, 0, 0, 'c', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	strKeys := m{"nd": true, "type": "<i2", "kind": "", "shape": []any{int64(1)}, "data": []byte{0xff, 0xff}}
	cases := []struct {
		name string
		in   any
		want any
	}{
		{"float array", nd("<f8", []any{int64(2)}, f64s(1.5, -2)), &catalog.NDArray{Dtype: "<f8", Shape: []int{2}, Data: f64s(1.5, -2)}},
		{"native order", nd("=u2", []any{int64(1), int64(1)}, []byte{7, 0}), &catalog.NDArray{Dtype: "<u2", Shape: []int{1, 1}, Data: []byte{7, 0}}},
		{"big-endian", nd(">i4", []any{}, []byte{0, 0, 0, 9}), &catalog.NDArray{Dtype: ">i4", Shape: []int{}, Data: []byte{0, 0, 0, 9}}},
		{"unicode array", nd("<U3", []any{int64(2)}, ucs4), &catalog.NDArray{Dtype: "<U0", Shape: []int{2}, Strings: []string{"abé", "c"}}},
		{"bytes array", nd("|S2", []any{int64(2)}, []byte("ab"+"c\x00")), &catalog.NDArray{Dtype: "<U0", Shape: []int{2}, Strings: []string{"ab", "c"}}},
		{"scalar float", binMap{{"nd", false}, {"type", "<f8"}, {"data", rawBin(f64s(0.25))}}, 0.25},
		{"scalar int", binMap{{"nd", false}, {"type", "<i4"}, {"data", rawBin{0xfe, 0xff, 0xff, 0xff}}}, int64(-2)},
		{"scalar bool", binMap{{"nd", false}, {"type", "|b1"}, {"data", rawBin{1}}}, true},
		{"scalar half", binMap{{"nd", false}, {"type", "<f2"}, {"data", rawBin{0x00, 0x3e}}}, 1.5},
		{"scalar huge uint", binMap{{"nd", false}, {"type", "<u8"}, {"data", rawBin{0, 0, 0, 0, 0, 0, 0, 0x80}}}, float64(1 << 63)},
		{"str keys", strKeys, &catalog.NDArray{Dtype: "<i2", Shape: []int{1}, Data: []byte{0xff, 0xff}}},
		{"complex stays a map", nd("<c16", []any{int64(1)}, make([]byte, 16)), nil},
		{"short data stays a map", nd("<f8", []any{int64(3)}, f64s(1)), nil},
		{"huge shape stays a map", nd("<f8", []any{int64(1 << 30), int64(1 << 30), int64(1 << 30)}, f64s(1)), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := enc(t, tc.in)
			v, end, err := value(b, 0, false, 0)
			if err != nil || end != len(b) {
				t.Fatalf("value: end %d of %d, %v", end, len(b), err)
			}
			if tc.want == nil {
				if _, ok := v.(map[string]any); !ok {
					t.Errorf("got %#v, want a plain map", v)
				}
				return
			}
			if !reflect.DeepEqual(v, tc.want) {
				t.Errorf("got %#v, want %#v", v, tc.want)
			}
		})
	}
}

func TestPackList(t *testing.T) {
	i8 := func(is ...int64) []byte {
		var b []byte
		for _, i := range is {
			b = binary.LittleEndian.AppendUint64(b, uint64(i))
		}
		return b
	}
	cases := []struct {
		in   []any
		want any
	}{
		{[]any{[]any{int64(1), int64(2)}, []any{int64(3), int64(-4)}}, &catalog.NDArray{Dtype: "<i8", Shape: []int{2, 2}, Data: i8(1, 2, 3, -4)}},
		{[]any{int64(1), 2.5}, &catalog.NDArray{Dtype: "<f8", Shape: []int{2}, Data: f64s(1, 2.5)}},
		{[]any{true, false}, &catalog.NDArray{Dtype: "|b1", Shape: []int{2}, Data: []byte{1, 0}}},
		{[]any{"a", "bc"}, &catalog.NDArray{Dtype: "<U0", Shape: []int{2}, Strings: []string{"a", "bc"}}},
		{[]any{}, &catalog.NDArray{Dtype: "<f8", Shape: []int{0}, Data: []byte{}}},
		{[]any{[]any{}, []any{}}, &catalog.NDArray{Dtype: "<f8", Shape: []int{2, 0}, Data: []byte{}}},
		{[]any{[]any{int64(1)}, []any{int64(2), int64(3)}}, []any{[]any{int64(1)}, []any{int64(2), int64(3)}}},
		{[]any{int64(1), "a"}, []any{int64(1), "a"}},
		{[]any{nil, 1.0}, []any{nil, 1.0}},
		{[]any{[]any{int64(1)}, int64(2)}, []any{[]any{int64(1)}, int64(2)}},
	}
	for _, tc := range cases {
		b := enc(t, tc.in)
		v, end, err := packList(b, 0)
		if err != nil || end != len(b) || !reflect.DeepEqual(v, tc.want) {
			t.Errorf("packList(%v) = %#v, %d, %v; want %#v", tc.in, v, end, err, tc.want)
		}
	}
}

func TestRawJSON(t *testing.T) {
	b := append(appendMapHeader(nil, 5), enc(t, "z")...)
	b = append(b, enc(t, math.NaN())...)
	b = append(append(b, enc(t, "a")...), enc(t, []any{math.Inf(-1), int64(-3)})...)
	b = append(append(b, enc(t, int64(12))...), enc(t, rawBin("bytes"))...) // an int key, a bin value
	b = append(append(b, enc(t, "arr")...), enc(t, nd("<f8", []any{int64(2), int64(1)}, f64s(1, 2)))...)
	b = append(append(b, enc(t, "m")...), enc(t, m{"k": "é\n\"q\""})...)
	got, end, err := appendJSON(nil, b, 0, 0)
	want := `{"z": NaN, "a": [-Infinity, -3], "12": "bytes", "arr": [[1.0], [2.0]], "m": {"k": "é\n\"q\""}}`
	if err != nil || end != len(b) || string(got) != want {
		t.Errorf("appendJSON = %s, %d, %v\nwant %s", got, end, err, want)
	}
}

// TestArrayColumns reads pages whose columns are arrays: lists of lists in a page, and whole
// columns stored as one msgpack-numpy array (shape[0] = rows), split into rows.
func TestArrayColumns(t *testing.T) {
	dir := t.TempDir()
	desc := "arr-d"
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": "arr", "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": desc, "run_start": "arr", "time": 1.0, "data_keys": m{
			"img": m{"dtype": "array", "shape": []any{int64(2)}}, "v": m{"dtype": "number", "shape": []any{}}}}},
		{Name: "event_page", Doc: m{"descriptor": desc, "time": []any{1.0, 2.0}, "seq_num": []any{int64(1), int64(2)},
			"data": m{"img": &catalog.NDArray{Dtype: "<u2", Shape: []int{2, 2}, Data: []byte{1, 0, 2, 0, 3, 0, 4, 0}},
				"v": &catalog.NDArray{Dtype: "<i4", Shape: []int{2}, Data: []byte{5, 0, 0, 0, 0xfa, 0xff, 0xff, 0xff}}},
			"timestamps": m{"img": &catalog.NDArray{Dtype: "<f8", Shape: []int{2}, Data: f64s(0.5, 1.5)}, "v": []any{0.5, 1.5}}}},
		{Name: "event", Doc: m{"descriptor": desc, "time": 3.0, "seq_num": int64(3),
			"data": m{"img": []any{int64(9), int64(8)}, "v": int64(7)}, "timestamps": m{"img": 3.0, "v": 3.0}}},
		{Name: "event_page", Doc: m{"descriptor": desc,
			"time":    &catalog.NDArray{Dtype: "<f8", Shape: []int{1}, Data: f64s(4)},
			"seq_num": &catalog.NDArray{Dtype: "<i8", Shape: []int{1}, Data: []byte{4, 0, 0, 0, 0, 0, 0, 0}},
			"data":    m{"img": []any{[]any{int64(1), int64(1)}}, "v": []any{int64(1)}}, "timestamps": m{"img": []any{4.0}}}},
	}
	writeRuns(t, dir, [][]catalog.Document{docs})
	c, _ := openDir(t, filepath.Join(dir, "arr.msgpack"))
	run := mustRun(t, c, "arr")
	var rows []string
	err := run.EventPages(context.Background(), desc, 0, -1, nil, func(p *catalog.EventPage) error {
		for i := 0; i < p.Len(); i++ {
			img := p.Data["img"].At(i).(*catalog.NDArray)
			rows = append(rows, string(catalog.AppendJSON(nil, []any{p.Time[i], p.SeqNum[i], img.Dtype, img.List(), p.Data["v"].At(i), p.Timestamps["img"][i]})))
		}
		return nil
	})
	want := []string{`[1.0, 1, "<u2", [1, 2], 5, 0.5]`, `[2.0, 2, "<u2", [3, 4], -6, 1.5]`, `[3.0, 3, "<i8", [9, 8], 7, 3.0]`,
		`[4.0, 4, "<i8", [1, 1], 1, 4.0]`}
	if err != nil || !reflect.DeepEqual(rows, want) {
		t.Errorf("rows = %q, %v; want %q", rows, err, want)
	}
}
