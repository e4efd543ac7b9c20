package tiled

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// fake is a synthetic tiled server that speaks the routes brokerfs uses, in the forms the
// recorded exchanges show (listing pages, run metadata, newline-delimited documents, array
// structure, octet-stream slices), for runs given as documents. Tests use it where the
// recordings hold too little: the catalog contract, many runs, big arrays, faults.
type fake struct {
	t       testing.TB
	srv     *httptest.Server
	runs    []fakeRun
	arrays  map[string]*fakeArray // uid/stream/field -> array
	latency time.Duration         // added to every request
	rate    float64               // bytes per second per response (0: unlimited)

	requests  atomic.Int64
	bytesSent atomic.Int64
	inFlight  atomic.Int64
	maxFlight atomic.Int64

	mu      sync.Mutex
	queries []string                                                 // request URIs, in order
	hook    func(w http.ResponseWriter, r *http.Request) (done bool) // faults
}

type fakeRun struct {
	uid  string
	docs []catalog.Document
}

type fakeArray struct {
	kind     string
	itemsize int
	shape    []int
	data     []byte
}

func newFake(t testing.TB, runs [][]catalog.Document) *fake {
	f := &fake{t: t, arrays: map[string]*fakeArray{}}
	for _, docs := range runs {
		f.runs = append(f.runs, fakeRun{uid: docs[0].Doc["uid"].(string), docs: docs})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) url() string { return f.srv.URL + "/api/v1" }

func (f *fake) run(uid string) *fakeRun {
	for i := range f.runs {
		if f.runs[i].uid == uid {
			return &f.runs[i]
		}
	}
	return nil
}

func (f *fake) writeJSON(w http.ResponseWriter, status int, v any) {
	// Python's JSON, as the server writes it: 5.0 stays 5.0.
	b := catalog.AppendJSON(nil, v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	f.write(w, b)
}

// write sends b, at f.rate bytes per second when set.
func (f *fake) write(w http.ResponseWriter, b []byte) {
	f.bytesSent.Add(int64(len(b)))
	if f.rate <= 0 {
		_, _ = w.Write(b)
		return
	}
	const chunk = 64 << 10
	start := time.Now()
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		if _, err := w.Write(b[off:end]); err != nil {
			return
		}
		if due := time.Duration(float64(end) / f.rate * float64(time.Second)); time.Since(start) < due {
			time.Sleep(due - time.Since(start))
		}
	}
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxFlight.Load()
		if n <= m || f.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	f.requests.Add(1)
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.RequestURI())
	hook := f.hook
	f.mu.Unlock()
	if f.latency > 0 {
		time.Sleep(f.latency)
	}
	if hook != nil && hook(w, r) {
		return
	}
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/api/v1/")
	route, rest, _ := strings.Cut(path, "/")
	if route == "array" {
		var sub string
		sub, rest, _ = strings.Cut(rest, "/")
		route += "/" + sub
	}
	var parts []string
	for _, p := range strings.Split(rest, "/") {
		if p == "" {
			continue
		}
		s, err := url.PathUnescape(p)
		if err != nil {
			f.writeJSON(w, 400, map[string]any{"detail": "bad path"})
			return
		}
		parts = append(parts, s)
	}
	q := r.URL.Query()
	switch {
	case route == "metadata" && len(parts) == 0:
		f.writeJSON(w, 200, map[string]any{"data": map[string]any{"id": "", "attributes": map[string]any{"structure_family": "container"}}})
	case route == "search" && len(parts) == 0:
		f.search(w, q)
	case route == "metadata" && len(parts) == 1:
		run := f.run(parts[0])
		if run == nil {
			f.writeJSON(w, 404, map[string]any{"detail": "No such entry: " + parts[0]})
			return
		}
		w.Header().Set("ETag", fmt.Sprintf("%q", run.uid))
		if r.Header.Get("If-None-Match") == fmt.Sprintf("%q", run.uid) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		f.writeJSON(w, 200, map[string]any{"data": map[string]any{"id": run.uid, "attributes": map[string]any{"structure_family": "container", "metadata": runMetadata(run)}}})
	case route == "documents" && len(parts) == 1:
		run := f.run(parts[0])
		if run == nil {
			f.writeJSON(w, 404, map[string]any{"detail": "No such entry"})
			return
		}
		var b []byte
		for _, d := range run.docs {
			b = catalog.AppendJSON(b, map[string]any{"name": d.Name, "doc": d.Doc})
			b = append(b, '\n')
		}
		w.Header().Set("Content-Type", "application/json-seq")
		f.write(w, b)
	case route == "metadata" && len(parts) == 4:
		a := f.arrays[strings.Join([]string{parts[0], parts[1], parts[3]}, "/")]
		if a == nil || parts[2] != "data" {
			f.writeJSON(w, 404, map[string]any{"detail": "No such entry"})
			return
		}
		f.writeJSON(w, 200, map[string]any{"data": map[string]any{"id": parts[3], "attributes": map[string]any{
			"structure_family": "array",
			"structure": map[string]any{"data_type": map[string]any{"endianness": "little", "kind": a.kind, "itemsize": a.itemsize},
				"shape": ints(a.shape), "chunks": []any{[]any{a.shape[0]}}},
		}}})
	case route == "array/full" && len(parts) == 4:
		a := f.arrays[strings.Join([]string{parts[0], parts[1], parts[3]}, "/")]
		if a == nil || parts[2] != "data" {
			f.writeJSON(w, 404, map[string]any{"detail": "No such entry"})
			return
		}
		lo, hi := 0, a.shape[0]
		if s := q.Get("slice"); s != "" {
			a1, b1, isRange := strings.Cut(s, ":")
			var err1, err2 error
			lo, err1 = strconv.Atoi(a1)
			hi, err2 = lo+1, nil
			if isRange {
				hi, err2 = strconv.Atoi(b1)
			}
			if err1 != nil || err2 != nil || lo < 0 || hi > a.shape[0] || lo > hi {
				f.writeJSON(w, 500, map[string]any{"detail": "Internal Server Error"})
				return
			}
		}
		row := len(a.data) / a.shape[0]
		w.Header().Set("Content-Type", "application/octet-stream")
		f.write(w, a.data[lo*row:hi*row])
	default:
		f.t.Errorf("fake: unexpected request %s", r.URL.RequestURI())
		f.writeJSON(w, 404, map[string]any{"detail": "Not Found"})
	}
}

