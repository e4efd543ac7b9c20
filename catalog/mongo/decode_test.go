package mongo

import (
	"math"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/brokerfs/brokerfs/catalog"
)

// BSON unit tests: what FerretDB cannot store (nested arrays, NaN) is decoded here from
// documents built in the test.

func raw(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDocumentJSON(t *testing.T) {
	doc := raw(t, bson.D{
		{Key: "_id", Value: bson.NewObjectID()},
		{Key: "uid", Value: "u1"},
		{Key: "time", Value: 1.5e9},
		{Key: "zeta", Value: int32(5)},
		{Key: "alpha", Value: int64(1) << 40},
		{Key: "five", Value: 5.0},
		{Key: "nan", Value: math.NaN()},
		{Key: "inf", Value: math.Inf(-1)},
		{Key: "hints", Value: bson.D{{Key: "dimensions", Value: bson.A{bson.A{bson.A{"motor"}, "primary"}}}}},
		{Key: "nested", Value: bson.D{{Key: "_id", Value: "kept"}, {Key: "q", Value: "say \"hi\"\n"}, {Key: "none", Value: nil}}},
		{Key: "flag", Value: true},
	})
	s, err := parseStart(doc)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"uid": "u1", "time": 1500000000.0, "zeta": 5, "alpha": 1099511627776, "five": 5.0, "nan": NaN, ` +
		`"inf": -Infinity, "hints": {"dimensions": [[["motor"], "primary"]]}, ` +
		`"nested": {"_id": "kept", "q": "say \"hi\"\n", "none": null}, "flag": true}`
	if string(s.Raw) != wantJSON {
		t.Errorf("JSON\n got %s\nwant %s", s.Raw, wantJSON)
	}
	if _, ok := s.Doc["_id"]; ok {
		t.Error("top-level _id decoded")
	}
	if s.Doc["zeta"] != int64(5) || s.Doc["five"] != 5.0 || !math.IsNaN(s.Doc["nan"].(float64)) {
		t.Errorf("numbers: %v %v %v", s.Doc["zeta"], s.Doc["five"], s.Doc["nan"])
	}
	want := map[string]any{"dimensions": []any{[]any{[]any{"motor"}, "primary"}}}
	if !reflect.DeepEqual(s.Doc["hints"], want) {
		t.Errorf("hints = %#v", s.Doc["hints"])
	}
	if s.UID != "u1" || s.Time != 1.5e9 {
		t.Errorf("start %+v", s)
	}
}

func TestDecodeEvent(t *testing.T) {
	event := raw(t, bson.D{
		{Key: "_id", Value: bson.NewObjectID()},
		{Key: "data", Value: bson.D{ // before time: order does not matter
			{Key: "img", Value: bson.A{bson.A{int32(1), int32(2), int32(3)}, bson.A{int32(4), int32(5), int32(6)}}},
			{Key: "spectrum", Value: bson.A{1.5, int32(2), int64(3)}},
			{Key: "ragged", Value: bson.A{bson.A{1.0}, bson.A{2.0, 3.0}}},
			{Key: "words", Value: bson.A{"a", "b"}},
			{Key: "flags", Value: bson.A{true, false}},
			{Key: "mixed", Value: bson.A{1.0, "x"}},
			{Key: "empty", Value: bson.A{}},
			{Key: "i32", Value: int32(-7)},
			{Key: "i64", Value: int64(1) << 40},
			{Key: "nan", Value: math.NaN()},
			{Key: "none", Value: nil},
			{Key: "doc", Value: bson.D{{Key: "a", Value: int32(1)}}},
		}},
		{Key: "time", Value: 10.5},
		{Key: "seq_num", Value: int32(3)},
		{Key: "timestamps", Value: bson.D{{Key: "img", Value: 10.25}, {Key: "i32", Value: nil}}},
		{Key: "filled", Value: bson.D{{Key: "img", Value: false}}},
	})
	b := newPageBuilder("d", 7, nil)
	if err := b.appendEvent(event); err != nil {
		t.Fatal(err)
	}
	p := b.page()
	if p.FirstRow != 7 || !reflect.DeepEqual(p.Time, []float64{10.5}) || !reflect.DeepEqual(p.SeqNum, []int64{3}) {
		t.Errorf("page %d %v %v", p.FirstRow, p.Time, p.SeqNum)
	}
	img := p.Data["img"].At(0).(*catalog.NDArray)
	if img.Dtype != "<i8" || !reflect.DeepEqual(img.Shape, []int{2, 3}) || !reflect.DeepEqual(img.List(), []any{
		[]any{int64(1), int64(2), int64(3)}, []any{int64(4), int64(5), int64(6)}}) {
		t.Errorf("img = %+v", img)
	}
	checks := map[string]any{
		"spectrum": []any{1.5, 2.0, 3.0},
		"ragged":   []any{[]any{1.0}, []any{2.0, 3.0}},
		"words":    []any{"a", "b"},
		"flags":    []any{true, false},
		"mixed":    []any{1.0, "x"},
		"empty":    []any{},
		"doc":      map[string]any{"a": int64(1)},
	}
	for k, want := range checks {
		got := p.Data[k].At(0)
		if a, ok := got.(*catalog.NDArray); ok {
			got = a.List()
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	if c := p.Data["i32"]; c.Kind != catalog.KindInt || c.I[0] != -7 {
		t.Errorf("i32 column %+v", c)
	}
	if c := p.Data["i64"]; c.Kind != catalog.KindInt || c.I[0] != 1<<40 {
		t.Errorf("i64 column %+v", c)
	}
	if c := p.Data["nan"]; c.Kind != catalog.KindFloat || !math.IsNaN(c.F[0]) {
		t.Errorf("nan column %+v", c)
	}
	if c := p.Data["none"]; c.Kind != catalog.KindValue || c.V[0] != nil {
		t.Errorf("none column %+v", c)
	}
	if p.Timestamps["img"][0] != 10.25 || !math.IsNaN(p.Timestamps["i32"][0]) || p.Filled["img"][0] != false {
		t.Errorf("timestamps %v, filled %v", p.Timestamps, p.Filled)
	}

	// Field selection keeps the data, timestamps and filled flags of the fields asked for.
	b = newPageBuilder("d", 0, []string{"img"})
	if err := b.appendEvent(event); err != nil {
		t.Fatal(err)
	}
	if p := b.page(); len(p.Data) != 1 || len(p.Timestamps) != 1 || len(p.Filled) != 1 {
		t.Errorf("fields [img]: data %v timestamps %v filled %v", p.Data, p.Timestamps, p.Filled)
	}
	b = newPageBuilder("d", 0, []string{})
	if err := b.appendEvent(event); err != nil {
		t.Fatal(err)
	}
	if p := b.page(); len(p.Data) != 0 || len(p.Timestamps) != 2 {
		t.Errorf("fields []: data %v timestamps %v", p.Data, p.Timestamps)
	}
}

// TestDecodeEmbeddedPage decodes an embedded event page whose columns hold 2-D arrays: three
// levels of nested arrays, which FerretDB refuses to store.
func TestDecodeEmbeddedPage(t *testing.T) {
	frame := func(v float64) bson.A { return bson.A{bson.A{v, v + 1}, bson.A{v + 2, v + 3}} }
	page := raw(t, bson.D{
		{Key: "descriptor", Value: "d"},
		{Key: "uid", Value: bson.A{"e1", "e2"}},
		{Key: "time", Value: bson.A{1.0, 2.0}},
		{Key: "seq_num", Value: bson.A{int32(5), int32(6)}},
		{Key: "data", Value: bson.D{{Key: "frame", Value: bson.A{frame(0), frame(10)}}, {Key: "n", Value: bson.A{int32(1), int64(2)}}}},
		{Key: "timestamps", Value: bson.D{{Key: "frame", Value: bson.A{0.5, 1.5}}, {Key: "n", Value: bson.A{0.5, 1.5}}}},
		{Key: "filled", Value: bson.D{}},
		{Key: "first_index", Value: int64(4)}, {Key: "last_index", Value: int64(5)},
	})
	b := newPageBuilder("d", 4, []string{"frame"})
	if err := b.appendPage(page); err != nil {
		t.Fatal(err)
	}
	p := b.page()
	if p.Len() != 2 || len(p.Data) != 1 || !reflect.DeepEqual(p.SeqNum, []int64{5, 6}) {
		t.Fatalf("page: %d rows, data %v, seq %v", p.Len(), p.Data, p.SeqNum)
	}
	got := p.Data["frame"].At(1).(*catalog.NDArray)
	if got.Dtype != "<f8" || !reflect.DeepEqual(got.List(), []any{[]any{10.0, 11.0}, []any{12.0, 13.0}}) {
		t.Errorf("frame[1] = %+v", got)
	}
	bad := raw(t, bson.D{{Key: "time", Value: bson.A{1.0, 2.0}}, {Key: "seq_num", Value: bson.A{int32(1)}}})
	if err := newPageBuilder("d", 0, nil).appendPage(bad); err == nil {
		t.Error("page with 2 times and 1 seq_num: no error")
	}
}

func TestDecodeDatums(t *testing.T) {
	var d datumBuilder
	d.reset("r")
	docs := []bson.D{
		{{Key: "datum_id", Value: "r/0"}, {Key: "datum_kwargs", Value: bson.D{{Key: "point_number", Value: int32(0)}}}},
		{{Key: "datum_id", Value: "r/1"}, {Key: "datum_kwargs", Value: bson.D{{Key: "point_number", Value: int32(1)}, {Key: "frame", Value: int32(9)}}}},
	}
	for _, doc := range docs {
		if err := d.appendDatum(raw(t, doc)); err != nil {
			t.Fatal(err)
		}
	}
	p := d.page()
	want := map[string][]any{"point_number": {int64(0), int64(1)}, "frame": {nil, int64(9)}}
	if !reflect.DeepEqual(p.DatumID, []string{"r/0", "r/1"}) || !reflect.DeepEqual(p.DatumKwargs, want) {
		t.Errorf("page %v %v", p.DatumID, p.DatumKwargs)
	}
	d.reset("r")
	if err := d.appendPage(raw(t, bson.D{{Key: "datum_id", Value: bson.A{"r/2"}},
		{Key: "datum_kwargs", Value: bson.D{{Key: "seq_id", Value: bson.A{bson.A{int32(1), int32(2)}}}}}})); err != nil {
		t.Fatal(err)
	}
	p = d.page()
	want = map[string][]any{"seq_id": {[]any{int64(1), int64(2)}}}
	if !reflect.DeepEqual(p.DatumID, []string{"r/2"}) || !reflect.DeepEqual(p.DatumKwargs, want) {
		t.Errorf("reused page %v %v", p.DatumID, p.DatumKwargs)
	}
}

func TestToBSON(t *testing.T) {
	got := toBSON(map[string]any{"b": int64(1), "a": []any{int64(1) << 40, 2.5, &catalog.NDArray{Dtype: "<i8", Shape: []int{1},
		Data: []byte{3, 0, 0, 0, 0, 0, 0, 0}}}})
	want := bson.D{{Key: "a", Value: bson.A{int64(1) << 40, 2.5, bson.A{int32(3)}}}, {Key: "b", Value: int32(1)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("toBSON = %#v", got)
	}
}

func TestMalformed(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 2}, {5, 0, 0, 0, 1}, {9, 0, 0, 0, 2, 'a', 0, 9, 0}} {
		if _, err := parseStart(b); err == nil {
			t.Errorf("parseStart(%v): no error", b)
		}
		if err := newPageBuilder("d", 0, nil).appendEvent(b); err == nil {
			t.Errorf("appendEvent(%v): no error", b)
		}
	}
}

// BenchmarkDecodeEvents decodes a batch of 2,500 stored events of five scalar fields into a
// reused page: the per-event cost of reading the normalized layout, server aside.
func BenchmarkDecodeEvents(b *testing.B) {
	var docs []bson.Raw
	for i := range 2500 {
		d, err := bson.Marshal(bson.D{{Key: "uid", Value: "e"}, {Key: "descriptor", Value: "d"}, {Key: "time", Value: float64(i)},
			{Key: "seq_num", Value: int32(i + 1)},
			{Key: "data", Value: bson.D{{Key: "x", Value: 0.5}, {Key: "n", Value: int32(i)}, {Key: "ok", Value: true},
				{Key: "label", Value: "abc"}, {Key: "Ion Ch 1", Value: 1e-7}}},
			{Key: "timestamps", Value: bson.D{{Key: "x", Value: 0.5}, {Key: "n", Value: 0.5}, {Key: "ok", Value: 0.5},
				{Key: "label", Value: 0.5}, {Key: "Ion Ch 1", Value: 0.5}}},
			{Key: "filled", Value: bson.D{}}})
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, d)
	}
	pb := newPageBuilder("d", 0, nil)
	b.ReportAllocs()
	for b.Loop() {
		pb.reset(0)
		for _, d := range docs {
			if err := pb.appendEvent(d); err != nil {
				b.Fatal(err)
			}
		}
		if pb.page().Len() != len(docs) {
			b.Fatal("short page")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(docs)), "ns/event")
}

// FuzzDecode feeds arbitrary bytes to the decoders: errors are fine, panics are not.
func FuzzDecode(f *testing.F) {
	seed, err := bson.Marshal(bson.D{{Key: "uid", Value: "u"}, {Key: "time", Value: 1.0}, {Key: "seq_num", Value: int32(1)},
		{Key: "data", Value: bson.D{{Key: "a", Value: bson.A{bson.A{int32(1)}}}, {Key: "s", Value: bson.A{"x"}}}},
		{Key: "datum_id", Value: "r/0"}, {Key: "datum_kwargs", Value: bson.D{{Key: "n", Value: int32(1)}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{13, 0, 0, 0, 2, 'a', 0, 0, 0, 0, 0, 0, 0}) // a string of length 0
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStart(b)
		_ = newPageBuilder("d", 0, nil).appendEvent(b)
		_ = newPageBuilder("d", 0, nil).appendPage(b)
		var d datumBuilder
		d.reset("r")
		_ = d.appendDatum(b)
		_ = d.appendPage(b)
	})
}
