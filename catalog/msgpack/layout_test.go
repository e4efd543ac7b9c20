package msgpack

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// variedRun is a run whose single-row pages change layout often: value types and sizes,
// seq_num encodings, strings of new lengths, fields that come and go, filled values, and
// another stream's events interleaved.
func variedRun() []catalog.Document {
	uid := "varied"
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "d1", "run_start": uid, "time": 1.0, "data_keys": m{
			"x": m{"dtype": "number", "shape": []any{}}, "y": m{"dtype": "number", "shape": []any{}}}}},
		{Name: "descriptor", Doc: m{"uid": "d2", "run_start": uid, "time": 1.0, "name": "monitor", "data_keys": m{
			"m": m{"dtype": "number", "shape": []any{}}}}},
	}
	values := []any{1.5, int64(3), int64(-5), int64(200), int64(-200), int64(70000), int64(5e9), true, false,
		"ok", "longer text", nil, []any{1.0, 2.0}, []any{int64(1), int64(2)}, m{"k": 1.0}, math.Copysign(0, -1),
		&catalog.NDArray{Dtype: "<f8", Shape: []int{}, Data: make([]byte, 8)}}
	seqs := []int64{1, 2, 127, 128, 255, 256, 65535, 65536, 1 << 33}
	for i := range 1000 {
		t := 10.0 + float64(i)
		x := values[(i/25)%len(values)]
		page := m{"descriptor": "d1", "uid": []any{fmt.Sprintf("u%d", i%13)}, "time": []any{t},
			"seq_num": []any{seqs[(i/37)%len(seqs)]}, "data": m{"x": []any{x}, "y": []any{float64(i)}},
			"timestamps": m{"x": []any{t - 1}, "y": []any{t - 2}}, "filled": m{}}
		switch {
		case i%13 == 10:
			page["uid"] = []any{"a uid of another length"}
		case i%50 == 11:
			delete(page["data"].(m), "y") // a field missing from a page
			delete(page["timestamps"].(m), "y")
		case i%60 == 20:
			page["filled"] = m{"x": []any{false}}
		case i%60 == 40:
			page["filled"] = m{"x": []any{"datum/1"}}
		case i%90 == 30:
			page["timestamps"].(m)["x"] = []any{int64(7)}
		case i%97 == 50:
			page["time"] = []any{t, t + 0.5} // two rows
			page["seq_num"] = []any{int64(1), int64(2)}
			page["data"] = m{"x": []any{1.0, 2.0}, "y": []any{3.0, 4.0}}
			page["timestamps"] = m{"x": []any{1.0, 2.0}, "y": []any{3.0, 4.0}}
		}
		docs = append(docs, catalog.Document{Name: "event_page", Doc: page})
		if i%5 == 0 {
			docs = append(docs, catalog.Document{Name: "event", Doc: m{"descriptor": "d2", "time": t, "seq_num": int64(i),
				"data": m{"m": float64(i % 5)}, "timestamps": m{"m": t}, "filled": m{}}})
		}
	}
	return docs
}