func runMetadata(run *fakeRun) map[string]any {
	md := map[string]any{"start": run.docs[0].Doc, "stop": nil}
	for _, d := range run.docs {
		if d.Name == "stop" {
			md["stop"] = d.Doc
		}
	}
	return md
}

func (f *fake) search(w http.ResponseWriter, q url.Values) {
	off, _ := strconv.Atoi(q.Get("page[offset]"))
	lim := 100
	if s := q.Get("page[limit]"); s != "" {
		lim, _ = strconv.Atoi(s)
	}
	if lim > 300 {
		f.writeJSON(w, 422, map[string]any{"detail": "page[limit] too big"})
		return
	}
	if q.Get("fields") != "metadata" {
		f.t.Errorf("fake: search with fields=%q", q["fields"])
	}
	data := []any{}
	for i := off; i < len(f.runs) && i < off+lim; i++ {
		run := &f.runs[i]
		data = append(data, map[string]any{"id": run.uid, "attributes": map[string]any{"structure_family": "container", "metadata": runMetadata(run)}})
	}
	f.writeJSON(w, 200, map[string]any{"data": data, "meta": map[string]any{"count": len(f.runs)}, "links": map[string]any{}})
}

// addArray serves field of stream of run uid as an array of rows × rowShape of kind/itemsize,
// its bytes made by fill.
func (f *fake) addArray(uid, stream, field, kind string, itemsize int, shape []int, data []byte) {
	f.arrays[uid+"/"+stream+"/"+field] = &fakeArray{kind: kind, itemsize: itemsize, shape: shape, data: data}
}

func (f *fake) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

func (f *fake) takeQueries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queries
	f.queries = nil
	return q
}

// manyRuns makes n small runs: start, one descriptor, one event, stop.
func manyRuns(n int) [][]catalog.Document {
	var runs [][]catalog.Document
	for i := 0; i < n; i++ {
		uid := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		t0 := 1.7e9 + float64(i)
		runs = append(runs, []catalog.Document{
			{Name: "start", Doc: map[string]any{"uid": uid, "time": t0, "scan_id": int64(i), "plan_name": []string{"count", "scan"}[i%2]}},
			{Name: "descriptor", Doc: map[string]any{"uid": uid + "-d", "run_start": uid, "time": t0, "name": "primary",
				"data_keys": map[string]any{"x": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:x"}}}},
			{Name: "event", Doc: map[string]any{"uid": uid + "-e", "descriptor": uid + "-d", "time": t0 + 1, "seq_num": int64(1),
				"data": map[string]any{"x": float64(i)}, "timestamps": map[string]any{"x": t0 + 1}, "filled": map[string]any{}}},
			{Name: "stop", Doc: map[string]any{"uid": uid + "-s", "run_start": uid, "time": t0 + 2, "exit_status": "success", "num_events": map[string]any{"primary": int64(1)}}},
		})
	}
	return runs
}

// bigRun is a run whose primary stream has an external field "img" of frames rows of
// (h, w) uint16, served by the fake as an array whose element k of frame i is uint16(i*7+k).
func bigRun(uid string, frames, h, w int) ([]catalog.Document, []byte) {
	t0 := 1.75e9
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": t0, "scan_id": int64(1), "plan_name": "count"}},
		{Name: "descriptor", Doc: map[string]any{"uid": uid + "-d", "run_start": uid, "time": t0, "name": "primary",
			"data_keys": map[string]any{"img": map[string]any{"dtype": "array", "shape": []any{int64(h), int64(w)}, "source": "PV:img", "external": "FILESTORE:", "dtype_str": "<u2"}}}},
	}
	var ts, seq, ids []any
	for i := 0; i < frames; i++ {
		ts = append(ts, t0+float64(i))
		seq = append(seq, int64(i+1))
		ids = append(ids, fmt.Sprintf("res/%d", i))
	}
	docs = append(docs, catalog.Document{Name: "event_page", Doc: map[string]any{"descriptor": uid + "-d", "uid": []any{}, "time": ts, "seq_num": seq,
		"data": map[string]any{"img": ids}, "timestamps": map[string]any{"img": ts}, "filled": map[string]any{}}},
		catalog.Document{Name: "stop", Doc: map[string]any{"uid": uid + "-s", "run_start": uid, "time": t0 + 1e4, "exit_status": "success"}})
	data := make([]byte, frames*h*w*2)
	for i := 0; i < frames; i++ {
		for k := 0; k < h*w; k++ {
			v := uint16(i*7 + k)
			data[(i*h*w+k)*2], data[(i*h*w+k)*2+1] = byte(v), byte(v>>8)
		}
	}
	return docs, data
}

func ints(s []int) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}
