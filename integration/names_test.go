package integration

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Issue 11 items 3 and 6: run names as databroker's catalog[name] resolves them, in the mount
// root and in `brokerfs ls`, and the CLI's exit codes and JSON. The expected runs come from
// the documents the test writes (sorted here by start time), not from brokerfs.

// nameRun is a run of the names catalog: a start and, unless live, a stop document.
type nameRun struct {
	UID    string
	Time   float64
	ScanID int64
	Plan   string
	Live   bool
}

// writeNameRun writes r as a suitcase-jsonl file in dir.
func writeNameRun(t *testing.T, dir string, r nameRun) {
	t.Helper()
	docs := [][]any{{"start", map[string]any{"uid": r.UID, "time": r.Time, "scan_id": r.ScanID, "plan_name": r.Plan}}}
	if !r.Live {
		docs = append(docs, []any{"stop", map[string]any{"uid": "s-" + r.UID, "run_start": r.UID, "time": r.Time + 5,
			"exit_status": "success", "num_events": map[string]any{}}})
	}
	var b []byte
	for _, d := range docs {
		j, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(b, j...), '\n')
	}
	writeFile(t, dir, r.UID+".jsonl", b)
}

// newestFirst returns the uids of runs, newest start first (ties: the greater uid).
func newestFirst(runs []nameRun) []string {
	s := slices.Clone(runs)
	sort.Slice(s, func(i, j int) bool {
		if s[i].Time != s[j].Time {
			return s[i].Time > s[j].Time
		}
		return s[i].UID > s[j].UID
	})
	var uids []string
	for _, r := range s {
		uids = append(uids, r.UID)
	}
	return uids
}

