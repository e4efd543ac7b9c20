package transform

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

const python = "/usr/bin/python3"

// module writes a Python module of transforms into a new directory and returns the
// environment that puts it on PYTHONPATH.
func module(t *testing.T, name, src string) []string {
	t.Helper()
	if _, err := exec.LookPath(python); err != nil {
		t.Skipf("no %s", python)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name+".py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "PYTHONPATH="+dir, "PYTHONDONTWRITEBYTECODE=1")
}

const fixes = `
import os, sys, time

def start(doc):
    doc["sample"] = doc["sample"].upper()
    doc["nan"] = float("nan")
    doc["numbers"] = [1, 2.0, 3]
    print("fixed", doc["uid"])   # goes to brokerfs's log, not into the protocol
    if doc["plan_name"] == "count":
        raise ValueError("no sample for count")
    return doc

def descriptor(doc):
    doc["data_keys"]["x"]["dtype"] = "integer"
    return doc

def stop(doc):
    return [doc]            # not a dict

def resource(doc):
    if doc["uid"] == "run-a-r":
        time.sleep(30)
    else:
        os._exit(3)
`

func TestPython(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := module(t, "fixes", fixes)
	var logs logBuf
	py, err := StartPython(ctx, PythonOptions{
		Python:  python,
		Env:     env,
		Funcs:   map[string]string{"start": "fixes.start", "descriptor": "fixes:descriptor", "stop": "fixes.stop", "resource": "fixes.resource"},
		Timeout: 3 * time.Second, // for the sleeping resource; a normal call takes milliseconds
		Logger:  logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := ParseRules([]byte("start:\n  - match: {sample: Si}\n    patch: {rule: applied}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cat := Wrap(fixture(t), Options{Python: py, Rules: rules, Logger: logs.logger()})
	defer cat.Close()

	r, err := cat.Run(ctx, "run-a")
	if err != nil {
		t.Fatal(err)
	}
	// The function's output, then the rule (matched on the stored "Si"), types kept.
	want := `{"md": {"operator": "ann", "temp": 300.0}, "nan": NaN, "numbers": [1, 2.0, 3], "plan_name": "scan", "rule": "applied", "sample": "SI", "scan_id": 7, "time": 1700000000.5, "uid": "run-a"}`
	if got := string(r.Start().Raw); got != want {
		t.Errorf("start %s\nwant  %s", got, want)
	}
	ds, err := r.Descriptors(ctx)
	if err != nil || ds[0].DataKeys["x"].Dtype != "integer" {
		t.Errorf("descriptor: %v %v", ds, err)
	}
	// A function that returns a list, one that hangs, one that kills the helper: the stored
	// documents, a log line each.
	if s, err := r.Stop(ctx); err != nil || s.ExitStatus != "success" || strings.Contains(string(s.Raw), "[") {
		t.Errorf("stop: %+v %v", s, err)
	}
	if rs, err := r.Resources(ctx); err != nil || rs[0].Root != "/old" {
		t.Errorf("resources: %v %v", rs, err)
	}
	rb, err := cat.Run(ctx, "run-b")
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := rb.Resources(ctx); err != nil || rs[0].Root != "/old" {
		t.Errorf("resources: %v %v", rs, err)
	}
	// The raising start: as stored, and the rule is not applied either.
	if s := rb.Start(); s.Doc["sample"] != "Si" || s.Doc["rule"] != nil {
		t.Errorf("raising start: %s", s.Raw)
	}
	// After a crash the helper is started again: the descriptor of run-b is transformed.
	if ds, err := rb.Descriptors(ctx); err != nil || ds[0].DataKeys["x"].Dtype != "integer" {
		t.Errorf("descriptor after a crash: %v %v", ds, err)
	}
	// Read again: nothing is transformed twice, nothing logged twice.
	for i := 0; i < 2; i++ {
		for _, uid := range []string{"run-a", "run-b"} {
			r, _ := cat.Run(ctx, uid)
			r.Start()
			r.Stop(ctx)
			r.Resources(ctx)
			r.Descriptors(ctx)
		}
	}
	out := logs.String()
	for _, c := range []struct {
		s string
		n int
	}{
		{`msg="transform failed; the document is shown as stored" kind=stop uid=run-a-s err="fixes.stop: TypeError: the transform returned list, not a dict"`, 1},
		{`kind=stop uid=run-b-s`, 1},
		{`kind=resource uid=run-a-r err="fixes.resource: transform helper: timed out after 3s`, 1}, // (the helper's last stderr line may follow)
		{`kind=resource uid=run-b-r err="fixes.resource: transform helper: no response (stdout closed) (process ended: exit status 3`, 1},
		{`kind=start uid=run-b err="fixes.start: ValueError: no sample for count"`, 1},
		{`msg="transform helper says" line="fixed run-a"`, 1},
		{"transform failed", 5},
	} {
		if n := strings.Count(out, c.s); n != c.n {
			t.Errorf("%d log lines with %s, want %d", n, c.s, c.n)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestPythonStartErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := module(t, "broken", "import no_such_module_here\n")
	for _, c := range []struct {
		funcs map[string]string
		want  string
	}{
		{map[string]string{"start": "broken.fix"}, "start=broken.fix: ModuleNotFoundError: No module named 'no_such_module_here'"},
		{map[string]string{"stop": "os.no_such_function"}, "stop=os.no_such_function: AttributeError"},
		{map[string]string{"stop": "os.sep"}, "os.sep is not callable"},
		{map[string]string{"event": "os.path.join"}, `unknown kind "event"`},
		{map[string]string{"start": "not a path"}, "not an import path"},
	} {
		py, err := StartPython(ctx, PythonOptions{Python: python, Env: env, Funcs: c.funcs})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.funcs, err, c.want)
		}
		py.Close()
	}
	_, err := StartPython(ctx, PythonOptions{Python: "/nonexistent/python3", Funcs: map[string]string{"start": "a.b"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/python3") {
		t.Errorf("missing interpreter: %v", err)
	}
}

// TestPythonDigest checks that the digest follows the source of the functions' modules.
func TestPythonDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := module(t, "m", "def f(doc):\n    return doc\n")
	dir := strings.TrimPrefix(env[len(env)-2], "PYTHONPATH=")
	digest := func() string {
		py, err := StartPython(ctx, PythonOptions{Python: python, Env: env, Funcs: map[string]string{"start": "m.f"}})
		if err != nil {
			t.Fatal(err)
		}
		defer py.Close()
		cat := Wrap(fixture(t), Options{Python: py})
		v, err := cat.(catalog.RunVersioner).RunVersion(ctx, "run-a")
		if err != nil {
			t.Fatal(err)
		}
		return v[strings.IndexByte(v, 0):]
	}
	d1, d2 := digest(), digest()
	if err := os.WriteFile(filepath.Join(dir, "m.py"), []byte("def f(doc):\n    doc['x'] = 1\n    return doc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d3 := digest()
	if d1 != d2 || d1 == d3 {
		t.Errorf("digests %q %q (same source), %q (changed)", d1, d2, d3)
	}
}

func TestParseFlag(t *testing.T) {
	for _, c := range []struct{ in, kind, path, err string }{
		{"start=mypkg.mymodule.fix_start", "start", "mypkg.mymodule.fix_start", ""},
		{" descriptor = m:f ", "descriptor", "m:f", ""},
		{"start", "", "", "want KIND="},
		{"datum=m.f", "", "", "unknown kind"},
		{"start=fix", "", "", "not an import path"},
		{"start=m.f()", "", "", "not an import path"},
	} {
		k, p, err := ParseFlag(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseFlag(%q) = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || k != c.kind || p != c.path {
			t.Errorf("ParseFlag(%q) = %q %q %v", c.in, k, p, err)
		}
	}
}
