package jsonl_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
)

type m = map[string]any

func event(i int) m {
	return m{"descriptor": "d1", "uid": "e" + string(rune('a'+i)), "time": 10.5 + float64(i), "seq_num": int64(i + 1),
		"data": m{"I0": float64(i) * 1.5, "Ion Ch 1": int64(i)}, "timestamps": m{"I0": 1.0, "Ion Ch 1": 2.0}, "filled": m{}}
}

func countRows(t *testing.T, run catalog.Run, desc string) (n int) {
	t.Helper()
	err := run.EventPages(context.Background(), desc, 0, -1, nil, func(p *catalog.EventPage) error {
		for i := 0; i < p.Len(); i++ {
			if p.FirstRow+i != n || p.SeqNum[i] != int64(n+1) || p.Data["I0"].At(i) != float64(n)*1.5 {
				t.Errorf("row %d: page row %d seq %d I0 %v", n, p.FirstRow+i, p.SeqNum[i], p.Data["I0"].At(i))
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGrowingFile appends to a live run: a new Run sees the new events, an older Run keeps its
// snapshot, and an incomplete last line is ignored until its newline arrives.
func TestGrowingFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "live.jsonl")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := jsonl.NewWriter(f)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Write("start", m{"uid": "live-1", "time": 1.0, "scan_id": int64(7)}))
	must(w.Write("descriptor", m{"uid": "d1", "run_start": "live-1", "time": 2.0, "name": "primary",
		"data_keys": m{"I0": m{"dtype": "number", "shape": []any{}, "source": "x"}, "Ion Ch 1": m{"dtype": "integer", "shape": []any{}, "source": "y"}}}))
	for i := range 2 {
		must(w.Write("event", event(i)))
	}
	log, logs := testLogger(t)
	c, err := jsonl.Open([]string{filepath.Dir(path)}, jsonl.Options{Logger: log})
	must(err)
	if starts, err := c.Runs(ctx); err != nil || len(starts) != 1 {
		t.Fatalf("Runs = %d, %v", len(starts), err)
	}
	r1, err := c.Run(ctx, "live-1")
	must(err)
	if n := countRows(t, r1, "d1"); n != 2 {
		t.Fatalf("first snapshot: %d rows, want 2", n)
	}
	if _, err := r1.Stop(ctx); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("Stop of live run: %v", err)
	}

	for i := 2; i < 2000; i++ { // past a checkpoint, so that extending adds one
		must(w.Write("event", event(i)))
	}
	partial := []byte(`["event", {"descriptor": "d1", "time": 99`)
	_, err = f.Write(partial)
	must(err)
	r2, err := c.Run(ctx, "live-1")
	must(err)
	if n := countRows(t, r2, "d1"); n != 2000 {
		t.Fatalf("second snapshot: %d rows, want 2000", n)
	}
	if n := countRows(t, r1, "d1"); n != 2 {
		t.Fatalf("first snapshot after growth: %d rows, want 2", n)
	}
	var got []int64
	must(r2.EventPages(ctx, "d1", 1500, 1502, []string{"I0"}, func(p *catalog.EventPage) error {
		for i := range p.Len() {
			if r := p.FirstRow + i; r >= 1500 && r < 1502 {
				got = append(got, p.SeqNum[i])
			}
		}
		return nil
	}))
	if len(got) != 2 || got[0] != 1501 {
		t.Errorf("rows [1500, 1502): seq_nums %v", got)
	}
	if _, err := r2.Stop(ctx); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("Stop of live run: %v", err)
	}

	// Finish the partial line by rewriting nothing: the writer completes it, then stops.
	_, err = f.Write([]byte(`.5, "seq_num": 2001, "data": {"I0": 3000.0, "Ion Ch 1": 2000}, "timestamps": {}}]` + "\n"))
	must(err)
	must(w.Write("stop", m{"uid": "s", "run_start": "live-1", "time": 100.0, "exit_status": "success", "num_events": m{"primary": int64(2001)}}))
	r3, err := c.Run(ctx, "live-1")
	must(err)
	if n := countRows(t, r3, "d1"); n != 2001 {
		t.Fatalf("third snapshot: %d rows, want 2001", n)
	}
	if s, err := r3.Stop(ctx); err != nil || s.NumEvents["primary"] != 2001 {
		t.Fatalf("Stop = %v, %v", s, err)
	}
	if s := logs.String(); s != "" {
		t.Errorf("unexpected log output:\n%s", s)
	}
}

// TestConcurrentUse lists, opens and reads runs from several goroutines while a writer appends
// to a live run; run with -race.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeRuns(t, dir, catalogtest.Runs())
	path := filepath.Join(dir, "live.jsonl")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := jsonl.NewWriter(f)
	_ = w.Write("start", m{"uid": "live-2", "time": 1.0})
	_ = w.Write("descriptor", m{"uid": "d1", "run_start": "live-2", "time": 2.0, "data_keys": m{"I0": m{"dtype": "number", "shape": []any{}}}})
	c, err := jsonl.Open([]string{dir}, jsonl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := c.Runs(ctx); err != nil {
					t.Error(err)
					return
				}
				uid := []string{"live-2", catalogtest.UIDPages}[g%2]
				run, err := c.Run(ctx, uid)
				if err != nil {
					t.Error(err)
					return
				}
				descs, _ := run.Descriptors(ctx)
				for _, d := range descs {
					prev := -1
					_ = run.EventPages(ctx, d.UID, 0, -1, nil, func(p *catalog.EventPage) error {
						for i := range p.Len() {
							if int(p.SeqNum[i]) <= prev {
								t.Errorf("seq_num %d after %d", p.SeqNum[i], prev)
							}
							prev = int(p.SeqNum[i])
						}
						return nil
					})
				}
				_, _ = run.Stop(ctx)
			}
		}()
	}
	for i := range 3000 {
		ev := event(i)
		ev["data"] = m{"I0": 1.0}
		_ = w.Write("event", ev)
	}
	close(done)
	wg.Wait()
}