func TestRunNames(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	runs := []nameRun{
		{"3f2a5b00-1111-4000-8000-000000000001", 1700000000, 34, "scan", false},
		{"3f2a5b99-2222-4000-8000-000000000002", 1700000300, 34, "scan", false},  // shares a 6-character prefix with the first
		{"34c0ffee-3333-4000-8000-000000000003", 1700000100, 35, "count", false}, // its uid starts with 34
		{"9d8e7f60-4444-4000-8000-000000000004", 1700000200, 7, "fly", true},
	}
	for _, r := range runs {
		writeNameRun(t, src, r)
	}
	order := newestFirst(runs)
	newest34 := runs[1].UID // the newer of the two runs with scan_id 34
	mnt, logs := mount(t, src, "--cache-dir", t.TempDir(), "--list-ttl", "300ms")

	t.Run("root", func(t *testing.T) {
		entries, err := os.ReadDir(mnt)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		want := append([]string{"by-scan-id", "latest"}, order...)
		sort.Strings(want)
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("readdir = %v, want %v (names are looked up, not listed)", names, want)
		}

		// 34 is scan_id 34, not the run whose uid starts with 34: a link to the newer run.
		if got, err := os.Readlink(filepath.Join(mnt, "34")); err != nil || got != newest34 {
			t.Errorf("readlink 34 = %q, %v; want %s", got, err, newest34)
		}
		if fi, err := os.Stat(filepath.Join(mnt, "34")); err != nil || !fi.IsDir() || fi.ModTime().Unix() != int64(runs[1].Time) {
			t.Errorf("stat 34: %v, %v; want the run's directory, mtime %v", fi, err, runs[1].Time)
		}
		if b, err := os.ReadFile(filepath.Join(mnt, "34", "start.json")); err != nil || !strings.Contains(string(b), newest34) {
			t.Errorf("34/start.json: %v, %.100s", err, b)
		}
		if got, err := os.Readlink(filepath.Join(mnt, "35")); err != nil || got != runs[2].UID {
			t.Errorf("readlink 35 = %q, %v", got, err)
		}
		for i, uid := range order {
			name := "-" + string(rune('1'+i))
			if got, err := os.Readlink(filepath.Join(mnt, name)); err != nil || got != uid {
				t.Errorf("readlink %s = %q, %v; want %s", name, got, err, uid)
			}
		}
		for _, name := range []string{"-5", "36", "-0"} {
			if _, err := os.Lstat(filepath.Join(mnt, name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("lstat %s: %v, want ENOENT", name, err)
			}
		}

		// uid prefixes: 5 characters and unique is the run's directory; 4 is too short.
		if fi, err := os.Lstat(filepath.Join(mnt, "9d8e7")); err != nil || !fi.IsDir() {
			t.Errorf("lstat 9d8e7 (a unique 5-character prefix): %v, %v; want a directory", fi, err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "9d8e")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat 9d8e (4 characters): %v, want ENOENT", err)
		}
		// Ambiguous: ENOENT and one log line naming both runs, however often it is asked.
		for range 3 {
			if _, err := os.Stat(filepath.Join(mnt, "3f2a5b")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("stat 3f2a5b (ambiguous): %v, want ENOENT", err)
			}
		}
		lines := waitLogLines(logs, "ambiguous uid prefix", "3f2a5b")
		if len(lines) != 1 || !strings.Contains(lines[0], runs[0].UID+" "+runs[1].UID) {
			t.Errorf("log lines of the ambiguous prefix: %q; want one naming %s and %s", lines, runs[0].UID, runs[1].UID)
		}
	})

	t.Run("ls", func(t *testing.T) {
		// The names that resolve are listed in their order; the others are named on stderr
		// (merged into out here) and make the exit status 1.
		out, code := run(t, time.Minute, "ls", "--no-cache", src, "34", "3f2a5", "-1", "3f2a", "9d8e7")
		var rows []string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.Count(f[0], "-") == 4 {
				rows = append(rows, f[0])
			}
		}
		if code != 1 || strings.Join(rows, " ") != strings.Join([]string{newest34, order[0], runs[3].UID}, " ") ||
			!strings.Contains(out, `uid prefix "3f2a5" matches 2 runs: `+runs[0].UID+" "+runs[1].UID) ||
			!strings.Contains(out, `"3f2a": a uid prefix needs at least 5 characters`) || !strings.Contains(out, "2 of 5 names name no run") {
			t.Errorf("brokerfs ls SRC 34 3f2a5 -1 3f2a 9d8e7: exit %d, rows %v; want 1 and %s %s %s:\n%s", code, rows, newest34, order[0], runs[3].UID, out)
		}

		out, code = run(t, time.Minute, "ls", "--no-cache", "--json", src)
		var got []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("ls --json: %v: %q", err, l)
			}
			got = append(got, m)
		}
		if code != 0 || len(got) != len(runs) {
			t.Fatalf("brokerfs ls --json: exit %d:\n%s", code, out)
		}
		for i, r := range got {
			uid := order[len(order)-1-i] // oldest first
			var want nameRun
			for _, w := range runs {
				if w.UID == uid {
					want = w
				}
			}
			status := any("success")
			if want.Live {
				status = nil
			}
			if r["uid"] != uid || r["scan_id"] != float64(want.ScanID) || r["plan_name"] != want.Plan || r["time"] != want.Time ||
				r["live"] != want.Live || r["exit_status"] != status {
				t.Errorf("ls --json: %v; want %+v (oldest first)", r, want)
			}
			if tm, err := time.Parse(time.RFC3339, r["time_iso"].(string)); err != nil || tm.Unix() != int64(want.Time) || !strings.HasSuffix(r["time_iso"].(string), "+00:00") {
				t.Errorf("time_iso %v: %v", r["time_iso"], err)
			}
		}

		empty := t.TempDir()
		if out, code := run(t, time.Minute, "ls", "--no-cache", empty); code != 1 || !strings.Contains(out, "no runs in "+empty) || strings.Contains(out, "UID") {
			t.Errorf("brokerfs ls EMPTY: exit %d, want 1 and no header:\n%s", code, out)
		}
	})

	// Last: a new run arrives. Within --list-ttl (300 ms; the kernel keeps these entries as
	// long) -1 and 34 name it, through the same paths a shell used before.
	t.Run("new run", func(t *testing.T) {
		for _, name := range []string{"-1", "34"} {
			os.Lstat(filepath.Join(mnt, name)) // the kernel holds the entries now
		}
		fresh := nameRun{"c0ffee00-5555-4000-8000-000000000005", 1700000400, 34, "scan", false}
		writeNameRun(t, src, fresh)
		deadline := time.Now().Add(5 * time.Second)
		for {
			a, _ := os.Readlink(filepath.Join(mnt, "-1"))
			b, _ := os.Readlink(filepath.Join(mnt, "34"))
			c, _ := os.Readlink(filepath.Join(mnt, "-2"))
			fi, err := os.Stat(filepath.Join(mnt, "-1"))
			if a == fresh.UID && b == fresh.UID && c == order[0] && err == nil && fi.ModTime().Unix() == int64(fresh.Time) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("5 s after a new run (--list-ttl 300ms): -1 -> %s, 34 -> %s, -2 -> %s, stat -1: %v %v; want %s, %s, %s", a, b, c, fi, err, fresh.UID, fresh.UID, order[0])
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
