package catalogtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// Opener writes runs into a fresh store of the backend under test and opens it as a Catalog.
type Opener func(t *testing.T, runs [][]catalog.Document) catalog.Catalog

// Suite checks a backend against the catalog contract, using the fixture Runs.
func Suite(t *testing.T, open Opener) {
	ctx := context.Background()
	runs := Runs()
	c := open(t, runs)
	t.Cleanup(func() { _ = c.Close() })

	t.Run("Runs", func(t *testing.T) {
		starts, err := c.Runs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, s := range starts {
			got = append(got, fmt.Sprintf("%s %v %d %s", s.UID, s.Time, s.ScanID, s.PlanName))
		}
		for _, r := range runs {
			d := r[0].Doc
			want = append(want, fmt.Sprintf("%s %v %d %s", d["uid"], d["time"], d["scan_id"], d["plan_name"]))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Runs:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		_, err := c.Run(ctx, "no-such-uid")
		if !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("Run(no-such-uid) = %v, want ErrNotFound", err)
		}
	})

	for _, docs := range runs {
		docs := docs
		uid := docs[0].Doc["uid"].(string)
		t.Run("Run/"+uid[:8]+uid[len(uid)-2:], func(t *testing.T) {
			run, err := c.Run(ctx, uid)
			if err != nil {
				t.Fatal(err)
			}
			checkRun(t, run, docs)
			if dr, ok := run.(catalog.DocumentReader); ok {
				checkDocuments(t, dr, docs)
			}
		})
	}
}

func checkRun(t *testing.T, run catalog.Run, docs []catalog.Document) {
	ctx := context.Background()
	want, _, err := catalog.Assemble(docs)
	if err != nil {
		t.Fatal(err)
	}
	if got := run.Start(); got.UID != want.StartDoc.UID || got.Time != want.StartDoc.Time || !reflect.DeepEqual(normalize(got.Doc), normalize(want.StartDoc.Doc)) {
		t.Errorf("Start = %+v, want %+v", got.Doc, want.StartDoc.Doc)
	}
	stop, err := run.Stop(ctx)
	switch {
	case want.StopDoc == nil && !errors.Is(err, catalog.ErrNotFound):
		t.Errorf("Stop of live run: err = %v, want ErrNotFound", err)
	case want.StopDoc != nil && err != nil:
		t.Errorf("Stop: %v", err)
	case want.StopDoc != nil && (stop.UID != want.StopDoc.UID || stop.ExitStatus != want.StopDoc.ExitStatus || !reflect.DeepEqual(stop.NumEvents, want.StopDoc.NumEvents)):
		t.Errorf("Stop = %+v, want %+v", stop, want.StopDoc)
	}
	descs, err := run.Descriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(descs) != len(want.Descs) {
		t.Fatalf("%d descriptors, want %d", len(descs), len(want.Descs))
	}
	for i, d := range descs {
		w := want.Descs[i]
		if d.UID != w.UID || d.Name != w.Name || !reflect.DeepEqual(d.DataKeys, w.DataKeys) || !reflect.DeepEqual(normalize(d.Configuration), normalize(w.Configuration)) {
			t.Errorf("descriptor %d = %+v, want %+v", i, d, w)
		}
		wantRows := rows(t, want, w.UID, 0, -1, nil)
		gotRows := rows(t, run, d.UID, 0, -1, nil)
		if !reflect.DeepEqual(gotRows, wantRows) {
			t.Errorf("events of %s:\n got %v\nwant %v", d.UID, gotRows, wantRows)
		}
		// Ranges and field selection.
		n := len(wantRows)
		for _, r := range [][2]int{{0, 1}, {1, 3}, {n - 1, n}, {n / 2, -1}} {
			if r[0] < 0 || r[0] >= n {
				continue
			}
			end := r[1]
			if end < 0 || end > n {
				end = n
			}
			got := rows(t, run, d.UID, r[0], end, nil)
			if !reflect.DeepEqual(got[r[0]:min(end, len(got))], wantRows[r[0]:end]) {
				t.Errorf("events [%d,%d) of %s: got %v, want %v", r[0], r[1], d.UID, got, wantRows[r[0]:end])
			}
		}
		for _, f := range d.Keys() {
			got := rows(t, run, d.UID, 0, -1, []string{f})
			for i, row := range got {
				if len(row.Data) != 1 || !reflect.DeepEqual(row.Data[f], wantRows[i].Data[f]) {
					t.Errorf("field %q row %d: got %v, want %v", f, i, row.Data, wantRows[i].Data[f])
				}
			}
		}
	}
	res, err := run.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(want.Res) {
		t.Fatalf("%d resources, want %d", len(res), len(want.Res))
	}
	for i, r := range res {
		w := want.Res[i]
		if r.UID != w.UID || r.Spec != w.Spec || r.Root != w.Root || r.ResourcePath != w.ResourcePath || !reflect.DeepEqual(normalize(r.ResourceKwargs), normalize(w.ResourceKwargs)) {
			t.Errorf("resource %d = %+v, want %+v", i, r, w)
		}
		if got, want := datums(t, run, r.UID), datums(t, want, w.UID); !reflect.DeepEqual(got, want) {
			t.Errorf("datums of %s: got %v, want %v", r.UID, got, want)
		}
	}
}

