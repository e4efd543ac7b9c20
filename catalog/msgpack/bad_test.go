package msgpack

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
)

// garbage returns n bytes that are not msgpack documents (fixed seed: the test is stable).
func garbage(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0] = 0xc1 // and surely not: the byte msgpack never uses
	return b
}

func withDoc(docs []catalog.Document, i int, name string, doc m) []catalog.Document {
	out := append([]catalog.Document(nil), docs[:i]...)
	out = append(out, catalog.Document{Name: name, Doc: doc})
	return append(out, docs[i:]...)
}

func TestBadInput(t *testing.T) {
	good := liveDocs("bad", 5)
	full := encode(t, append(good, stopDoc("bad")))
	uidOK := "bad"
	cases := []struct {
		name    string
		file    func(t *testing.T) []byte
		listed  bool   // the bad run is in Runs
		events  int    // its primary events when listed
		descs   int    // its descriptors when listed
		stop    bool   // its stop is found
		errText string // EventPages fails with this (wrapping ErrBadDocument)
	}{
		{name: "truncated last document", file: func(t *testing.T) []byte { return full[:len(full)-7] },
			listed: true, events: 5, descs: 1},
		{name: "truncated start", file: func(t *testing.T) []byte { return full[:12] }},
		{name: "empty file", file: func(t *testing.T) []byte { return nil }},
		{name: "garbage", file: func(t *testing.T) []byte { return garbage(4096) }},
		{name: "garbage after three events", file: func(t *testing.T) []byte {
			return append(append(encode(t, good[:5]), garbage(100)...), encode(t, good[5:])...)
		}, listed: true, events: 5, descs: 1}, // read on from the next document
		{name: "start without uid", file: func(t *testing.T) []byte {
			return encode(t, append([]catalog.Document{{Name: "start", Doc: m{"time": 1.0}}}, good[1:]...))
		}},
		{name: "first document not a start", file: func(t *testing.T) []byte { return encode(t, good[1:]) }},
		{name: "descriptor with a wrong type", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 2, "descriptor", m{"uid": "bad-d2", "run_start": uidOK, "time": 1.0, "data_keys": "I0"}))
		}, listed: true, events: 5, descs: 1},
		{name: "event with wrong types", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 3, "event", m{"descriptor": "bad-d", "time": "noon", "seq_num": int64(9), "data": m{"I0": 1.0}}))
		}, listed: true, events: 5, descs: 1},
		{name: "event page with a short seq_num", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 3, "event_page", m{"descriptor": "bad-d", "time": []any{1.0, 2.0}, "seq_num": []any{int64(1)}, "data": m{}}))
		}, listed: true, events: 5, descs: 1},
		{name: "event without data", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 3, "event", m{"descriptor": "bad-d", "time": 1.0, "seq_num": int64(9)}))
		}, listed: true, events: 5, descs: 1},
		{name: "unknown document", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 3, "bulk_events", m{"x": int64(1)}))
		}, listed: true, events: 5, descs: 1},
		{name: "datum without datum_id", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 3, "datum", m{"resource": "r", "datum_kwargs": m{}}))
		}, listed: true, events: 5, descs: 1},
		{name: "ragged event page", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 3, "event_page", m{"descriptor": "bad-d", "time": []any{1.0, 2.0}, "seq_num": []any{int64(1), int64(2)},
				"data": m{"I0": []any{1.0}}, "timestamps": m{"I0": []any{1.0, 2.0}}}))
		}, listed: true, events: 5, descs: 1},
		{name: "values nested too deeply", file: func(t *testing.T) []byte {
			// The writer refuses such values: the placeholder's bytes are replaced.
			b := encode(t, withDoc(good, 3, "event", m{"descriptor": "bad-d", "time": 1.0, "seq_num": int64(9), "data": m{"I0": "DEEP"}}))
			deep := append(bytes.Repeat([]byte{0x91}, maxDepth+1), 0x01)
			return bytes.Replace(b, []byte("\xa4DEEP"), deep, 1)
		}, listed: true, events: 5, descs: 1},
		{name: "broken numpy column", file: func(t *testing.T) []byte {
			return encode(t, withDoc(good, 3, "event_page", m{"descriptor": "bad-d", "time": []any{1.0, 2.0}, "seq_num": []any{int64(1), int64(2)},
				"data": m{"I0": m{"nd": true, "type": "<f8", "kind": "", "shape": []any{int64(2)}, "data": []byte{1, 2, 3}}}}))
		}, listed: true, events: 5, descs: 1},
		{name: "garbage between events", file: func(t *testing.T) []byte {
			return append(append(encode(t, good[:4]), 0xc1, 0x92, 0xa5), encode(t, good[4:])...)
		}, listed: true, events: 5, descs: 1},
		{name: "a length that runs past the next document", file: func(t *testing.T) []byte {
			b := encode(t, good[:4])
			return append(append(b, 0x92, 0xa5, 'e', 'v', 'e', 'n', 't', 0xdb, 1, 0, 0, 0), encode(t, good[4:])...)
		}, listed: true, events: 5, descs: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeRuns(t, dir, [][]catalog.Document{catalogtest.Runs()[0]})
			if err := os.WriteFile(filepath.Join(dir, "bad.msgpack"), tc.file(t), 0o644); err != nil {
				t.Fatal(err)
			}
			c, lb := openDir(t, dir)
			ctx := context.Background()
			for range 2 { // the second listing must not log again
				uids := runUIDs(t, c)
				want := []string{catalogtest.UIDScalars}
				if tc.listed {
					want = []string{catalogtest.UIDScalars, uidOK}
				}
				if strings.Join(uids, ",") != strings.Join(want, ",") {
					t.Fatalf("Runs = %v, want %v", uids, want)
				}
			}
			if got := countEvents(t, mustRun(t, c, catalogtest.UIDScalars)); got["primary"] != 5 || got["baseline"] != 2 {
				t.Errorf("the good run has %v events", got)
			}
			if tc.listed {
				run := mustRun(t, c, uidOK)
				descs, _ := run.Descriptors(ctx)
				if len(descs) != tc.descs {
					t.Errorf("%d descriptors, want %d", len(descs), tc.descs)
				}
				if _, err := run.Stop(ctx); (err == nil) != tc.stop {
					t.Errorf("Stop: %v", err)
				}
				n := 0
				err := run.EventPages(ctx, "bad-d", 0, -1, nil, func(p *catalog.EventPage) error { n += p.Len(); return nil })
				switch {
				case tc.errText != "" && (!errors.Is(err, catalog.ErrBadDocument) || !strings.Contains(err.Error(), tc.errText)):
					t.Errorf("EventPages: %v, want an ErrBadDocument about %q", err, tc.errText)
				case tc.errText == "" && (err != nil || n != tc.events):
					t.Errorf("EventPages: %d events, %v; want %d", n, err, tc.events)
				}
				mustRun(t, c, uidOK) // indexed already: nothing more to log
			} else if _, err := c.Run(ctx, uidOK); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("Run of the bad file: %v, want ErrNotFound", err)
			}
			wantLines := 1
			if tc.errText != "" {
				wantLines = 0 // the error goes to the caller
			}
			if lines := lb.lines(); len(lines) != wantLines || (wantLines == 1 && !strings.Contains(lines[0], "bad.msgpack")) {
				t.Errorf("log: %q, want %d line(s) naming bad.msgpack", lines, wantLines)
			}
		})
	}
}
