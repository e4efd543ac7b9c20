package transform

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/memory"
)

// logBuf collects log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// fixture is one finished run: start, a primary descriptor with an array field, a resource,
// a stop; and a second run of another plan.
func fixture(t *testing.T) *memory.Catalog {
	t.Helper()
	run := func(uid, plan string, scan int64) []catalog.Document {
		return []catalog.Document{
			{Name: "start", Doc: map[string]any{"uid": uid, "time": 1700000000.5, "scan_id": scan, "plan_name": plan, "sample": "Si", "md": map[string]any{"operator": "ann", "temp": 300.0}}},
			{Name: "descriptor", Doc: map[string]any{"uid": uid + "-d", "run_start": uid, "time": 1700000001.0, "name": "primary",
				"data_keys": map[string]any{
					"x":   map[string]any{"dtype": "number", "shape": []any{}, "source": "sim"},
					"det": map[string]any{"dtype": "array", "shape": []any{int64(2), int64(3)}, "source": "sim", "external": "FILESTORE:"},
				}}},
			{Name: "resource", Doc: map[string]any{"uid": uid + "-r", "spec": "npy", "root": "/old", "resource_path": "a.npy", "resource_kwargs": map[string]any{}, "run_start": uid}},
			{Name: "stop", Doc: map[string]any{"uid": uid + "-s", "run_start": uid, "time": 1700000002.0, "exit_status": "success", "num_events": map[string]any{"primary": int64(0)}}},
		}
	}
	c, err := memory.New(run("run-a", "scan", 7), run("run-b", "count", 8))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const rulesYAML = `
start:
  - match: {plan_name: scan}
    patch: {sample: silicon, md: {operator: null, beamline: 9-ID}}
  - patch: {fixed: true}
descriptor:
  - match: {name: primary}
    patch: {data_keys: {det: {shape: [4, 5], dtype_numpy: "<u2"}}}
resource:
  - match: {root: /old}
    patch: {root: /new}
stop:
  - match: {exit_status: success, no_such_key: {$exists: true}}
    patch: {exit_status: fail}
`

func TestRules(t *testing.T) {
	ctx := context.Background()
	rules, err := ParseRules([]byte(rulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	cat := Wrap(fixture(t), Options{Rules: rules, Logger: logs.logger()})
	defer cat.Close()

	// The listing is the stored one.
	starts, err := cat.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range starts {
		if s.Doc["sample"] != "Si" || s.Doc["fixed"] != nil {
			t.Errorf("listing shows a transformed start: %s", s.Raw)
		}
	}

	r, err := cat.Run(ctx, "run-a")
	if err != nil {
		t.Fatal(err)
	}
	// Both start rules apply, in order; the first removes md.operator.
	want := `{"fixed": true, "md": {"beamline": "9-ID", "temp": 300.0}, "plan_name": "scan", "sample": "silicon", "scan_id": 7, "time": 1700000000.5, "uid": "run-a"}`
	if got := string(r.Start().Raw); got != want {
		t.Errorf("start.Raw = %s\nwant %s", got, want)
	}
	if s := r.Start(); s.UID != "run-a" || s.ScanID != 7 || s.Doc["sample"] != "silicon" {
		t.Errorf("start parsed: %+v", s)
	}
	ds, err := r.Descriptors(ctx)
	if err != nil || len(ds) != 1 {
		t.Fatal(ds, err)
	}
	if dk := ds[0].DataKeys["det"]; !reflect.DeepEqual(dk.Shape, []int{4, 5}) || dk.DtypeNumpy != "<u2" || !dk.External || dk.Dtype != "array" {
		t.Errorf("det data key: %+v", dk)
	}
	if dk := ds[0].DataKeys["x"]; dk.Dtype != "number" || len(dk.Shape) != 0 {
		t.Errorf("x data key: %+v", dk)
	}
	if !strings.Contains(string(ds[0].Raw), `"det": {"dtype": "array", "dtype_numpy": "<u2", "external": "FILESTORE:", "shape": [4, 5], "source": "sim"}`) {
		t.Errorf("descriptor Raw: %s", ds[0].Raw)
	}
	rs, err := r.Resources(ctx)
	if err != nil || len(rs) != 1 || rs[0].Root != "/new" || rs[0].ResourcePath != "a.npy" || rs[0].UID != "run-a-r" {
		t.Errorf("resources: %+v %v", rs, err)
	}
	// No stop rule matches: the stop is the stored one, bytes and all.
	stop, err := r.Stop(ctx)
	if err != nil || stop.ExitStatus != "success" {
		t.Errorf("stop: %+v %v", stop, err)
	}

	// The other run: only the rules that match it.
	rb, err := cat.Run(ctx, "run-b")
	if err != nil {
		t.Fatal(err)
	}
	if s := rb.Start(); s.Doc["sample"] != "Si" || s.Doc["fixed"] != true {
		t.Errorf("run-b start: %s", s.Raw)
	}

	// Versions carry the digest, the same from the run and from the catalog.
	v, err := r.(catalog.Versioner).Version(ctx)
	if err != nil || !strings.Contains(v, "\x00transforms=") {
		t.Errorf("version %q %v", v, err)
	}
	rv, err := cat.(catalog.RunVersioner).RunVersion(ctx, "run-a")
	if err != nil || rv != v {
		t.Errorf("RunVersion %q, Version %q, %v", rv, v, err)
	}
	// Other rules, another digest; the same rules, the same one.
	other, _ := ParseRules([]byte("start:\n  - patch: {fixed: false}\n"))
	same, _ := ParseRules([]byte(rulesYAML))
	for _, c := range []struct {
		rules *Rules
		equal bool
	}{{other, false}, {same, true}} {
		v2, _ := Wrap(fixture(t), Options{Rules: c.rules}).(catalog.RunVersioner).RunVersion(ctx, "run-a")
		_, suffix, _ := strings.Cut(v, "\x00")
		_, suffix2, _ := strings.Cut(v2, "\x00")
		if (suffix == suffix2) != c.equal {
			t.Errorf("digest of %v: %q vs %q", c.rules.byKind, suffix2, suffix)
		}
	}
	if logs.String() != "" {
		t.Errorf("logged: %s", logs.String())
	}
}

// TestRefused checks that a transform may not change a uid nor break a document: the stored
// document stays, logged once however often it is read, and the run is not versioned.
func TestRefused(t *testing.T) {
	ctx := context.Background()
	rules, err := ParseRules([]byte(`
start:
  - match: {uid: run-a}
    patch: {uid: other}
descriptor:
  - patch: {data_keys: {x: {dtype: complex}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	cat := Wrap(fixture(t), Options{Rules: rules, Logger: logs.logger()})
	for i := 0; i < 3; i++ {
		r, err := cat.Run(ctx, "run-a")
		if err != nil {
			t.Fatal(err)
		}
		if s := r.Start(); s.UID != "run-a" || s.Doc["uid"] != "run-a" || strings.Contains(string(s.Raw), "other") {
			t.Errorf("start: %s", s.Raw)
		}
		ds, _ := r.Descriptors(ctx)
		if ds[0].DataKeys["x"].Dtype != "number" {
			t.Errorf("descriptor: %s", ds[0].Raw)
		}
		if v, err := r.(catalog.Versioner).Version(ctx); v != "" || err != nil {
			t.Errorf("a run with a failed transform has version %q %v", v, err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "transform failed"); n != 2 {
		t.Errorf("%d log lines, want 2 (one per document):\n%s", n, out)
	}
	for _, s := range []string{`kind=start uid=run-a`, `changed the uid \"run-a\" to \"other\"`, `kind=descriptor uid=run-a-d`, `unknown dtype`} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %q:\n%s", s, out)
		}
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, "no rules"},
		{`[1]`, "want a mapping"},
		{"event:\n  - patch: {a: 1}\n", `line 1: unknown document kind "event"`},
		{"start: {a: 1}\n", "line 1: start: want a list"},
		{"start:\n  - patch: [1]\n", "line 2: start[0]: patch: want an object"},
		{"start:\n  - match: {a: 1}\n", "line 2: start[0]: no patch"},
		{"start:\n  - patch: {a: 1}\n  - patch: {a: 1}\n    matches: {}\n", `line 3: start[1]: unknown key "matches"`},
		{"start:\n  - match: {a: {$foo: 1}}\n    patch: {a: 1}\n", "start[0]: match: parse query"},
		{"start:\n  - match: 3\n    patch: {a: 1}\n", "match: want a query object"},
		{"start:\n  - patch: {a: !!binary aGk=}\n", "not supported"},
		{"start:\n  - patch: {a: 1, a: 2}\n", "given twice"},
	} {
		_, err := ParseRules([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseRules(%q) = %v, want an error with %q", c.in, err, c.want)
		}
	}
	// JSON is YAML; values keep their types (ints, floats, dates as written).
	r, err := ParseRules([]byte(`{"start": [{"match": {"scan_id": 7}, "patch": {"a": 1, "b": 1.0, "c": "2024-01-02", "d": 2024-01-02, "e": null}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := catalog.AppendJSON(nil, r.byKind["start"][0].patch)
	if want := `{"a": 1, "b": 1.0, "c": "2024-01-02", "d": "2024-01-02", "e": null}`; string(got) != want {
		t.Errorf("patch %s, want %s", got, want)
	}
	if !r.byKind["start"][0].match.Match(map[string]any{"scan_id": 7.0}) {
		t.Error("match on scan_id")
	}
}

// TestContract runs the catalog contract over a wrapped catalog whose rules match nothing:
// what passes through must be the inner catalog's, unchanged.
func TestContract(t *testing.T) {
	rules, err := ParseRules([]byte(`
start: [{match: {no_such_key: 1}, patch: {a: 1}}]
stop: [{match: {no_such_key: 1}, patch: {a: 1}}]
descriptor: [{match: {no_such_key: 1}, patch: {a: 1}}]
resource: [{match: {no_such_key: 1}, patch: {a: 1}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		c, err := memory.New(runs...)
		if err != nil {
			t.Fatal(err)
		}
		return Wrap(c, Options{Rules: rules})
	})
}

// TestKeptBounded: what is kept of transformed documents stays within MaxDocs and
// MaxDocBytes, however many documents pass.
func TestKeptBounded(t *testing.T) {
	rules, err := ParseRules([]byte("start:\n  - patch: {a: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ docs, bytes int }{{8, 1 << 20}, {1000, 2000}} {
		tr := Wrap(fixture(t), Options{Rules: rules, MaxDocs: c.docs, MaxDocBytes: c.bytes}).(versioned).t
		for i := 0; i < 200; i++ {
			doc := map[string]any{"uid": fmt.Sprintf("uid-%d", i), "time": 1.0, "pad": strings.Repeat("x", 100)}
			s, err := catalog.ParseStart(doc, catalog.AppendJSON(nil, doc))
			if err != nil {
				t.Fatal(err)
			}
			res := tr.do(context.Background(), KindStart, s.UID, s.Raw, s.Doc, s, func(doc map[string]any, raw []byte) (any, error) {
				return catalog.ParseStart(doc, raw)
			})
			if got := res.doc.(*catalog.Start); got.Doc["a"] != int64(1) || got.UID != s.UID {
				t.Fatalf("%d: %s", i, got.Raw)
			}
			tr.mu.Lock()
			n, size := len(tr.cur)+len(tr.old), 0
			for _, m := range []map[docKey]*result{tr.cur, tr.old} {
				for _, r := range m {
					size += r.size
				}
			}
			tr.mu.Unlock()
			if n > c.docs || size > c.bytes {
				t.Fatalf("bounds %+v: %d documents of %d bytes kept", c, n, size)
			}
		}
	}
}

// TestVersionAfterResources: a run whose resource transform fails is not versioned, even
// when its resources were not asked for yet (frames read through the stored resource must not
// be cached as the transformed run's).
func TestVersionAfterResources(t *testing.T) {
	rules, err := ParseRules([]byte("resource:\n  - match: {uid: run-a-r}\n    patch: {spec: null}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	cat := Wrap(fixture(t), Options{Rules: rules, Logger: logs.logger()})
	ctx := context.Background()
	for uid, versioned := range map[string]bool{"run-a": false, "run-b": true} {
		r, err := cat.Run(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := r.(catalog.Versioner).Version(ctx); (v != "") != versioned || err != nil {
			t.Errorf("%s: version %q %v", uid, v, err)
		}
	}
	if !strings.Contains(logs.String(), `kind=resource uid=run-a-r err="the transformed document is not a valid resource document: missing key \"spec\""`) {
		t.Errorf("log: %s", logs.String())
	}
}

// earlyProbe is a catalog that records whether Run was asked for an early run.
type earlyProbe struct {
	catalog.Catalog
	asked bool
}

func (c *earlyProbe) Run(ctx context.Context, uid string) (catalog.Run, error) {
	c.asked = catalog.EarlyRunOf(ctx) != nil
	return c.Catalog.Run(ctx, uid)
}

// TestNoEarlyRun: an early run (catalog.EarlyRun) would be the inner catalog's run,
// untransformed: a transformed catalog passes no request for one to it.
func TestNoEarlyRun(t *testing.T) {
	rules, err := ParseRules([]byte(rulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	probe := &earlyProbe{Catalog: fixture(t)}
	cat := Wrap(probe, Options{Rules: rules})
	defer cat.Close()
	starts, err := probe.Runs(context.Background())
	if err != nil || len(starts) == 0 {
		t.Fatalf("runs: %v", err)
	}
	ctx := catalog.WithEarlyRun(context.Background(), func(catalog.Run, string) {})
	if _, err := probe.Run(ctx, starts[0].UID); err != nil || !probe.asked {
		t.Fatalf("the probe does not see the request: %v", err)
	}
	if _, err := cat.Run(ctx, starts[0].UID); err != nil {
		t.Fatal(err)
	}
	if probe.asked {
		t.Errorf("the inner catalog was asked for an early run")
	}
}
