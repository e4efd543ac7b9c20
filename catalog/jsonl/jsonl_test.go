package jsonl_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
)

// logBuffer collects log output of a test; slog's handlers serialize their writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	var b logBuffer
	t.Cleanup(func() {
		if s := b.String(); s != "" {
			t.Logf("log:\n%s", s)
		}
	})
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

func writeRuns(t *testing.T, dir string, runs [][]catalog.Document) {
	t.Helper()
	for i, docs := range runs {
		// Names need not be uids.
		if err := jsonl.WriteRun(filepath.Join(dir, fmt.Sprintf("run-%d.jsonl", i)), docs); err != nil {
			t.Fatal(err)
		}
	}
}

func TestContract(t *testing.T) {
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		dir := t.TempDir()
		writeRuns(t, dir, runs)
		log, _ := testLogger(t)
		c, err := jsonl.Open([]string{dir}, jsonl.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestPatterns(t *testing.T) {
	dir := t.TempDir()
	runs := catalogtest.Runs()
	writeRuns(t, dir, runs)
	for _, tc := range []struct {
		patterns []string
		want     int
	}{
		{[]string{dir}, len(runs)},
		{[]string{filepath.Join(dir, "run-[01].jsonl")}, 2},
		{[]string{filepath.Join(dir, "run-3.jsonl"), filepath.Join(dir, "run-*.jsonl")}, len(runs)},
		{[]string{filepath.Join(dir, "missing.jsonl")}, 0},
	} {
		c, err := jsonl.Open(tc.patterns, jsonl.Options{})
		if err != nil {
			t.Fatal(err)
		}
		starts, err := c.Runs(context.Background())
		if err != nil || len(starts) != tc.want {
			t.Errorf("Runs(%q) = %d runs, %v; want %d", tc.patterns, len(starts), err, tc.want)
		}
	}
	if _, err := jsonl.Open([]string{"[bad"}, jsonl.Options{}); err == nil {
		t.Error("Open([bad) succeeded")
	}
}
