package msgpack

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// TestHostileDocuments is the JSONL test of the same name for msgpack: one document of good
// msgpack but wrong value types for its kind (or nested too deeply), among the good events of
// a stream, costs that document only. The index and every read (all fields, one, none, from a
// later row) skip it alike, the good events read with their exact values, and one log line
// names the file and the reason.
func TestHostileDocuments(t *testing.T) {
	const uid = "bad"
	// ev returns a good single-row event page of the bad run, with key k set to v (nil: removed).
	ev := func(kv ...any) m {
		doc := m{"descriptor": uid + "-d", "time": []any{3.5}, "seq_num": []any{int64(70)},
			"data": m{"I0": []any{9.25}}, "timestamps": m{"I0": []any{3.5}}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(doc, kv[i].(string))
			} else {
				doc[kv[i].(string)] = kv[i+1]
			}
		}
		return doc
	}
	single := func(kv ...any) m {
		doc := m{"descriptor": uid + "-d", "time": 3.5, "seq_num": int64(70), "data": m{"I0": 9.25}, "timestamps": m{"I0": 3.5}}
		for i := 0; i < len(kv); i += 2 {
			doc[kv[i].(string)] = kv[i+1]
		}
		return doc
	}
	for _, tc := range []struct {
		name, docName string
		doc           m
		reason        string // "" marks a good document
	}{
		{"data a list", "event", single("data", []any{9.25}), `key \"data\": want map`},
		{"data a string", "event", single("data", "x"), `key \"data\": want map`},
		{"seq_num a string", "event", single("seq_num", "7"), "seq_num"},
		{"seq_num a fraction", "event", single("seq_num", 7.5), "seq_num"},
		{"seq_num too large", "event", single("seq_num", 1e300), "seq_num"},
		{"seq_num NaN", "event", single("seq_num", math.NaN()), "seq_num"},
		{"time a map", "event", single("time", m{"t": 3.5}), "time"},
		{"time nil", "event", single("time", nil), "time"},
		{"timestamps a list", "event", single("timestamps", []any{3.5}), `key \"timestamps\": want map`},
		{"timestamps nil", "event", single("timestamps", nil), `key \"timestamps\": want map`},
		{"filled a list", "event", single("filled", []any{}), `key \"filled\": want map`},
		{"page timestamps a list", "event_page", ev("timestamps", []any{3.5}), `key \"timestamps\": want map`},
		{"descriptor a number", "event", single("descriptor", int64(1)), "descriptor"},
		{"page column not a list", "event_page", ev("data", m{"I0": 9.25}), "I0"},
		{"page ragged", "event_page", ev("time", []any{3.5, 3.6}, "seq_num", []any{int64(70), int64(71)}, "timestamps", m{}), "column of 1 values in a page of 2 rows"},
		{"page ragged unread column", "event_page", ev("data", m{"I0": []any{9.25}, "y": []any{1.0, 2.0}}), "column of 2 values in a page of 1 rows"},
		{"page time not numbers", "event_page", ev("time", []any{"x"}), "time"},
		// Body values the decoder reads as they come (time first), or passes over.
		{"page value nested too deeply", "event_page", ev("data", m{"I0": []any{"DEEP"}}), "nested too deeply"},
		{"page unread value nested too deeply", "event_page", ev("data", m{"I0": []any{9.25}, "y": []any{"DEEP"}}), "nested too deeply"},
		{"event value nested too deeply", "event", single("data", m{"I0": "DEEP"}), "nested too deeply"},
		{"page numpy column of 2 rows", "event_page", ev("data", m{"I0": &catalog.NDArray{Dtype: "<f8", Shape: []int{2}, Data: make([]byte, 16)}}), "want a list or array of 1 rows"},
		{"page numpy timestamps of 2 rows", "event_page", ev("timestamps", m{"I0": &catalog.NDArray{Dtype: "<f8", Shape: []int{2}, Data: make([]byte, 16)}}), "timestamps"},
		{"page filled ragged", "event_page", ev("filled", m{"I0": []any{false, true}}), "column of 2 values in a page of 1 rows"},
		{"page seq_num fraction", "event_page", ev("seq_num", []any{7.5}), "seq_num"},
		{"page seq_num not a list", "event_page", ev("seq_num", int64(70)), "seq_num"},
		{"page timestamps not lists", "event_page", ev("timestamps", m{"I0": 3.5}), "timestamps"},
		{"datum without datum_id", "datum", m{"resource": "r1", "datum_kwargs": m{}}, `missing key \"datum_id\"`},
		{"datum_id a number", "datum", m{"resource": "r1", "datum_id": int64(1), "datum_kwargs": m{}}, "datum_id"},
		{"datum page ids not strings", "datum_page", m{"resource": "r1", "datum_id": []any{"a", int64(2)}, "datum_kwargs": m{}}, "datum_id"},
		{"datum page ragged", "datum_page", m{"resource": "r1", "datum_id": []any{"r1/a", "r1/b"}, "datum_kwargs": m{"i": []any{int64(1)}}}, `datum_kwargs \"i\": column of 1 values in a page of 2 rows`},
		{"datum page kwarg not a list", "datum_page", m{"resource": "r1", "datum_id": []any{"r1/a"}, "datum_kwargs": m{"i": int64(1)}}, `datum_kwargs \"i\"`},
		{"datum nested too deeply", "datum", m{"resource": "r1", "datum_id": "r1/a", "datum_kwargs": m{"i": "DEEP"}}, "nested too deeply"},
		{"descriptor data_keys a list", "descriptor", m{"uid": "d2", "run_start": uid, "time": 2.0, "data_keys": []any{}}, "data_keys"},
		// Good documents at the edges.
		{"integral float seq_num", "event", single("seq_num", 70.0), ""},
		{"page with an empty column", "event_page", ev("data", m{"I0": []any{9.25}, "y": []any{}}), "column of 0 values in a page of 1 rows"},
		{"page", "event_page", ev("data", m{"I0": []any{9.25}, "y": []any{[]any{1.0, 2.0}}}, "filled", m{"y": []any{false}}), ""},
		{"datum page", "datum_page", m{"resource": "r1", "datum_id": []any{"r1/a", "r1/b"}, "datum_kwargs": m{"i": []any{int64(1), int64(2)}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			good := liveDocs(uid, 4)
			// A resource with one good datum, before the events.
			good = withDoc(good, 2, "resource", m{"uid": "r1", "spec": "S", "root": "/", "resource_path": "p", "resource_kwargs": m{}, "run_start": uid})
			good = withDoc(good, 3, "datum", m{"resource": "r1", "datum_id": "r1/0", "datum_kwargs": m{"i": int64(0)}})
			docs := withDoc(good, 6, tc.docName, tc.doc) // after two events
			b := encode(t, docs)
			// The writer refuses values nested too deeply: the placeholder's bytes are replaced.
			b = bytes.Replace(b, []byte("\xa4DEEP"), append(bytes.Repeat([]byte{0x91}, maxDepth+1), 0x01), 1)
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "bad.msgpack"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			c, lb := openDir(t, dir)
			run := mustRun(t, c, uid)
			descs, err := run.Descriptors(ctx)
			if err != nil || len(descs) != 1 {
				t.Fatalf("Descriptors = %d, %v; want 1", len(descs), err)
			}
			type row struct {
				seq  int64
				time float64
				x    any
			}
			var want []row
			for i := range 4 {
				want = append(want, row{int64(i + 1), 1.5e9 + float64(i), float64(i) * 1.5})
			}
			if tc.reason == "" && strings.HasPrefix(tc.docName, "event") {
				want = append(want[:2], append([]row{{70, 3.5, 9.25}}, want[2:]...)...)
			}
			for _, fields := range [][]string{nil, {"I0"}, {"zz"}} {
				for from := range len(want) {
					var got []row
					next := from
					err := run.EventPages(ctx, uid+"-d", from, -1, fields, func(p *catalog.EventPage) error {
						if p.FirstRow != next {
							t.Errorf("page at row %d, want %d", p.FirstRow, next)
						}
						next += p.Len()
						for i := range p.Len() {
							r := row{seq: p.SeqNum[i], time: p.Time[i]}
							if c := p.Data["I0"]; c != nil {
								r.x = c.At(i)
							}
							got = append(got, r)
						}
						return nil
					})
					if err != nil {
						t.Fatalf("fields %v from %d: %v", fields, from, err)
					}
					if len(got) != len(want)-from {
						t.Fatalf("fields %v from %d: %v, want %v", fields, from, got, want[from:])
					}
					for i, g := range got {
						w := want[from+i]
						if fields != nil && fields[0] == "zz" {
							w.x = nil
						}
						if g != w {
							t.Errorf("fields %v from %d: row %d = %v, want %v", fields, from, from+i, g, w)
						}
					}
				}
			}
			// The resource's datums: the good one, and the good page's.
			var ids []string
			err = run.Datums(ctx, "r1", func(p *catalog.DatumPage) error {
				ids = append(ids, p.DatumID...)
				return nil
			})
			wantIDs := "r1/0"
			if tc.reason == "" && tc.docName == "datum_page" {
				wantIDs = "r1/0,r1/a,r1/b"
			}
			if err != nil || strings.Join(ids, ",") != wantIDs {
				t.Errorf("Datums = %v, %v; want %s", ids, err, wantIDs)
			}
			lines := lb.lines()
			if tc.reason == "" {
				if len(lines) != 0 {
					t.Errorf("log: want nothing, have %q", lines)
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "bad.msgpack") || !strings.Contains(lines[0], tc.reason) {
				t.Errorf("log: want one line naming bad.msgpack and %q, have %q", tc.reason, lines)
			}
		})
	}
}
