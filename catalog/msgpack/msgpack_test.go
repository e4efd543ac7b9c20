package msgpack

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
)

// logBuffer is a slog handler target that tests can count lines in.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// testLogger returns a logger writing text lines (all levels) to a buffer.
func testLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// writeRuns writes each run to dir/<start uid>.msgpack.
func writeRuns(t testing.TB, dir string, runs [][]catalog.Document) {
	t.Helper()
	for _, docs := range runs {
		uid := docs[0].Doc["uid"].(string)
		if err := WriteRun(filepath.Join(dir, uid+".msgpack"), docs); err != nil {
			t.Fatal(err)
		}
	}
}

func openDir(t testing.TB, dir string) (*Catalog, *logBuffer) {
	t.Helper()
	log, lb := testLogger()
	c, err := Open([]string{dir}, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return c, lb
}

func TestContract(t *testing.T) {
	var lb *logBuffer
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		dir := t.TempDir()
		writeRuns(t, dir, runs)
		var c *Catalog
		c, lb = openDir(t, dir)
		return c
	})
	if lines := lb.lines(); len(lines) != 0 {
		t.Errorf("log lines reading the fixtures: %q", lines)
	}
}

func mustRun(t testing.TB, c catalog.Catalog, uid string) catalog.Run {
	t.Helper()
	r, err := c.Run(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
