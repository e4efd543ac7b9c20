package mongo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

// commands records the commands a catalog sends: one per round trip.
type commands struct {
	mu   sync.Mutex
	seen []*event.CommandStartedEvent // guarded by mu
}

func (c *commands) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.seen = append(c.seen, e)
	}}
}

// take returns the names of the commands sent since the last take ("find event_descriptor",
// "getMore event"), and the commands themselves.
func (c *commands) take() ([]string, []*event.CommandStartedEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for _, e := range c.seen {
		coll := ""
		switch e.CommandName {
		case "find", "getMore":
			key := "find"
			if e.CommandName == "getMore" {
				key = "collection"
			}
			coll = " " + e.Command.Lookup(key).StringValue()
		}
		names = append(names, e.CommandName+coll)
	}
	seen := c.seen
	c.seen = nil
	return names, seen
}

// scanRun is a run with one descriptor of n events (x: float, n: int, label: string),
// written as event pages of perPage.
func scanRun(uid string, n, perPage int) []catalog.Document {
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.7e9, "scan_id": int64(7), "plan_name": "scan"}},
		{Name: "descriptor", Doc: map[string]any{"uid": uid + "-d", "run_start": uid, "time": 1.7e9 + 1, "name": "primary",
			"data_keys": map[string]any{"x": dk("number"), "n": dk("integer"), "label": dk("string")}}},
	}
	for first := 0; first < n; first += perPage {
		var t, seq, x, nn, label, uids []any
		for i := first; i < min(first+perPage, n); i++ {
			t = append(t, 1.7e9+2+float64(i))
			seq = append(seq, int64(i+1))
			x = append(x, float64(i)/4)
			nn = append(nn, int64(i))
			label = append(label, fmt.Sprint("row ", i))
			uids = append(uids, fmt.Sprintf("%s-e%d", uid, i))
		}
		docs = append(docs, catalog.Document{Name: "event_page", Doc: map[string]any{"descriptor": uid + "-d", "uid": uids,
			"time": t, "seq_num": seq, "data": map[string]any{"x": x, "n": nn, "label": label},
			"timestamps": map[string]any{"x": t, "n": t, "label": t}, "filled": map[string]any{}}})
	}
	return append(docs, catalog.Document{Name: "stop", Doc: map[string]any{"uid": uid + "-stop", "run_start": uid,
		"time": 1.7e9 + float64(n) + 3, "exit_status": "success"}})
}

func dk(dtype string) map[string]any {
	return map[string]any{"dtype": dtype, "shape": []any{}, "source": "sim"}
}

