package table

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/memory"
)

type m = map[string]any

const uid = "e0000000-0000-4000-8000-000000000001"

// events makes a run of one "primary" stream whose events carry the given data values (one
// map per event) under the given data keys.
func events(keys m, data []m, extra ...catalog.Document) []catalog.Document {
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "d1", "run_start": uid, "time": 1.0, "name": "primary", "data_keys": keys}},
	}
	for i, d := range data {
		ts := m{}
		for k := range d {
			ts[k] = 100.0 + float64(i)
		}
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"descriptor": "d1", "uid": fmt.Sprint("e", i),
			"time": 10.0 + float64(i), "seq_num": int64(i + 1), "data": d, "timestamps": ts}})
	}
	docs = append(docs, extra...)
	return append(docs, catalog.Document{Name: "stop", Doc: m{"uid": "s1", "run_start": uid, "time": 99.0, "exit_status": "success"}})
}

// countingRun counts a run's EventPages calls.
type countingRun struct {
	catalog.Run
	pages *int
}

func (r countingRun) EventPages(ctx context.Context, d string, from, to int, f []string, fn func(*catalog.EventPage) error) error {
	*r.pages++
	return r.Run.EventPages(ctx, d, from, to, f, fn)
}

type env struct {
	t     testing.TB
	cfg   *Config
	run   catalog.Run
	pages int
	logs  *bytes.Buffer
}

