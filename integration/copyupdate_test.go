package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 11 item 5: brokerfs copy brings copies of runs that were live up to date, reports
// (and with --update re-copies) runs that changed otherwise, warns about external files it
// did not copy, and writes plain progress lines when stderr is not a terminal.

var copySummaryRE = regexp.MustCompile(`copied (\d+) runs \((\d+) documents\), skipped (\d+) already present, (\d+) failed, (\d+) updated, (\d+) changed`)

// copyCounts runs brokerfs copy ARGS and returns its output and its summary: copied,
// skipped, failed, updated, changed.
func copyCounts(t *testing.T, args ...string) (string, [5]string) {
	t.Helper()
	out, code := run(t, time.Minute, append([]string{"copy"}, args...)...)
	if code != 0 {
		t.Fatalf("brokerfs copy %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	m := copySummaryRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("brokerfs copy %s: no summary line:\n%s", strings.Join(args, " "), out)
	}
	return out, [5]string{m[1], m[3], m[4], m[5], m[6]}
}

// sameRun reports what testdata/docstream.py (Python's msgpack) says of pairs of run files:
// "same" when each pair holds equal documents.
func sameRun(t *testing.T, pairs ...string) string {
	t.Helper()
	out := strings.TrimSpace(runPython(t, append([]string{"testdata/docstream.py", "same"}, pairs...)...))
	if strings.Count(out, "same") == len(pairs)/2 && !strings.Contains(out, "differ") {
		return "same"
	}
	return out
}

func TestCopyUpdate(t *testing.T) {
	t.Parallel()
	src, dst, scratch := t.TempDir(), t.TempDir(), t.TempDir()
	// r1: finished. r2: written whole to scratch, and into the source cut short, as a live
	// run is seen while it is written.
	r1 := writeCacheRun(t, src, "r1.msgpack", uidN(901), "--events", "5")
	full := writeCacheRun(t, scratch, "r2.msgpack", uidN(902), "--events", "8")
	r2 := filepath.Join(src, "r2.msgpack")
	live := func(events int) {
		t.Helper()
		b, err := os.ReadFile(full.path)
		if err != nil {
			t.Fatal(err)
		}
		// start, 2 descriptors, 1 baseline event, then the primary events
		cut := full.offsets[4+events]
		if full.names[3+events] != "event" || full.names[len(full.names)-1] != "stop" {
			t.Fatalf("cache_run.py wrote %v", full.names)
		}
		writeAtomic(t, r2, b[:cut])
	}
	live(3)

	// With progress, to a pipe: plain lines, the last saying all runs are done, no \r.
	out, got := copyCounts(t, src, dst)
	if want := [5]string{"2", "0", "0", "0", "0"}; got != want {
		t.Errorf("first copy: copied, skipped, failed, updated, changed = %v, want %v", got, want)
	}
	if strings.Contains(out, "\r") {
		t.Errorf("progress to a pipe holds carriage returns:\n%q", out)
	}
	if !strings.Contains(out, "copying runs: 2/2 (100%)") {
		t.Errorf("no final progress line:\n%s", out)
	}
	d1, d2 := filepath.Join(dst, uidN(901)+".msgpack"), filepath.Join(dst, uidN(902)+".msgpack")
	if s := sameRun(t, r1.path, d1, r2, d2); s != "same" {
		t.Errorf("after the first copy: %s", s)
	}

	t.Log("the live run grew: its copy is re-copied by default")
	live(6)
	_, got = copyCounts(t, "--no-progress", src, dst)
	if want := [5]string{"1", "1", "0", "1", "0"}; got != want {
		t.Errorf("copy after the live run grew = %v, want %v", got, want)
	}
	if s := sameRun(t, r2, d2); s != "same" {
		t.Errorf("after the live run grew: %s", s)
	}

	t.Log("the live run finished")
	writeAtomic(t, r2, readFile(t, full.path))
	_, got = copyCounts(t, "--no-progress", src, dst)
	if want := [5]string{"1", "1", "0", "1", "0"}; got != want {
		t.Errorf("copy after the live run finished = %v, want %v", got, want)
	}
	if s := sameRun(t, full.path, d2); s != "same" {
		t.Errorf("after the live run finished: %s", s)
	}
	if left, _ := filepath.Glob(filepath.Join(dst, ".*")); len(left) > 0 {
		t.Errorf("re-copies left hidden files in DEST: %q", left)
	}
	_, got = copyCounts(t, "--no-progress", src, dst)
	if want := [5]string{"0", "2", "0", "0", "0"}; got != want {
		t.Errorf("copy with nothing to do = %v, want %v", got, want)
	}

	t.Log("a finished run rewritten in the source (another number of events): changed, left alone without --update")
	before := readFile(t, d1)
	writeCacheRun(t, scratch, "r1.msgpack", uidN(901), "--events", "7", "--seed", "2")
	writeAtomic(t, r1.path, readFile(t, filepath.Join(scratch, "r1.msgpack")))
	out, got = copyCounts(t, "--no-progress", src, dst)
	t.Logf("brokerfs copy says:\n%s", out)
	if want := [5]string{"0", "1", "0", "0", "1"}; got != want {
		t.Errorf("copy after a finished run changed = %v, want %v", got, want)
	}
	if !strings.Contains(out, "use --update") {
		t.Errorf("the copy does not say how to re-copy changed runs:\n%s", out)
	}
	if string(readFile(t, d1)) != string(before) {
		t.Errorf("a copy without --update rewrote a changed run's copy")
	}
	_, got = copyCounts(t, "--no-progress", "--update", src, dst)
	if want := [5]string{"1", "1", "0", "1", "0"}; got != want {
		t.Errorf("copy --update = %v, want %v", got, want)
	}
	if s := sameRun(t, r1.path, d1, full.path, d2); s != "same" {
		t.Errorf("after --update: %s", s)
	}

	// On a terminal (script(1) gives the copy a pseudo-terminal) the line is redrawn with \r.
	if script, err := exec.LookPath("script"); err == nil {
		out, err := exec.Command(script, "-qec", brokerfs+" copy "+src+" "+t.TempDir(), "/dev/null").CombinedOutput()
		if err != nil {
			t.Errorf("script -c 'brokerfs copy': %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "\rcopying runs: 2/2 (100%)") {
			t.Errorf("on a terminal the progress line is not redrawn:\n%q", out)
		}
	}

}

func TestCopyExternalWarning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runPython(t, "testdata/external_run.py", dir)
	warning := "warning: external files were not copied (runs: 1, files: 2)"
	out, _ := copyCounts(t, "--no-progress", filepath.Join(dir, "cat_msgpack"), t.TempDir())
	t.Logf("brokerfs copy says:\n%s", out)
	if n := strings.Count(out, "warning:"); n != 1 || !strings.Contains(out, warning) || !strings.Contains(out, "--copy-files") {
		t.Errorf("copy of a run with 2 external files, without --copy-files: want one line %q naming --copy-files:\n%s", warning, out)
	}
	out, _ = copyCounts(t, "--no-progress", "--copy-files", t.TempDir(), "--root-map", "/beamline/old/root="+filepath.Join(dir, "moved"),
		filepath.Join(dir, "cat_msgpack"), t.TempDir())
	if strings.Contains(out, "warning:") {
		t.Errorf("copy --copy-files warns:\n%s", out)
	}
}

// writeAtomic replaces path with b as a writer that renames into place does.
func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
