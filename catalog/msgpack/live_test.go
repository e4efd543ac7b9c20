package msgpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
)

type m = map[string]any

// liveDocs returns a start, a descriptor and n events of a run with the given uid.
func liveDocs(uid string, n int) []catalog.Document {
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1.5e9, "scan_id": int64(7), "plan_name": "count"}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d", "run_start": uid, "time": 1.5e9, "name": "primary",
			"data_keys": m{"I0": m{"dtype": "number", "shape": []any{}, "source": "PV:I0"}}}},
	}
	return append(docs, events(uid, 0, n)...)
}

// events returns single-row event pages first..first+n-1 of liveDocs' run.
func events(uid string, first, n int) []catalog.Document {
	var docs []catalog.Document
	for i := first; i < first+n; i++ {
		t := 1.5e9 + float64(i)
		docs = append(docs, catalog.Document{Name: "event_page", Doc: m{"descriptor": uid + "-d", "uid": []any{fmt.Sprint(uid, i)},
			"time": []any{t}, "seq_num": []any{int64(i + 1)}, "data": m{"I0": []any{float64(i) * 1.5}},
			"timestamps": m{"I0": []any{t}}, "filled": m{}}})
	}
	return docs
}

func stopDoc(uid string) catalog.Document {
	return catalog.Document{Name: "stop", Doc: m{"uid": uid + "-stop", "run_start": uid, "time": 1.6e9, "exit_status": "success"}}
}

