package tiled

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
)

// TestContract runs the catalog contract through the synthetic server: what a run's
// documents say comes back through the documents route unchanged.
func TestContract(t *testing.T) {
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		f := newFake(t, runs)
		// KeepExternal: the contract's external field is compared as stored.
		c, err := Open(context.Background(), f.url(), Options{Backoff: time.Millisecond, KeepExternal: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// TestListingPages: 1,000 runs cost 4 requests of page[limit]=300; every run once.
func TestListingPages(t *testing.T) {
	f := newFake(t, manyRuns(1000))
	c, err := Open(context.Background(), f.url(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.takeQueries()
	starts, err := c.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range starts {
		seen[s.UID] = true
	}
	if len(starts) != 1000 || len(seen) != 1000 {
		t.Errorf("%d runs (%d distinct), want 1000", len(starts), len(seen))
	}
	q := f.takeQueries()
	if len(q) != 4 {
		t.Errorf("%d requests, want 4: %v", len(q), q)
	}
	for _, s := range q {
		if !strings.Contains(s, "page%5Blimit%5D=300") || !strings.Contains(s, "fields=metadata") {
			t.Errorf("listing request %s: want fields=metadata and page[limit]=300", s)
		}
	}
}

// TestFind: server-side filters are sent, the rest of the query applies here.
func TestFind(t *testing.T) {
	f := newFake(t, manyRuns(10))
	var logs bytes.Buffer
	c, err := Open(context.Background(), f.url(), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.takeQueries()
	got, err := c.Find(context.Background(), map[string]any{"plan_name": "scan", "scan_id": map[string]any{"$gte": int64(4)}, "$or": []any{map[string]any{"scan_id": int64(5)}, map[string]any{"scan_id": int64(9)}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, s := range got {
		ids = append(ids, s.ScanID)
	}
	if len(ids) != 2 || ids[0] != 5 || ids[1] != 9 {
		t.Errorf("scan ids %v, want [5 9]", ids)
	}
	q := f.takeQueries()
	if len(q) != 1 || !strings.Contains(q[0], "filter%5Beq%5D%5Bcondition%5D%5Bvalue%5D=%22scan%22") || !strings.Contains(q[0], "filter%5Bcomparison%5D%5Bcondition%5D%5Boperator%5D=ge") {
		t.Errorf("queries %v: want eq and comparison filters", q)
	}
	if !strings.Contains(logs.String(), "client-side") || !strings.Contains(logs.String(), "$or") {
		t.Errorf("no log line says $or runs client-side: %s", logs.String())
	}
}

func openFake(t *testing.T, f *fake, o Options) *Catalog {
	t.Helper()
	if o.Backoff == 0 {
		o.Backoff = time.Millisecond
	}
	c, err := Open(context.Background(), f.url(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// frameBytes is frame i of bigRun's array.
func frameBytes(data []byte, i, h, w int) []byte { return data[i*h*w*2 : (i+1)*h*w*2] }

// TestArrayFaults: retries after a 500 (on a fresh connection) and a dropped connection
// succeed; a persistent 503 fails naming URL and status; an over-long, a short and a
// decompression-bomb body fail without spending the memory; a server that does not answer
// fails within the timeout; other fields and runs keep reading.
func TestArrayFaults(t *testing.T) {
	ctx := context.Background()
	docs, data := bigRun("big00000-0000-4000-8000-000000000000", 10, 4, 6)
	f := newFake(t, [][]catalog.Document{docs})
	f.addArray("big00000-0000-4000-8000-000000000000", "primary", "img", "u", 2, []int{10, 4, 6}, data)
	c := openFake(t, f, Options{Timeout: 500 * time.Millisecond, WholeArrayBytes: -1})
	run, err := c.Run(ctx, "big00000-0000-4000-8000-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	ar := run.(catalog.ArrayReader)
	desc := "big00000-0000-4000-8000-000000000000-d"
	descr, shape, ok, err := ar.ArrayField(ctx, desc, "img")
	if err != nil || !ok || descr != "<u2" || len(shape) != 2 {
		t.Fatalf("ArrayField = %q %v %v %v", descr, shape, ok, err)
	}
	frame := make([]byte, 48)
	read := func(i int) error { return ar.ReadArray(ctx, desc, "img", i, i+1, frame) }

	// One 500, then the answer: the retry asks for a fresh connection.
	var fails atomic.Int32
	var closeAsked atomic.Bool
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/array/") {
			return false
		}
		if fails.Add(1) == 1 {
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"detail":"Internal Server Error"}`))
			return true
		}
		closeAsked.Store(r.Close)
		return false
	})
	if err := read(3); err != nil || !bytes.Equal(frame, frameBytes(data, 3, 4, 6)) {
		t.Errorf("after one 500: %v", err)
	}
	if !closeAsked.Load() {
		t.Error("the retry after a 500 did not ask for a fresh connection")
	}

	// A dropped connection, then the answer.
	fails.Store(0)
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/array/") && fails.Add(1) == 1 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			_ = conn.Close()
			return true
		}
		return false
	})
	if err := read(4); err != nil || !bytes.Equal(frame, frameBytes(data, 4, 4, 6)) {
		t.Errorf("after a dropped connection: %v", err)
	}

	// Always 503: fails after the retries, naming URL and status.
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/array/") {
			w.WriteHeader(503)
			return true
		}
		return false
	})
	before := f.requests.Load()
	err = read(5)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 503 || !strings.Contains(err.Error(), "/api/v1/array/full/big00000-0000-4000-8000-000000000000/primary/data/img?slice=5") || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: err = %v", err)
	}
	if n := f.requests.Load() - before; n != int64(1+c.opts.Retries) {
		t.Errorf("503: %d requests, want %d", n, 1+c.opts.Retries)
	}

	// Bodies of the wrong size, and a gzip bomb: 16 MiB of zeros in 16 KiB.
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write(make([]byte, 16<<20))
	_ = zw.Close()
	for name, body := range map[string][]byte{"long": make([]byte, 49), "short": make([]byte, 47), "bomb": bomb.Bytes()} {
		f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if strings.Contains(r.URL.Path, "/array/") {
				w.Header().Set("Content-Type", "application/octet-stream")
				if name == "bomb" {
					w.Header().Set("Content-Encoding", "gzip")
				}
				_, _ = w.Write(body)
				return true
			}
			return false
		})
		if err := read(6); err == nil || !strings.Contains(err.Error(), "slice=6") {
			t.Errorf("%s body: err = %v, want an error naming the URL", name, err)
		}
	}

	// No answer: fails within the timeout (and its retries), not later.
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/array/") {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return true
		}
		return false
	})
	start := time.Now()
	if err := read(7); err == nil || !strings.Contains(err.Error(), "within") {
		t.Errorf("no answer: err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("no answer: failed after %v, want within the 500ms timeout", d)
	}

	// The server is back: the field and the run's events read.
	f.setHook(nil)
	if err := read(7); err != nil || !bytes.Equal(frame, frameBytes(data, 7, 4, 6)) {
		t.Errorf("after recovery: %v", err)
	}
	n := 0
	if err := run.EventPages(ctx, desc, 0, -1, nil, func(p *catalog.EventPage) error { n += p.Len(); return nil }); err != nil || n != 10 {
		t.Errorf("events: %d, %v", n, err)
	}
}

// TestMaxRequests: a long read in parallel pieces never has more than MaxRequests in flight,
// and the pieces put together are the array.
func TestMaxRequests(t *testing.T) {
	ctx := context.Background()
	uid := "big00000-0000-4000-8000-000000000001"
	docs, data := bigRun(uid, 64, 64, 64)
	f := newFake(t, [][]catalog.Document{docs})
	f.addArray(uid, "primary", "img", "u", 2, []int{64, 64, 64}, data)
	f.latency = 5 * time.Millisecond
	c := openFake(t, f, Options{MaxRequests: 3, ArrayRequestBytes: 8192, WholeArrayBytes: -1})
	run, err := c.Run(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	ar := run.(catalog.ArrayReader)
	if _, _, ok, err := ar.ArrayField(ctx, uid+"-d", "img"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	before := f.requests.Load()
	dst := make([]byte, 60*64*64*2)
	if err := ar.ReadArray(ctx, uid+"-d", "img", 2, 62, dst); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, data[2*8192:62*8192]) {
		t.Error("rows [2, 62) differ")
	}
	if n := f.requests.Load() - before; n != 60 {
		t.Errorf("%d requests, want 60 (one per 8 KiB row)", n)
	}
	if m := f.maxFlight.Load(); m > 3 {
		t.Errorf("%d requests in flight, want at most 3", m)
	}
}

// TestETag: metadata is re-validated with If-None-Match; a 304 serves the kept body.
func TestETag(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, manyRuns(2))
	c := openFake(t, f, Options{})
	var revalidated atomic.Int32
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("If-None-Match") != "" {
			revalidated.Add(1)
		}
		return false
	})
	for i := 0; i < 2; i++ {
		run, err := c.Run(ctx, "00000001-0000-4000-8000-000000000000")
		if err != nil {
			t.Fatal(err)
		}
		if run.Start().ScanID != 1 {
			t.Errorf("scan_id %d", run.Start().ScanID)
		}
	}
	if revalidated.Load() != 1 {
		t.Errorf("%d re-validations, want 1", revalidated.Load())
	}
}

// TestBadResponses: malformed answers fail with errors naming the URL, never a panic.
func TestBadResponses(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, manyRuns(1))
	c := openFake(t, f, Options{})
	uid := "00000000-0000-4000-8000-000000000000"
	for _, body := range []string{"", "{", `{"data": 5}`, `{"data": {"attributes": {"metadata": {"start": {"uid": 5}}}}}`, "[1, 2", `{"name": "start"}`} {
		f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
			return true
		})
		if _, err := c.Run(ctx, uid); err == nil || !strings.Contains(err.Error(), f.url()) {
			t.Errorf("body %q: Run err = %v, want an error naming the URL", body, err)
		}
	}
	f.setHook(nil)
	run, err := c.Run(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		_, _ = w.Write([]byte("{\"name\": \"start\", \"doc\": {\"uid\": \"" + uid + "\", \"time\": 1}}\n{\"name\": \"event\", \"doc\": [}\n"))
		return true
	})
	if _, err := run.Descriptors(ctx); err == nil || !strings.Contains(err.Error(), "documents/"+uid) {
		t.Errorf("bad documents: err = %v", err)
	}
	f.setHook(nil)
	if d, err := run.Descriptors(ctx); err != nil || len(d) != 1 {
		t.Errorf("after the bad answer (not kept): %v %v", d, err)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, base string
		path     []string
		err      string
	}{
		{"http://h:8000/api/v1", "http://h:8000/api/v1", nil, ""},
		{"https://h/tiled/api/v1/raw/bmm/", "https://h/tiled/api/v1", []string{"raw", "bmm"}, ""},
		{"http://h/api/v1/a%20b", "http://h/api/v1", []string{"a b"}, ""},
		{"http://user:pw@h/api/v1", "", nil, "credentials"},
		{"http://h/api/v1?api_key=secret", "", nil, "api_key"},
		{"http://h/v1", "", nil, "/api/v1"},
		{"ftp://h/api/v1", "", nil, "http"},
	} {
		base, path, err := ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "pw") {
				t.Errorf("ParseURL(%q) err = %v, want one about %q without the secret", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || base.String() != tc.base || strings.Join(path, "|") != strings.Join(tc.path, "|") {
			t.Errorf("ParseURL(%q) = %v %q %v, want %s %q", tc.in, base, path, err, tc.base, tc.path)
		}
	}
}

// TestOutage: while the server is unreachable the last listing is served and its runs open
// (their data fails fast), with one log line per outage; recovery is automatic.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, manyRuns(3))
	var logs syncBuffer
	c := openFake(t, f, Options{Retries: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, err := c.Runs(ctx); err != nil {
		t.Fatal(err)
	}
	f.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		conn, _, _ := w.(http.Hijacker).Hijack()
		_ = conn.Close()
		return true
	})
	for i := 0; i < 3; i++ {
		starts, err := c.Runs(ctx)
		if err != nil || len(starts) != 3 {
			t.Fatalf("listing during an outage: %d runs, %v", len(starts), err)
		}
	}
	run, err := c.Run(ctx, "00000002-0000-4000-8000-000000000000")
	if err != nil || run.Start().ScanID != 2 {
		t.Fatalf("run during an outage: %v", err)
	}
	if _, err := run.Descriptors(ctx); err == nil {
		t.Error("documents during an outage: no error")
	}
	if _, err := c.Run(ctx, "99999999-0000-4000-8000-000000000000"); err == nil {
		t.Error("a run not in the last listing opened during an outage")
	}
	if n := strings.Count(logs.String(), "unreachable"); n != 1 {
		t.Errorf("%d outage log lines, want 1:\n%s", n, logs.String())
	}
	f.setHook(nil)
	if _, err := run.Descriptors(ctx); err != nil {
		t.Errorf("after the outage: %v", err)
	}
	if _, err := c.Runs(ctx); err != nil || !strings.Contains(logs.String(), "reachable again") {
		t.Errorf("after the outage: %v\n%s", err, logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunVersion: the catalog names a run's version without opening it: from the listing
// (no request) or from its metadata (one), equal to the run's own Version; a live run has
// none; another server gives another key.
func TestRunVersion(t *testing.T) {
	ctx := context.Background()
	runs := append(manyRuns(2), catalogtest.Runs()[2]) // the last one is live
	f := newFake(t, runs)
	c := openFake(t, f, Options{})
	uid := "00000001-0000-4000-8000-000000000000"
	before := f.requests.Load()
	v1, err := c.RunVersion(ctx, uid)
	if err != nil || v1 == "" || f.requests.Load()-before != 1 {
		t.Errorf("RunVersion before a listing = %q, %v after %d requests", v1, err, f.requests.Load()-before)
	}
	if _, err := c.Runs(ctx); err != nil {
		t.Fatal(err)
	}
	before = f.requests.Load()
	v2, _ := c.RunVersion(ctx, uid)
	if v2 != v1 || f.requests.Load() != before {
		t.Errorf("RunVersion from the listing = %q (%d requests), want %q", v2, f.requests.Load()-before, v1)
	}
	run, _ := c.Run(ctx, uid)
	if v, _ := run.(catalog.Versioner).Version(ctx); v != v1 {
		t.Errorf("Version = %q, RunVersion %q", v, v1)
	}
	if v, err := c.RunVersion(ctx, catalogtest.UIDLive); v != "" || err != nil {
		t.Errorf("live run: %q, %v", v, err)
	}
	if _, err := c.RunVersion(ctx, "99999999-0000-4000-8000-000000000000"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("missing run: %v", err)
	}
	f2 := newFake(t, runs)
	c2 := openFake(t, f2, Options{})
	if v, _ := c2.RunVersion(ctx, uid); v == v1 || v == "" {
		t.Errorf("another server's key %q, want one other than %q", v, v1)
	}
}
