package jsonl_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
)

const (
	badStart = `["start", {"uid": "bad-run", "time": 1.0}]`
	badDesc  = `["descriptor", {"uid": "d1", "run_start": "bad-run", "time": 2.0, "data_keys": {"x": {"dtype": "number", "shape": [], "source": "s"}}}]`
	goodEv1  = `["event", {"descriptor": "d1", "time": 3.0, "seq_num": 1, "data": {"x": 1.5}, "timestamps": {"x": 3.0}}]`
	goodEv2  = `["event", {"uid": "u2", "time": 4.0, "seq_num": 2, "data": {"x": 2.5}, "timestamps": {"x": 4.0}, "descriptor": "d1"}]`
)

// openBad writes a good fixture run and bad.jsonl with the given lines, and opens both.
func openBad(t *testing.T, lines ...string) (*jsonl.Catalog, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	writeRuns(t, dir, catalogtest.Runs()[:1])
	if err := os.WriteFile(filepath.Join(dir, "bad.jsonl"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger(t)
	c, err := jsonl.Open([]string{dir}, jsonl.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

func logLines(logs *logBuffer) []string {
	s := strings.TrimSpace(logs.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// checkGoodRun reads the fixture run in full: a bad file must not affect it.
func checkGoodRun(t *testing.T, c catalog.Catalog) {
	t.Helper()
	run, err := c.Run(context.Background(), catalogtest.UIDScalars)
	if err != nil {
		t.Fatal(err)
	}
	if n := countAll(t, run, catalogtest.UIDScalars+"-d1"); n != 5 {
		t.Errorf("good run: %d events, want 5", n)
	}
}

func countAll(t *testing.T, run catalog.Run, desc string) (n int) {
	t.Helper()
	err := run.EventPages(context.Background(), desc, 0, -1, nil, func(p *catalog.EventPage) error {
		n += p.Len()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBadLines puts one bad line between two good events: it is skipped with one log line naming
// file:line and the reason, and the run's other documents and the other run read as usual.
func TestBadLines(t *testing.T) {
	for _, tc := range []struct{ name, line, reason string }{
		{"truncated", `["event", {"descriptor": "d1", "time": 1.0, "seq_`, "unterminated string"},
		{"garbage", `hello world`, "not a"},
		{"binary", "\x00\xff\x01[{", "not a"},
		{"deep", strings.Repeat("[", 100000), "not a"},
		{"deep doc", `["event", {"data": ` + strings.Repeat("[", 100000), "nesting"},
		{"unknown name", `["evnt", {}]`, "unknown document name"},
		{"not an object", `["event", [1, 2]]`, "want object"},
		{"trailing", `["event", {"descriptor": "d1", "time": 1.0, "seq_num": 9, "data": {}}] x`, "offset"},
		{"missing seq_num", `["event", {"descriptor": "d1", "time": 1.0, "data": {"x": 1.0}}]`, `missing key \"seq_num\"`},
		{"missing descriptor", `["event", {"time": 1.0, "seq_num": 9, "data": {"x": 1.0}}]`, `missing key \"descriptor\"`},
		{"time is a string", `["event", {"descriptor": "d1", "time": "now", "seq_num": 9, "data": {"x": 1.0}}]`, `key \"time\": want number`},
		{"data is a list", `["event", {"descriptor": "d1", "time": 1.0, "seq_num": 9, "data": [1.0]}]`, `key \"data\": want object`},
		{"page time not a list", `["event_page", {"descriptor": "d1", "time": 1.0, "seq_num": [9], "data": {}}]`, `key \"time\": want list`},
		{"descriptor without data_keys", `["descriptor", {"uid": "d2", "run_start": "bad-run", "time": 2.0}]`, `missing key \"data_keys\"`},
		{"stop with bad exit_status", `["stop", {"uid": "s", "run_start": "bad-run", "time": 9.0, "exit_status": 0}]`, "exit_status"},
		{"resource without spec", `["resource", {"uid": "r", "root": "/", "resource_path": "a"}]`, `missing key \"spec\"`},
		{"datum without resource", `["datum", {"datum_kwargs": {}}]`, `missing key \"resource\"`},
		{"second start", badStart, "second start"},
		{"timestamps not an object", `["event", {"descriptor": "d1", "time": 1.0, "seq_num": 9, "data": {"x": 1.0}, "timestamps": null}]`, `key \"timestamps\": want object`},
		{"ragged page", `["event_page", {"descriptor": "d1", "time": [1.0, 2.0], "seq_num": [1, 2], "data": {"x": [1]}}]`, `data \"x\" has 1 values in a page of 2 rows`},
		{"ragged timestamps", `["event_page", {"descriptor": "d1", "time": [1.0, 2.0], "seq_num": [1, 2], "data": {"x": [1, 2]}, "timestamps": {"x": [1, 2, 3]}}]`, `timestamps \"x\" has 3 values`},
		{"short seq_num", `["event_page", {"descriptor": "d1", "time": [1.0, 2.0], "seq_num": [1], "data": {"x": [1, 2]}}]`, "1 seq_num values for 2 times"},
		{"nested beyond the decoder", `["event", {"descriptor": "d1", "time": 1.0, "seq_num": 9, "data": {"x": ` + strings.Repeat("[", 511) + strings.Repeat("]", 511) + `}}]`, "nesting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c, logs := openBad(t, badStart, badDesc, goodEv1, tc.line, goodEv2, "")
			starts, err := c.Runs(ctx)
			if err != nil || len(starts) != 2 {
				t.Fatalf("Runs = %d, %v; want 2", len(starts), err)
			}
			run, err := c.Run(ctx, "bad-run")
			if err != nil {
				t.Fatal(err)
			}
			descs, err := run.Descriptors(ctx)
			if err != nil || len(descs) != 1 {
				t.Fatalf("Descriptors = %d, %v; want 1", len(descs), err)
			}
			if n := countAll(t, run, "d1"); n != 2 {
				t.Errorf("%d events, want 2", n)
			}
			if _, err := run.Stop(ctx); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("Stop: %v, want ErrNotFound", err)
			}
			// A second Run of the unchanged file neither re-indexes nor logs again.
			run2, _ := c.Run(ctx, "bad-run")
			countAll(t, run2, "d1")
			checkGoodRun(t, c)
			lines := logLines(logs)
			if len(lines) != 1 || !strings.Contains(lines[0], "bad.jsonl:4") || !strings.Contains(lines[0], tc.reason) || !strings.Contains(lines[0], "offset=") {
				t.Errorf("log: want one line naming bad.jsonl:4 and %q, have %q", tc.reason, lines)
			}
		})
	}
}

// TestBadStart: a file whose start cannot be read is left out with one warning, not repeated
// while the file is unchanged; files being created (no complete first line) are skipped silently.
func TestBadStart(t *testing.T) {
	for _, tc := range []struct {
		name, content, reason string
	}{
		{"garbage", "garbage\n", "not a"},
		{"missing uid", `["start", {"time": 1.0}]` + "\n", `missing key \"uid\"`},
		{"not a start", badDesc + "\n" + badStart + "\n", "not a start"},
		{"truncated", `["start", {"uid": "x", "ti` + "\n", "unterminated string"},
		{"bad time", `["start", {"uid": "x", "time": "noon"}]` + "\n", "want number"},
		{"NaN uid", `["start", {"uid": NaN, "time": 1.0}]` + "\n", "want string"},
		{"empty", "", ""},
		{"incomplete", `["start", {"uid": "x", "time": 1.0}]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, logs := openBad(t, tc.content)
			for range 2 {
				starts, err := c.Runs(context.Background())
				if err != nil || len(starts) != 1 || starts[0].UID != catalogtest.UIDScalars {
					t.Fatalf("Runs = %v, %v; want the good run only", starts, err)
				}
			}
			checkGoodRun(t, c)
			lines := logLines(logs)
			switch {
			case tc.reason == "" && len(lines) != 0:
				t.Errorf("unexpected log %q", lines)
			case tc.reason != "" && (len(lines) != 1 || !strings.Contains(lines[0], "bad.jsonl") || !strings.Contains(lines[0], tc.reason)):
				t.Errorf("log: want one line naming bad.jsonl and %q, have %q", tc.reason, lines)
			}
		})
	}
}

// TestDuplicateUID: two files with one start uid list once (filestore's rule: the newer mtime,
// then the smaller path), with one warning naming both files.
func TestDuplicateUID(t *testing.T) {
	dir := t.TempDir()
	content := []byte(strings.Join([]string{badStart, badDesc, goodEv1, ""}, "\n"))
	for _, name := range []string{"a.jsonl", "b.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log, logs := testLogger(t)
	c, err := jsonl.Open([]string{dir}, jsonl.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		starts, err := c.Runs(context.Background())
		if err != nil || len(starts) != 1 {
			t.Fatalf("Runs = %d, %v; want 1", len(starts), err)
		}
	}
	if n := countAll(t, mustRun(t, c, "bad-run"), "d1"); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	if lines := logLines(logs); len(lines) != 1 || !strings.Contains(lines[0], "b.jsonl") || !strings.Contains(lines[0], "a.jsonl") {
		t.Errorf("log: want one warning naming both files, have %q", lines)
	}
}

func mustRun(t *testing.T, c catalog.Catalog, uid string) catalog.Run {
	t.Helper()
	run, err := c.Run(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	return run
}
