package tiled

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is one recorded exchange with a real tiled server (testdata/fixtures/README.md).
type fixture struct {
	File           string            `json:"-"`
	Name           string            `json:"name"`
	Server         string            `json:"server"`
	Method         string            `json:"method"`
	Path           string            `json:"path"`
	RawQuery       string            `json:"raw_query"`
	RequestHeaders map[string]string `json:"request_headers"`
	Status         int               `json:"status"`
	Headers        map[string]any    `json:"response_headers"`
	BodyJSON       json.RawMessage   `json:"body_json"`
	BodyBase64     string            `json:"body_base64"`
	DecodedBase64  string            `json:"body_decoded_base64"`
	DecodedJSON    json.RawMessage   `json:"body_decoded_json"`
}

// body is the body as it came off the wire.
func (f *fixture) body() []byte {
	if f.BodyBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(f.BodyBase64)
		if err != nil {
			panic(err)
		}
		return b
	}
	return f.BodyJSON
}

// decoded is the body after its Content-Encoding.
func (f *fixture) decoded() []byte {
	switch {
	case f.DecodedBase64 != "":
		b, _ := base64.StdEncoding.DecodeString(f.DecodedBase64)
		return b
	case f.DecodedJSON != nil:
		return f.DecodedJSON
	}
	return f.body()
}

func (f *fixture) header(k string) string {
	switch v := f.Headers[k].(type) {
	case string:
		return v
	case []any:
		if len(v) > 0 {
			s, _ := v[0].(string)
			return s
		}
	}
	return ""
}

var (
	fixturesOnce sync.Once
	fixtures     map[string]*fixture
)

// loadFixtures reads testdata/fixtures, keyed by file name prefix ("145").
func loadFixtures(t testing.TB) map[string]*fixture {
	t.Helper()
	fixturesOnce.Do(func() {
		files, _ := filepath.Glob("testdata/fixtures/*.json")
		fixtures = map[string]*fixture{}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				panic(err)
			}
			f := &fixture{File: filepath.Base(p)}
			d := json.NewDecoder(strings.NewReader(string(b)))
			d.UseNumber() // numbers keep their text
			var raw map[string]json.RawMessage
			if err := d.Decode(&raw); err != nil {
				panic(fmt.Sprint(p, err))
			}
			if err := json.Unmarshal(b, f); err != nil {
				panic(fmt.Sprint(p, err))
			}
			f.BodyJSON = raw["body_json"]
			if string(f.BodyJSON) == "null" {
				f.BodyJSON = nil
			}
			fixtures[f.File[:3]] = f
		}
	})
	if len(fixtures) == 0 {
		t.Fatal("no fixtures in testdata/fixtures")
	}
	return fixtures
}

// replay is a strict tiled server made of recorded exchanges: a request is answered only by
// a fixture with the same method, path and query (parameters compared as recorded, order of
// keys aside) and the same Authorization; among those it prefers the one whose Accept and
// Accept-Encoding match. Anything unrecorded is a 404 and fails the test.
type replay struct {
	t        testing.TB
	srv      *httptest.Server
	fx       []*fixture
	latency  time.Duration
	mu       sync.Mutex
	served   []string // fixture files, in order
	requests int
}

func newReplay(t testing.TB, server string, names ...string) *replay {
	t.Helper()
	all := loadFixtures(t)
	r := &replay{t: t}
	for _, n := range names {
		f, ok := all[n]
		if !ok {
			t.Fatalf("no fixture %s", n)
		}
		r.fx = append(r.fx, f)
	}
	if len(names) == 0 {
		for _, f := range all {
			if f.Server == server {
				r.fx = append(r.fx, f)
			}
		}
		sort.Slice(r.fx, func(i, j int) bool { return r.fx[i].File < r.fx[j].File })
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *replay) url() string { return r.srv.URL + "/api/v1" }

func sameQuery(a, b string) bool {
	qa, err1 := url.ParseQuery(a)
	qb, err2 := url.ParseQuery(b)
	return err1 == nil && err2 == nil && reflect.DeepEqual(qa, qb)
}

func (r *replay) serve(w http.ResponseWriter, req *http.Request) {
	if r.latency > 0 {
		time.Sleep(r.latency)
	}
	r.mu.Lock()
	r.requests++
	r.mu.Unlock()
	var best *fixture
	bestScore := -1
	for _, f := range r.fx {
		if f.Method != req.Method || f.Path != req.URL.EscapedPath() || !sameQuery(f.RawQuery, req.URL.RawQuery) {
			continue
		}
		if f.RequestHeaders["authorization"] != req.Header.Get("Authorization") {
			continue
		}
		if inm := f.RequestHeaders["if-none-match"]; inm != "" && inm != req.Header.Get("If-None-Match") {
			continue
		}
		score := 0
		if a := f.RequestHeaders["accept"]; a == req.Header.Get("Accept") {
			score += 4
		} else if ct := f.header("content-type"); ct != "" && strings.HasPrefix(ct, req.Header.Get("Accept")) {
			score += 3
		} else if a == "*/*" {
			score += 2
		}
		if f.RequestHeaders["accept-encoding"] == req.Header.Get("Accept-Encoding") {
			score++
		}
		if score > bestScore {
			best, bestScore = f, score
		}
	}
	if best == nil {
		r.t.Errorf("replay: unrecorded request %s %s?%s (Authorization set: %v)", req.Method, req.URL.EscapedPath(), req.URL.RawQuery, req.Header.Get("Authorization") != "")
		http.Error(w, `{"detail":"unrecorded"}`, http.StatusNotFound)
		return
	}
	r.mu.Lock()
	r.served = append(r.served, best.File)
	r.mu.Unlock()
	for _, k := range []string{"content-type", "content-encoding", "etag", "www-authenticate"} {
		if v := best.header(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(best.Status)
	_, _ = w.Write(best.body())
}

// Served returns the fixtures served so far and clears the record.
func (r *replay) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.served
	r.served = nil
	return s
}

func urlQuery(t testing.TB, raw string) url.Values {
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	return q
}