// newEnv opens the run of docs with a cache store in dir ("" for none).
func newEnv(t testing.TB, docs []catalog.Document, dir string) *env {
	t.Helper()
	cat, err := memory.New(docs)
	if err != nil {
		t.Fatal(err)
	}
	run, err := cat.Run(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, logs: &bytes.Buffer{}}
	e.run = countingRun{run, &e.pages}
	e.cfg = &Config{Logger: slog.New(slog.NewTextHandler(e.logs, nil)), Stats: &Stats{}}
	if dir != "" {
		st, err := cache.Open(cache.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		e.cfg.Store = st
	}
	return e
}

func (e *env) table(version string) *Table {
	e.t.Helper()
	descs, _ := e.run.Descriptors(context.Background())
	s := NewStream(e.cfg, e.run, NewExternals(e.run, nil), "primary", descs, nil, version)
	tb, err := s.Table(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	// With a store, every table of these tests must be stored, not served around it.
	if e.cfg.Store != nil && e.cfg.Stats.CacheFailed.Load() != 0 {
		e.t.Fatalf("the table was not stored: %s", e.logs)
	}
	return tb
}

// readAll reads a file through one open, in pieces of n bytes.
func readAll(t *testing.T, f File, n int) []byte {
	t.Helper()
	h, err := f.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var out []byte
	buf := make([]byte, n)
	for {
		k, err := h.ReadAt(context.Background(), buf, int64(len(out)))
		out = append(out, buf[:k]...)
		if errors.Is(err, io.EOF) || (err == nil && k == 0) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if int64(len(out)) != f.Size() {
		t.Errorf("read %d bytes, size says %d", len(out), f.Size())
	}
	return out
}

// npyOf reads a column's .npy and returns its header dict and data.
func npyOf(t *testing.T, c *Column) (string, []byte) {
	t.Helper()
	f, err := c.NPY(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	b := readAll(t, f, 7)
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		t.Fatalf("%s: not a .npy: %q", c.Name, b)
	}
	hl := 10 + int(binary.LittleEndian.Uint16(b[8:]))
	return strings.TrimSpace(string(b[10:hl])), b[hl:]
}

func f8(b []byte) []float64 {
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

// TestWiden: a column decides its dtype from the first values and widens when later ones
// need it, with the values converted as numpy would.
func TestWiden(t *testing.T) {
	keys := m{"n": m{"dtype": "integer", "shape": []any{}, "source": "s"},
		"s": m{"dtype": "string", "shape": []any{}, "source": "s"},
		"a": m{"dtype": "array", "shape": []any{int64(2)}, "source": "s"}}
	data := []m{
		{"n": int64(1), "s": "a", "a": []any{true, false}},
		{"n": int64(2), "s": "bbbb", "a": []any{int64(3), int64(4)}},
		{"n": 2.5, "s": strings.Repeat("c", 9), "a": []any{0.5, int64(6)}},
		{"n": int64(-4), "s": "μ", "a": []any{int64(7), int64(8)}},
	}
	for _, mode := range []string{"memory", "cache"} {
		t.Run(mode, func(t *testing.T) {
			dir := ""
			if mode == "cache" {
				dir = t.TempDir()
			}
			e := newEnv(t, events(keys, data), dir)
			tb := e.table("v1")
			hdr, b := npyOf(t, tb.Fields["n"])
			if !strings.Contains(hdr, "'<f8'") || !strings.Contains(hdr, "'shape': (4,)") {
				t.Errorf("n header %s", hdr)
			}
			if got := fmt.Sprint(f8(b)); got != "[1 2 2.5 -4]" {
				t.Errorf("n = %s", got)
			}
			hdr, b = npyOf(t, tb.Fields["s"])
			if !strings.Contains(hdr, "'<U9'") || len(b) != 4*9*4 {
				t.Errorf("s header %s, %d bytes", hdr, len(b))
			}
			if r := binary.LittleEndian.Uint32(b[3*36:]); r != 'μ' {
				t.Errorf("s[3] starts with %q", rune(r))
			}
			hdr, b = npyOf(t, tb.Fields["a"])
			if !strings.Contains(hdr, "'<f8'") || !strings.Contains(hdr, "'shape': (4, 2)") {
				t.Errorf("a header %s", hdr)
			}
			if got := fmt.Sprint(f8(b)); got != "[1 0 3 4 0.5 6 7 8]" {
				t.Errorf("a = %s", got)
			}
		})
	}
}

// TestDecodeOnce: a stream stored in the cache is read back by a new Stream (a remount)
// without any access to the catalog's events, byte for byte the same.
func TestDecodeOnce(t *testing.T) {
	keys := m{"x": m{"dtype": "number", "shape": []any{}, "source": "s"},
		"spec": m{"dtype": "array", "shape": []any{int64(3)}, "source": "s"}}
	var data []m
	for i := 0; i < 50; i++ {
		data = append(data, m{"x": float64(i) / 4, "spec": []any{float64(i), float64(-i), 0.5}})
	}
	dir := t.TempDir()
	e := newEnv(t, events(keys, data), dir)
	tb := e.table("v1")
	_, x1 := npyOf(t, tb.Fields["x"])
	_, s1 := npyOf(t, tb.Fields["spec"])
	csv1, err := tb.CSV(context.Background(), "x", []string{"seq_num", "time", "x"}, []*Column{tb.SeqNum, tb.Time, tb.Fields["x"]})
	if err != nil {
		t.Fatal(err)
	}
	c1 := readAll(t, csv1, 5)
	if e.cfg.Stats.Scans.Load() != 1 || e.cfg.Stats.CacheStores.Load() != 1 {
		t.Fatalf("first table: %d scans, %d stores", e.cfg.Stats.Scans.Load(), e.cfg.Stats.CacheStores.Load())
	}
	for i, v := range f8(x1) {
		if v != float64(i)/4 {
			t.Fatalf("x[%d] = %v", i, v)
		}
	}

	// A remount: a new Config and Stream over the same store.
	e2 := newEnv(t, events(keys, data), "")
	e2.cfg.Store = e.cfg.Store
	tb2 := e2.table("v1")
	_, x2 := npyOf(t, tb2.Fields["x"])
	_, s2 := npyOf(t, tb2.Fields["spec"])
	csv2, err := tb2.CSV(context.Background(), "x", []string{"seq_num", "time", "x"}, []*Column{tb2.SeqNum, tb2.Time, tb2.Fields["x"]})
	if err != nil {
		t.Fatal(err)
	}
	c2 := readAll(t, csv2, 1<<20)
	if e2.pages != 0 || e2.cfg.Stats.Scans.Load() != 0 || e2.cfg.Stats.CacheHits.Load() != 1 {
		t.Errorf("remount: %d EventPages calls, %d scans, %d hits; want 0, 0, 1", e2.pages, e2.cfg.Stats.Scans.Load(), e2.cfg.Stats.CacheHits.Load())
	}
	if !bytes.Equal(x1, x2) || !bytes.Equal(s1, s2) || !bytes.Equal(c1, c2) {
		t.Errorf("remount bytes differ")
	}
	if !strings.HasPrefix(string(c2), "seq_num,time,x\n1,10.0,0.0\n2,11.0,0.25\n") {
		t.Errorf("csv = %q", c2[:40])
	}
	// Another version of the run is another entry.
	e3 := newEnv(t, events(keys, data), "")
	e3.cfg.Store = e.cfg.Store
	e3.table("v2")
	if e3.cfg.Stats.Scans.Load() != 1 {
		t.Errorf("a new version was not scanned")
	}
	// The kernel can read the stored .npy straight from its file.
	f, _ := tb2.Fields["x"].NPY(context.Background())
	h, _ := f.Open(context.Background())
	defer h.Close()
	if h.Backing() == nil {
		t.Errorf("a stored column has no backing file")
	}
}

// TestMemoryBudget: without a cache, columns beyond the budget are re-read from the catalog
// for each read, with the same bytes as kept ones.
func TestMemoryBudget(t *testing.T) {
	keys := m{"big": m{"dtype": "array", "shape": []any{int64(64)}, "source": "s"}, "x": m{"dtype": "number", "shape": []any{}, "source": "s"}}
	var data []m
	for i := 0; i < 40; i++ {
		row := make([]any, 64)
		for j := range row {
			row[j] = float64(i*1000 + j)
		}
		data = append(data, m{"big": row, "x": float64(i)})
	}
	e := newEnv(t, events(keys, data), "")
	e.cfg.MemBudget = 4096 // holds x, time, seq_num and timestamps; not big
	tb := e.table("")
	before := e.pages
	_, b := npyOf(t, tb.Fields["big"])
	if e.pages == before {
		t.Errorf("big was kept in memory beyond the budget")
	}
	got := f8(b)
	for i := 0; i < 40; i++ {
		for j := 0; j < 64; j++ {
			if got[i*64+j] != float64(i*1000+j) {
				t.Fatalf("big[%d][%d] = %v", i, j, got[i*64+j])
			}
		}
	}
	before = e.pages
	_, x := npyOf(t, tb.Fields["x"])
	if e.pages != before || f8(x)[39] != 39 {
		t.Errorf("x re-read (%d calls) or wrong (%v)", e.pages-before, f8(x)[39])
	}
}

// TestMergeStored: a stream of two descriptors whose events interleave is stored in time order.
func TestMergeStored(t *testing.T) {
	keys := m{"x": m{"dtype": "number", "shape": []any{}, "source": "s"}}
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "dA", "run_start": uid, "time": 1.0, "name": "primary", "data_keys": keys}},
		{Name: "descriptor", Doc: m{"uid": "dB", "run_start": uid, "time": 1.0, "name": "primary", "data_keys": keys}},
	}
	for i, d := range []string{"dA", "dB", "dA", "dB", "dA"} {
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"descriptor": d, "uid": fmt.Sprint(i),
			"time": 10.0 + float64(i), "seq_num": int64(i/2 + 1), "data": m{"x": float64(i)}, "timestamps": m{"x": 0.5}}})
	}
	docs = append(docs, catalog.Document{Name: "stop", Doc: m{"uid": "s", "run_start": uid, "time": 20.0, "exit_status": "success"}})
	for _, dir := range []string{"", t.TempDir()} {
		e := newEnv(t, docs, dir)
		tb := e.table("v")
		_, x := npyOf(t, tb.Fields["x"])
		_, tm := npyOf(t, tb.Time)
		if fmt.Sprint(f8(x)) != "[0 1 2 3 4]" || fmt.Sprint(f8(tm)) != "[10 11 12 13 14]" {
			t.Errorf("cache %q: x %v time %v", dir, f8(x), f8(tm))
		}
	}
}

