package mongo

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

// logBuffer collects log output from the driver's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServerGoesAway stops the server under an open catalog: calls fail within the timeout
// (no hang), one line is logged per outage, and calls succeed again once it is back.
func TestServerGoesAway(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	srv := mongotest.Start(t)
	ctx := context.Background()
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := openNormalized(t, srv, srv.URI("f_mds"), srv.URI("f_assets"), catalogtest.Runs(), Options{Timeout: timeout, Logger: log})
	run, err := c.Run(ctx, catalogtest.UIDScalars)
	if err != nil {
		t.Fatal(err)
	}
	descs, err := run.Descriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	calls := map[string]func() error{
		"Runs": func() error { _, err := c.Runs(ctx); return err },
		"Run":  func() error { _, err := c.Run(ctx, catalogtest.UIDPages); return err },
		"EventPages": func() error {
			return run.EventPages(ctx, descs[0].UID, 0, -1, nil, func(*catalog.EventPage) error { return nil })
		},
		"Datums": func() error { return run.Datums(ctx, "r", func(*catalog.DatumPage) error { return nil }) },
	}
	// Concurrently: each call fails within about the timeout, however many are waiting.
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			start := time.Now()
			err := call()
			took := time.Since(start)
			if err == nil {
				t.Errorf("%s with the server stopped: no error", name)
			}
			if took > 2*timeout+time.Second { // slack for a loaded machine; a hang takes forever
				t.Errorf("%s with the server stopped took %v, want about %v", name, took, timeout)
			}
			t.Logf("%s with the server stopped: %v after %v", name, err, took.Round(time.Millisecond))
		})
	}
	wg.Wait()

	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := c.Runs(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Runs after the server came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Errorf("%s after the server came back: %v", name, err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "mongo server unreachable"); n != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "mongo server reachable again") {
		t.Errorf("no recovery line:\n%s", out)
	}
}

// TestUnreachable opens a catalog on a port nobody listens on: a clear error, in time.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	srv := mongotest.Start(t)
	srv.Stop()
	start := time.Now()
	_, err := OpenNormalized(context.Background(), "mongodb://bob:s3cret@"+srv.Addr()+"/mds", "", Options{Timeout: time.Second})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("open of a stopped server: %v after %v", err, time.Since(start))
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "bob") {
		t.Errorf("error shows credentials: %v", err)
	}
	t.Log(err)
	_, err = OpenEmbedded(context.Background(), srv.URI("emb"), Options{Timeout: time.Second})
	if err == nil {
		t.Fatal("open embedded of a stopped server: no error")
	}
}