// Row is one event in comparable form.
type Row struct {
	Row    int
	Time   float64
	SeqNum int64
	Data   map[string]any
	TS     map[string]float64
}

func (r Row) String() string {
	return fmt.Sprintf("{%d t=%v seq=%d %v}", r.Row, r.Time, r.SeqNum, r.Data)
}

// rows collects a descriptor's events; the slice is indexed by row number and holds zero Rows
// before the first page returned.
func rows(t *testing.T, run catalog.Run, desc string, from, to int, fields []string) []Row {
	t.Helper()
	var out []Row
	err := run.EventPages(context.Background(), desc, from, to, fields, func(p *catalog.EventPage) error {
		if p.Descriptor != desc {
			return fmt.Errorf("page of descriptor %q, want %q", p.Descriptor, desc)
		}
		// Pages are contiguous, and the first one covers row from.
		if first := len(out) == 0; first && p.FirstRow > from || !first && p.FirstRow != len(out) {
			return fmt.Errorf("page starts at row %d after %d rows (from %d)", p.FirstRow, len(out), from)
		}
		for len(out) < p.FirstRow {
			out = append(out, Row{Row: len(out)})
		}
		if len(p.SeqNum) != p.Len() {
			return fmt.Errorf("page has %d times and %d seq_nums", p.Len(), len(p.SeqNum))
		}
		for i := 0; i < p.Len(); i++ {
			r := Row{Row: p.FirstRow + i, Time: p.Time[i], SeqNum: p.SeqNum[i], Data: map[string]any{}, TS: map[string]float64{}}
			for k, c := range p.Data {
				if c.Len() != p.Len() {
					return fmt.Errorf("column %q has %d values in a page of %d", k, c.Len(), p.Len())
				}
				r.Data[k] = normalize(c.At(i))
			}
			for k, ts := range p.Timestamps {
				r.TS[k] = ts[i]
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("EventPages(%s, %d, %d, %v): %v", desc, from, to, fields, err)
	}
	if to >= 0 && len(out) < to || len(out) <= from && from > 0 {
		t.Fatalf("EventPages(%s, %d, %d) returned %d rows", desc, from, to, len(out))
	}
	return out
}

func datums(t *testing.T, run catalog.Run, res string) []string {
	t.Helper()
	var out []string
	err := run.Datums(context.Background(), res, func(p *catalog.DatumPage) error {
		for i, id := range p.DatumID {
			kw := map[string]any{}
			for k, col := range p.DatumKwargs {
				kw[k] = normalize(col[i])
			}
			out = append(out, fmt.Sprintf("%s %v", id, kw))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Datums(%s): %v", res, err)
	}
	return out
}

// normalize turns decoder-specific forms into one: arrays into nested lists, integral floats
// that JSON may have kept as floats stay floats (no conversion), NaN into a string.
func normalize(v any) any {
	switch x := v.(type) {
	case *catalog.NDArray:
		return normalize(x.List())
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case float64:
		if math.IsNaN(x) {
			return "NaN"
		}
	}
	return v
}

// checkDocuments: a replay gives back the documents written, in order. Backends that store
// pages unpacked (Mongo's normalized layout) may replay events where pages were written, so
// documents are compared as rows: one entry per event and per datum.
func checkDocuments(t *testing.T, dr catalog.DocumentReader, docs []catalog.Document) {
	t.Helper()
	var got []string
	err := dr.Documents(context.Background(), func(d catalog.Document) error {
		got = append(got, docRows(d)...)
		return nil
	})
	if err != nil {
		t.Fatalf("Documents: %v", err)
	}
	var want []string
	for _, d := range docs {
		want = append(want, docRows(d)...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Documents:\n got %q\nwant %q", got, want)
	}
}

// docRows flattens a document into comparable rows: pages into one row per event or datum.
func docRows(d catalog.Document) []string {
	row := func(name string, m map[string]any) string {
		return name + " " + string(catalog.AppendJSON(nil, normalize(m)))
	}
	switch d.Name {
	case "event_page", "datum_page":
		var rows []string
		for _, r := range unpage(d.Doc) {
			rows = append(rows, row(d.Name[:len(d.Name)-5], r))
		}
		return rows
	}
	return []string{row(d.Name, d.Doc)}
}

// unpage splits a page document into one map per row; keys whose values are not columns
// (descriptor, resource) repeat on every row, and empty columns (a page's empty uid list)
// are dropped.
func unpage(doc map[string]any) []map[string]any {
	n := 0
	for _, k := range []string{"seq_num", "datum_id"} {
		if l, ok := doc[k].([]any); ok {
			n = len(l)
		}
	}
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{}
	}
	var split func(v any, set func(i int, x any))
	split = func(v any, set func(i int, x any)) {
		switch x := normalize(v).(type) {
		case []any:
			if len(x) == n {
				for i, e := range x {
					set(i, e)
				}
			}
		case map[string]any:
			subs := make([]map[string]any, n)
			for i := range subs {
				subs[i] = map[string]any{}
			}
			for k, e := range x {
				k := k
				split(e, func(i int, y any) { subs[i][k] = y })
			}
			for i := range subs {
				set(i, subs[i])
			}
		default:
			for i := 0; i < n; i++ {
				set(i, x)
			}
		}
	}
	for k, v := range doc {
		k := k
		split(v, func(i int, x any) { rows[i][k] = x })
	}
	return rows
}
