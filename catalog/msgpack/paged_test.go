package msgpack

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// TestPagesAcrossWindows reads a run of event pages of about 350 KB each, so that pages cross
// the 1 MiB read window at every offset: every row comes back with its exact values (x of
// event e is e/2, seq_num 1000(e+1) in uint16 and uint32 encodings), whole
// and from rows in the middle of pages.
func TestPagesAcrossWindows(t *testing.T) {
	const (
		uid   = "paged000-0000-4000-8000-000000000001"
		pages = 20
		rows  = 4000
	)
	path := filepath.Join(t.TempDir(), "paged.msgpack")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := NewWriter(bw)
	desc := uid + "-d1"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Write("start", map[string]any{"uid": uid, "time": 1.0}))
	must(w.Write("descriptor", map[string]any{"uid": desc, "run_start": uid, "time": 1.0, "name": "primary",
		"data_keys": map[string]any{"x": map[string]any{"dtype": "number", "shape": []any{}}}}))
	seq := func(e int) int64 { return int64(e+1) * 1000 } // reaches uint32 by the last pages
	for p := range pages {
		tl, ul, sl, xl, txl := make([]any, rows), make([]any, rows), make([]any, rows), make([]any, rows), make([]any, rows)
		for j := range rows {
			e := p*rows + j
			tl[j], ul[j], sl[j], xl[j], txl[j] = float64(e), uid36(e), seq(e), float64(e)*0.5, float64(e)-0.5
		}
		must(w.Write("event_page", map[string]any{"time": tl, "uid": ul, "seq_num": sl, "descriptor": desc,
			"filled": map[string]any{}, "data": map[string]any{"x": xl}, "timestamps": map[string]any{"x": txl}}))
	}
	must(bw.Flush())
	must(f.Close())

	c, err := Open([]string{path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	run := mustRun(t, c, uid)
	for _, from := range []int{0, rows/2 + 1, pages*rows - 3} {
		next := from
		err := run.EventPages(context.Background(), desc, from, -1, nil, func(p *catalog.EventPage) error {
			for i := range p.Len() {
				e := p.FirstRow + i
				if e < from {
					continue
				}
				if e != next {
					t.Fatalf("from %d: row %d, want %d", from, e, next)
				}
				next++
				if p.Time[i] != float64(e) || p.SeqNum[i] != seq(e) || p.Data["x"].F[i] != float64(e)*0.5 || p.Timestamps["x"][i] != float64(e)-0.5 {
					t.Fatalf("from %d: row %d = time %v seq %v x %v ts %v", from, e, p.Time[i], p.SeqNum[i], p.Data["x"].F[i], p.Timestamps["x"][i])
				}
			}
			return nil
		})
		if err != nil || next != pages*rows {
			t.Fatalf("from %d: read to row %d, want %d: %v", from, next, pages*rows, err)
		}
	}
}
