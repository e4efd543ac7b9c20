package msgpack

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// EventRows gives, without reading the events, the rows EventPages gives: events and event
// pages, a malformed event (skipped by both) and another descriptor's events in between; 0 for
// a descriptor without events; not known for a descriptor the run does not have.
func TestEventRows(t *testing.T) {
	const uid = "c0000000-0000-4000-8000-000000000001"
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "d1", "run_start": uid, "time": 1.0, "name": "primary", "data_keys": m{"x": m{"dtype": "number", "shape": []any{}, "source": "s"}}}},
		{Name: "descriptor", Doc: m{"uid": "d2", "run_start": uid, "time": 1.0, "name": "baseline", "data_keys": m{"x": m{"dtype": "number", "shape": []any{}, "source": "s"}}}},
		{Name: "descriptor", Doc: m{"uid": "d3", "run_start": uid, "time": 1.0, "name": "empty", "data_keys": m{"x": m{"dtype": "number", "shape": []any{}, "source": "s"}}}},
	}
	ev := func(desc string, t any) catalog.Document {
		return catalog.Document{Name: "event", Doc: m{"uid": "e", "descriptor": desc, "time": t, "seq_num": int64(1), "data": m{"x": 1.0}, "timestamps": m{"x": 1.0}}}
	}
	docs = append(docs, ev("d1", 2.0), ev("d2", 2.0), ev("d1", "bad"), ev("d1", 3.0),
		catalog.Document{Name: "event_page", Doc: m{"descriptor": "d1", "time": []any{4.0, 5.0, 6.0}, "seq_num": []any{int64(3), int64(4), int64(5)},
			"data": m{"x": []any{1.0, 2.0, 3.0}}, "timestamps": m{"x": []any{1.0, 1.0, 1.0}}}},
		ev("d1", 7.0),
		catalog.Document{Name: "stop", Doc: m{"uid": "s", "run_start": uid, "time": 9.0, "exit_status": "success"}})
	dir := t.TempDir()
	if err := WriteRun(filepath.Join(dir, uid+".msgpack"), docs); err != nil {
		t.Fatal(err)
	}
	cat, err := Open([]string{dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	ctx := context.Background()
	r, err := cat.Run(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	ec := r.(catalog.EventCounter)
	for desc, want := range map[string]int{"d1": 6, "d2": 1, "d3": 0} {
		got, ok := ec.EventRows(ctx, desc)
		walked := 0
		if err := r.EventPages(ctx, desc, 0, -1, nil, func(p *catalog.EventPage) error { walked += p.Len(); return nil }); err != nil {
			t.Fatal(err)
		}
		if !ok || got != want || walked != want {
			t.Errorf("%s: EventRows %d (%v), EventPages %d rows, want %d", desc, got, ok, walked, want)
		}
	}
	if n, ok := ec.EventRows(ctx, "d4"); ok {
		t.Errorf("an unknown descriptor: %d rows, known", n)
	}
}
