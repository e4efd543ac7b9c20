package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRuns writes one JSONL run file per run: a start document and, unless live, a stop.
func writeRuns(t *testing.T, dir string, runs []testRun) {
	t.Helper()
	for _, r := range runs {
		start := map[string]any{"uid": r.uid, "time": r.time, "plan_name": r.plan}
		if r.scan != 0 {
			start["scan_id"] = r.scan
		}
		lines := []any{[]any{"start", start}}
		if r.status != "" {
			lines = append(lines, []any{"stop", map[string]any{"uid": "s" + r.uid, "run_start": r.uid, "time": r.time + 10,
				"exit_status": r.status, "num_events": map[string]any{"primary": 3}}})
		}
		var b strings.Builder
		for _, l := range lines {
			j, _ := json.Marshal(l)
			b.Write(append(j, '\n'))
		}
		if err := os.WriteFile(filepath.Join(dir, r.uid+".jsonl"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type testRun struct {
	uid    string
	time   float64
	scan   int64
	plan   string
	status string // "" while live
}

func TestLs(t *testing.T) {
	src := t.TempDir()
	writeRuns(t, src, []testRun{
		{"aaaa1111-0001", 1700000000, 34, "scan", "success"},
		{"aaaa1111-0002", 1700000100, 34, "count", "abort"},
		{"bbbb2222-0003", 1700000200, 35, "fly", ""},
	})
	ls := func(args ...string) (int, string, string) {
		return runCLI(append([]string{"ls", "--no-cache"}, args...)...)
	}

	code, out, errs := ls(src)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || errs != "" || len(lines) != 4 || !strings.HasPrefix(lines[0], "UID") ||
		!strings.HasPrefix(lines[1], "aaaa1111-0001") || !strings.HasPrefix(lines[3], "bbbb2222-0003") {
		t.Errorf("ls SOURCE: exit %d, stderr %q:\n%s", code, errs, out)
	}

	// Names, in their order: scan_id 34 is the newer of its two runs; -1 the newest run.
	code, out, errs = ls("--json", src, "34", "-1", "bbbb2", "-3")
	var got []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("ls --json: %v: %q", err, l)
		}
		got = append(got, m)
	}
	if code != 0 || errs != "" || len(got) != 4 {
		t.Fatalf("ls --json SOURCE 34 -1 bbbb2 -3: exit %d, stderr %q:\n%s", code, errs, out)
	}
	want := []string{"aaaa1111-0002", "bbbb2222-0003", "bbbb2222-0003", "aaaa1111-0001"}
	for i, w := range want {
		if got[i]["uid"] != w {
			t.Errorf("name %d = %v, want %s", i, got[i]["uid"], w)
		}
	}
	r := got[0]
	if r["scan_id"] != 34.0 || r["plan_name"] != "count" || r["time"] != 1700000100.0 || r["time_iso"] != "2023-11-14T22:15:00+00:00" ||
		r["live"] != false || r["exit_status"] != "abort" || r["stop_time"] != 1700000110.0 || r["num_events"].(map[string]any)["primary"] != 3.0 {
		t.Errorf("ls --json, a finished run: %v", r)
	}
	if r := got[1]; r["live"] != true || r["exit_status"] != nil || r["stop_time"] != nil || r["num_events"] != nil {
		t.Errorf("ls --json, a live run: %v", r)
	}

	// -N needs no "--", before or after flags; a flag's value is never a name.
	for _, args := range [][]string{{src, "-2", "--json"}, {"--timeout", "5s", src, "-2"}, {src, "--", "-2"}, {"--query", `{"scan_id": 34}`, src, "-1"}} {
		code, out, errs := ls(args...)
		if code != 0 || !strings.Contains(out, "aaaa1111-0002") || strings.Count(strings.TrimSpace(out), "\n") > 1 {
			t.Errorf("ls %q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}

	// An ambiguous prefix lists its runs on stderr; a short prefix and an unknown scan_id name
	// none; what resolves is still printed, and the exit status is 1.
	code, out, errs = ls(src, "aaaa1", "aaaa", "99", "35")
	if code != 1 || !strings.Contains(errs, `uid prefix "aaaa1" matches 2 runs: aaaa1111-0001 aaaa1111-0002`) ||
		!strings.Contains(errs, "at least 5 characters") || !strings.Contains(errs, "no run with scan_id 99") ||
		!strings.Contains(errs, "3 of 4 names name no run") || !strings.Contains(out, "bbbb2222-0003") || strings.Count(out, "\n") != 2 {
		t.Errorf("ls with bad names: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	// No runs: nothing on stdout, why on stderr, exit 1.
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "notes.txt"), []byte("x"), 0o644)
	if code, out, errs := ls(empty); code != 1 || out != "" || !strings.Contains(errs, "no runs in "+empty) {
		t.Errorf("ls EMPTY: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := ls("--query", `{"plan_name": "nope"}`, src); code != 1 || out != "" || !strings.Contains(errs, "matches the query") {
		t.Errorf("ls --query NOTHING: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