// encode returns documents as a writer writes them.
func encode(t testing.TB, docs []catalog.Document) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, d := range docs {
		if err := w.Write(d.Name, d.Doc); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func appendFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// countEvents returns the number of rows of every descriptor of a run, by stream name.
func countEvents(t testing.TB, run catalog.Run) map[string]int {
	t.Helper()
	ctx := context.Background()
	descs, err := run.Descriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, d := range descs {
		err := run.EventPages(ctx, d.UID, 0, -1, nil, func(p *catalog.EventPage) error {
			out[d.Name] += p.Len()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func runUIDs(t testing.TB, c *Catalog) []string {
	t.Helper()
	starts, err := c.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, s := range starts {
		uids = append(uids, s.UID)
	}
	slices.Sort(uids)
	return uids
}

func TestGrowingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "live.msgpack")
	appendFile(t, path, encode(t, liveDocs("live", 2)))
	c, lb := openDir(t, dir)
	ctx := context.Background()

	run1 := mustRun(t, c, "live")
	if n := countEvents(t, run1)["primary"]; n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
	if _, err := run1.Stop(ctx); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Stop of a live run: %v, want ErrNotFound", err)
	}

	// Many more events (so that the stream gets several checkpoints) and a stop.
	more := encode(t, append(events("live", 2, 3000), stopDoc("live")))
	appendFile(t, path, more[:len(more)-10]) // the stop is half written
	run2 := mustRun(t, c, "live")
	if n := countEvents(t, run2)["primary"]; n != 3002 {
		t.Errorf("%d events after growth, want 3002", n)
	}
	if run2.(*run).ix.start != run1.(*run).ix.start {
		t.Error("the index was rebuilt, not extended")
	}
	if n := countEvents(t, run1)["primary"]; n != 2 {
		t.Errorf("the first snapshot sees %d events, want 2", n)
	}
	if _, err := run2.Stop(ctx); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Stop with a half-written stop: %v, want ErrNotFound", err)
	}
	mustRun(t, c, "live") // unchanged: the half-written stop is not logged again
	if lines := lb.lines(); len(lines) != 1 {
		t.Errorf("log: %q, want one line about the incomplete document", lines)
	}

	appendFile(t, path, more[len(more)-10:])
	run3 := mustRun(t, c, "live")
	if stop, err := run3.Stop(ctx); err != nil || stop.ExitStatus != "success" {
		t.Errorf("Stop = %v, %v", stop, err)
	}
	// A read from the middle starts near its row, not at the first event.
	var first int
	err := run3.EventPages(ctx, "live-d", 2500, 2501, nil, func(p *catalog.EventPage) error {
		if first == 0 {
			first = p.FirstRow
		}
		return nil
	})
	if err != nil || first > 2500 || first < 2500-checkpointRows {
		t.Errorf("EventPages from 2500: first page at row %d, %v", first, err)
	}
}

func TestFilesComeAndGo(t *testing.T) {
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.msgpack"), filepath.Join(dir, "b.msgpack")
	appendFile(t, pathA, encode(t, liveDocs("run-a", 1)))
	appendFile(t, filepath.Join(dir, "notes.txt"), []byte("not a run"))
	// An old directory: its listing is cached until its mtime moves.
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(dir, past, past); err != nil {
		t.Fatal(err)
	}
	c, lb := openDir(t, dir)
	ctx := context.Background()
	for range 2 {
		if got := runUIDs(t, c); !slices.Equal(got, []string{"run-a"}) {
			t.Fatalf("Runs = %v", got)
		}
	}
	appendFile(t, pathB, encode(t, liveDocs("run-b", 1)))
	if got := runUIDs(t, c); !slices.Equal(got, []string{"run-a", "run-b"}) {
		t.Fatalf("Runs after a new file = %v", got)
	}

	// The same path now holds another run of the same size: only the mtime tells.
	if err := os.WriteFile(pathA, encode(t, liveDocs("run-c", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(pathA, later, later); err != nil {
		t.Fatal(err)
	}
	if got := runUIDs(t, c); !slices.Equal(got, []string{"run-b", "run-c"}) {
		t.Fatalf("Runs after a rewrite = %v", got)
	}
	if _, err := c.Run(ctx, "run-a"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Run(run-a) after its file was rewritten: %v", err)
	}
	if n := countEvents(t, mustRun(t, c, "run-c"))["primary"]; n != 1 {
		t.Errorf("run-c has %d events", n)
	}

	if err := os.Remove(pathB); err != nil {
		t.Fatal(err)
	}
	if got := runUIDs(t, c); !slices.Equal(got, []string{"run-c"}) {
		t.Fatalf("Runs after a removal = %v", got)
	}
	if _, err := c.Run(ctx, "run-b"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Run(run-b) after removal: %v", err)
	}
	if lines := lb.lines(); len(lines) != 0 {
		t.Errorf("log: %q", lines)
	}
}

func TestDuplicateUID(t *testing.T) {
	dir := t.TempDir()
	older, newer := filepath.Join(dir, "old.msgpack"), filepath.Join(dir, "new.msgpack")
	appendFile(t, older, encode(t, liveDocs("same", 1)))
	appendFile(t, newer, encode(t, liveDocs("same", 4)))
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(older, past, past); err != nil {
		t.Fatal(err)
	}
	c, lb := openDir(t, dir)
	for range 3 {
		if got := runUIDs(t, c); !slices.Equal(got, []string{"same"}) {
			t.Fatalf("Runs = %v", got)
		}
	}
	if n := countEvents(t, mustRun(t, c, "same"))["primary"]; n != 4 {
		t.Errorf("%d events: not the newer file's 4", n)
	}
	if lines := lb.lines(); len(lines) != 1 || !bytes.Contains([]byte(lines[0]), []byte("old.msgpack")) {
		t.Errorf("log: %q, want one line naming the ignored file", lines)
	}
}

func TestPatterns(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, "x1.msgpack"), encode(t, liveDocs("x1", 1)))
	appendFile(t, filepath.Join(sub, "x2.mp"), encode(t, liveDocs("x2", 1)))
	appendFile(t, filepath.Join(sub, "x3.msgpack"), encode(t, liveDocs("x3", 1)))
	appendFile(t, filepath.Join(sub, "x4.msgpack"), encode(t, liveDocs("x4", 1)))
	appendFile(t, filepath.Join(dir, ".hidden.msgpack"), encode(t, liveDocs("hidden", 1)))
	log, lb := testLogger()
	c, err := Open([]string{filepath.Join(dir, "*.msgpack"), filepath.Join(sub, "x2.mp"), sub,
		filepath.Join(dir, "s?b", "x4.*"), filepath.Join(dir, "missing"), filepath.Join(dir, "nodir", "*.msgpack")}, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := runUIDs(t, c); !slices.Equal(got, []string{"x1", "x2", "x3", "x4"}) {
			t.Errorf("Runs = %v", got)
		}
	}
	if lines := lb.lines(); len(lines) != 0 {
		t.Errorf("log: %q", lines)
	}
	if _, err := Open([]string{"[bad"}, Options{}); err == nil {
		t.Error("Open with a malformed glob succeeded")
	}
}

// TestConcurrentUse lists, opens and reads runs from several goroutines while a writer
// appends to a live run (run it with -race).
func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	writeRuns(t, dir, catalogtest.Runs())
	live := filepath.Join(dir, "growing.msgpack")
	appendFile(t, live, encode(t, liveDocs("growing", 1)))
	c, _ := openDir(t, dir)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i < 200; i++ {
			appendFile(t, live, encode(t, events("growing", i, 1)))
		}
	})
	for range 4 {
		wg.Go(func() {
			last := 0
			for range 25 {
				starts, err := c.Runs(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				for _, s := range starts {
					run, err := c.Run(ctx, s.UID)
					if err != nil {
						t.Error(err)
						return
					}
					n := countEvents(t, run)["primary"]
					if s.UID == "growing" {
						if n < last {
							t.Errorf("the live run went from %d to %d events", last, n)
						}
						last = n
					}
				}
			}
		})
	}
	wg.Wait()
	if n := countEvents(t, mustRun(t, c, "growing"))["primary"]; n != 200 {
		t.Errorf("%d events at the end, want 200", n)
	}
}