// dumpPages renders what EventPages gives as text, one line per row.
func dumpPages(t testing.TB, run catalog.Run, desc string, from, to int, fields []string) string {
	t.Helper()
	var out strings.Builder
	err := run.EventPages(context.Background(), desc, from, to, fields, func(p *catalog.EventPage) error {
		for i := 0; i < p.Len(); i++ {
			data, ts, filled := m{}, m{}, m{}
			for k, c := range p.Data {
				data[k] = c.At(i)
			}
			for k, v := range p.Timestamps {
				ts[k] = v[i]
			}
			for k, v := range p.Filled {
				filled[k] = v[i]
			}
			row := []any{int64(p.FirstRow + i), p.Time[i], p.SeqNum[i], data, ts, filled}
			fmt.Fprintf(&out, "%s %s\n", catalog.AppendJSON(nil, row), kinds(p))
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(&out, "error: %v\n", err)
	}
	return out.String()
}

// kinds names each column's kind: a layout must build the same columns, not only the same values.
func kinds(p *catalog.EventPage) string {
	var s []string
	for _, k := range (&catalog.Descriptor{DataKeys: dataKeys(p)}).Keys() {
		s = append(s, fmt.Sprintf("%s:%d", k, p.Data[k].Kind))
	}
	return strings.Join(s, ",")
}

func dataKeys(p *catalog.EventPage) map[string]catalog.DataKey {
	out := map[string]catalog.DataKey{}
	for k := range p.Data {
		out[k] = catalog.DataKey{}
	}
	return out
}

// Field selections and row ranges compareDecoders tries.
var (
	allFields  = [][]string{nil, {"x"}, {}, {"y", "m"}}
	allRanges  = [][2]int{{0, -1}, {5, 9}, {300, -1}}
	someFields = [][]string{{"x"}}
	someRanges = [][2]int{{0, -1}}
)

// compareDecoders checks that the layout fast path gives what the general decoder gives.
func compareDecoders(t *testing.T, c *Catalog, uid string, fieldSets [][]string, ranges [][2]int) {
	t.Helper()
	r, err := c.Run(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	fast := r.(*run)
	slow := &run{path: fast.path, ix: fast.ix, open: fast.open, noLayouts: true}
	descs, _ := fast.Descriptors(context.Background())
	for _, d := range descs {
		for _, fields := range fieldSets {
			for _, rg := range ranges {
				want := dumpPages(t, slow, d.UID, rg[0], rg[1], fields)
				if got := dumpPages(t, fast, d.UID, rg[0], rg[1], fields); got != want {
					t.Errorf("%s %v %v: layouts give\n%s\nthe general decoder\n%s", d.UID, fields, rg, firstDiff(got, want), firstDiff(want, got))
				}
			}
		}
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range al {
		if i >= len(bl) || al[i] != bl[i] {
			return fmt.Sprintf("line %d: %s", i, al[i])
		}
	}
	return "(a prefix)"
}

func TestLayoutsMatchGeneralDecoder(t *testing.T) {
	dir := t.TempDir()
	writeRuns(t, dir, [][]catalog.Document{variedRun()})
	c, lb := openDir(t, dir)
	compareDecoders(t, c, "varied", allFields, allRanges)
	if lines := lb.lines(); len(lines) != 0 {
		t.Errorf("log: %q", lines)
	}
	// The layouts did their job: most documents were read through one, even here.
	r := mustRun(t, c, "varied").(*run)
	all := dumpPages(t, r, "d1", 0, -1, nil)
	if n, docs := r.fastDocs.Load(), strings.Count(all, "\n"); n < int64(docs)/2 {
		t.Errorf("%d of %d documents read through a layout", n, docs)
	}
}

// TestLayoutsSteadyStream checks that a stream fed one event at a time is read almost
// entirely through layouts, seq_num encodings changing on the way (1 byte, 2, 3, 5).
func TestLayoutsSteadyStream(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/steady.msgpack"
	if err := writeEventsFile(path, 70_000, "steady"); err != nil {
		t.Fatal(err)
	}
	c, _ := openDir(t, dir)
	compareDecoders(t, c, "steady", someFields, someRanges)
	r := mustRun(t, c, "steady").(*run)
	n := 0
	err := r.EventPages(context.Background(), "steady-d1", 0, -1, []string{"x"}, func(p *catalog.EventPage) error {
		n += p.Len()
		return nil
	})
	if err != nil || n != 70_000 {
		t.Fatalf("%d events, %v", n, err)
	}
	if fast := r.fastDocs.Load(); fast < 69_990 {
		t.Errorf("%d of 70000 documents read through a layout", fast)
	}
}

// TestLayoutAfterBadDocument: a page whose data is decoded before a bad key shows it to be
// invalid changes the page's columns; the layout learned before must not reuse them.
func TestLayoutAfterBadDocument(t *testing.T) {
	docs := liveDocs("lb", 5)
	b := encode(t, docs[:5])
	bad := strMap{{"descriptor", "lb-d"}, {"time", []any{9.0}},
		{"data", strMap{{"I0", []any{1.0}}, {"extra", []any{2.0}}}}, {"seq_num", []any{"not a number"}}}
	b = append(b, enc(t, []any{"event_page", bad})...)
	b = append(b, encode(t, docs[5:])...)
	dir := t.TempDir()
	appendFile(t, filepath.Join(dir, "lb.msgpack"), b)
	c, lb := openDir(t, dir)
	compareDecoders(t, c, "lb", allFields, allRanges)
	if lines := lb.lines(); len(lines) != 1 {
		t.Errorf("log: %q, want one line about the bad page", lines)
	}
}