func TestRoundTrips(t *testing.T) {
	const n, pageSize = 600, 250
	srv := mongotest.Start(t)
	var cmds commands
	uid := "e0000000-0000-4000-8000-000000000001"
	// A generous timeout: FerretDB sorts in memory, and this test counts round trips, not time.
	c := openNormalized(t, srv, srv.URI("rt_mds"), srv.URI("rt_assets"), [][]catalog.Document{scanRun(uid, n, 100)},
		Options{PageSize: pageSize, Monitor: cmds.monitor(), Timeout: time.Minute})
	ctx := context.Background()
	cmds.take()
	expect := func(what string, want ...string) []*event.CommandStartedEvent {
		t.Helper()
		got, seen := cmds.take()
		if !slices.Equal(got, want) {
			t.Errorf("%s: %d round trips %q, want %d %q", what, len(got), got, len(want), want)
		}
		t.Logf("%s: %d round trips", what, len(got))
		return seen
	}

	// Opening a run: start, stop, descriptors.
	run, err := c.Run(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	descs, err := run.Descriptors(ctx)
	if err != nil || len(descs) != 1 {
		t.Fatalf("descriptors %v, %v", descs, err)
	}
	expect("open run", "find run_start", "find run_stop", "find event_descriptor")
	_, _ = run.Stop(ctx)
	_, _ = run.Descriptors(ctx)
	expect("stop and descriptors again (kept)")

	// One field of a descriptor: one find, then a getMore per further batch; only that
	// field is projected, and each page is one batch.
	var rows, pages int
	err = run.EventPages(ctx, uid+"-d", 0, -1, []string{"x"}, func(p *catalog.EventPage) error {
		if p.FirstRow != rows || len(p.Data) != 1 || p.Data["x"].Kind != catalog.KindFloat {
			return fmt.Errorf("page at %d: first row %d, data %v", rows, p.FirstRow, p.Data)
		}
		for i, v := range p.Data["x"].F {
			if v != float64(rows+i)/4 || p.SeqNum[i] != int64(rows+i+1) {
				return fmt.Errorf("row %d: x %v seq %d", rows+i, v, p.SeqNum[i])
			}
		}
		rows += p.Len()
		pages++
		return nil
	})
	if err != nil || rows != n || pages != 3 {
		t.Fatalf("EventPages: %d rows in %d pages, %v; want %d in 3", rows, pages, err, n)
	}
	seen := expect("a field's events", "find event", "getMore event", "getMore event")
	proj, _ := seen[0].Command.Lookup("projection").Document().Elements()
	var keys []string
	for _, e := range proj {
		keys = append(keys, e.Key())
	}
	if want := []string{"_id", "time", "seq_num", "data.x", "timestamps.x", "filled.x"}; !slices.Equal(keys, want) {
		t.Errorf("projection %q, want %q", keys, want)
	}

	// A range within one batch: one round trip, starting where asked.
	err = run.EventPages(ctx, uid+"-d", 250, 500, []string{"label"}, func(p *catalog.EventPage) error {
		if p.FirstRow != 250 || p.Len() != 250 || p.Data["label"].S[0] != "row 250" {
			return fmt.Errorf("page at %d of %d rows: %v", p.FirstRow, p.Len(), p.Data["label"].At(0))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expect("events [250, 500)", "find event")

	if _, err := run.Resources(ctx); err != nil {
		t.Fatal(err)
	}
	expect("resources", "find resource")

	// The run listing: one cursor, a batch per round trip.
	for i := range 4 {
		if err := InsertRun(ctx, srv.URI("rt_mds"), srv.URI("rt_assets"), scanRun(fmt.Sprintf("e%07d-0000-4000-8000-000000000002", i), 1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	small, err := OpenNormalized(ctx, srv.URI("rt_mds"), srv.URI("rt_assets"), Options{PageSize: 2, Monitor: cmds.monitor(), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	cmds.take()
	starts, err := small.Runs(ctx)
	if err != nil || len(starts) != 5 {
		t.Fatalf("Runs: %d, %v", len(starts), err)
	}
	expect("Runs of 5 in batches of 2", "find run_start", "getMore run_start", "getMore run_start")
	if _, err := small.Find(ctx, map[string]any{"uid": map[string]any{"$regex": "^e0000001"}}); err != nil {
		t.Fatal(err)
	}
	expect("Find", "find run_start")
}

func TestRoundTripsEmbedded(t *testing.T) {
	srv := mongotest.Start(t)
	var cmds commands
	uid := "e0000000-0000-4000-8000-000000000003"
	ctx := context.Background()
	if err := InsertRunEmbedded(ctx, srv.URI("rt_embedded"), scanRun(uid, 600, 100)); err != nil {
		t.Fatal(err)
	}
	c, err := OpenEmbedded(ctx, srv.URI("rt_embedded"), Options{Monitor: cmds.monitor(), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmds.take()
	run, err := c.Run(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = run.Stop(ctx)
	_, _ = run.Descriptors(ctx)
	_, _ = run.Resources(ctx)
	if got, _ := cmds.take(); !slices.Equal(got, []string{"find header"}) {
		t.Errorf("open run: %q, want one find", got)
	}
	// Six stored pages of 100 rows; a range that overlaps three takes one round trip.
	var first []int
	err = run.EventPages(ctx, uid+"-d", 150, 350, []string{"n"}, func(p *catalog.EventPage) error {
		first = append(first, p.FirstRow)
		return nil
	})
	if err != nil || !slices.Equal(first, []int{100, 200, 300}) {
		t.Errorf("pages for [150, 350) start at %v (%v), want [100 200 300]", first, err)
	}
	got, seen := cmds.take()
	if !slices.Equal(got, []string{"find event"}) {
		t.Errorf("events [150, 350): %q, want one find", got)
	}
	if p := seen[0].Command.Lookup("projection").String(); !strings.Contains(p, `"data.n"`) || strings.Contains(p, `"data"`) {
		t.Errorf("projection %s", p)
	}
}