// TestBadFields: values that cannot be a column, and malformed data keys (a shape [-1], an
// unknown dtype, a key that is not a map: each dropped the whole descriptor), fail their field
// alone.
func TestBadFields(t *testing.T) {
	deep := any(1.0)
	for i := 0; i < 70; i++ {
		deep = []any{deep}
	}
	keys := m{"ragged": m{"dtype": "array", "shape": []any{int64(2)}, "source": "s"},
		"deep":  m{"dtype": "array", "shape": []any{}, "source": "s"},
		"huge":  m{"dtype": "array", "shape": []any{int64(1) << 40}, "source": "s"},
		"obj":   m{"dtype": "array", "shape": []any{}, "dtype_numpy": "|O", "source": "s"},
		"ok":    m{"dtype": "number", "shape": []any{}, "source": "s"},
		"neg":   m{"dtype": "array", "shape": []any{int64(-1)}, "source": "s"},
		"odd":   m{"dtype": "complex", "shape": []any{}, "source": "s"},
		"nokey": "not a map",
		"long":  m{"dtype": "string", "shape": []any{}, "source": "s"}}
	// 17 M code points: 68 MB as numpy unicode, beyond what one event's value may take.
	long := strings.Repeat("x", 17<<20)
	data := []m{
		{"ragged": []any{1.0, 2.0}, "deep": deep, "ok": 1.0, "obj": 1.0, "long": "short", "neg": []any{1.0}, "odd": 1.0, "nokey": 1.0},
		{"ragged": []any{1.0}, "deep": deep, "ok": 2.0, "obj": 2.0, "long": long, "neg": []any{2.0}, "odd": 2.0, "nokey": 2.0},
	}
	for _, dir := range []string{"", t.TempDir()} {
		e := newEnv(t, events(keys, data), dir)
		tb := e.table("v")
		for _, f := range []string{"ragged", "deep", "huge", "obj", "long", "neg", "odd", "nokey"} {
			if _, err := tb.Fields[f].NPY(context.Background()); err == nil {
				t.Errorf("cache %q: field %s has a .npy", dir, f)
			}
		}
		if _, b := npyOf(t, tb.Fields["ok"]); fmt.Sprint(f8(b)) != "[1 2]" {
			t.Errorf("ok = %v", f8(b))
		}
		if _, b := npyOf(t, tb.Timestamps["ragged"]); fmt.Sprint(f8(b)) != "[100 101]" {
			t.Errorf("timestamps of a bad field = %v", f8(b))
		}
	}
}
