package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var copiedRE = regexp.MustCompile(`copied (\d+) runs \((\d+) documents\), skipped (\d+) already present, (\d+) failed`)

// copyRuns runs `brokerfs copy --no-progress ARGS...` and returns the numbers of its summary
// line: runs copied, skipped and failed.
func copyRuns(t *testing.T, args ...string) (copied, skipped, failed string) {
	t.Helper()
	out, code := run(t, 2*time.Minute, append([]string{"copy", "--no-progress"}, args...)...)
	if code != 0 {
		t.Fatalf("brokerfs copy %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	m := copiedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("brokerfs copy %s: no summary line:\n%s", strings.Join(args, " "), out)
	}
	return m[1], m[3], m[4]
}

// checkStreams reads run files with testdata/docstream.py (Python's msgpack and json modules,
// not brokerfs's code) and checks that each is a [name, doc] stream, start first and stop last.
func checkStreams(t *testing.T, files []string) {
	t.Helper()
	out := runPython(t, append([]string{"testdata/docstream.py", "check"}, files...)...)
	if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != len(files) {
		t.Errorf("docstream.py check read %d of %d files:\n%s", n, len(files), out)
	}
}

// TestCopyRoundTrip copies the demo catalog msgpack -> msgpack -> JSONL and checks that the
// three mounts hold the same files; that a second copy skips everything; that an interrupted
// copy leaves nothing half-written behind; that Python reads the copies as suitcase streams;
// and that --copy-files makes a catalog that needs no --root-map.
func TestCopyRoundTrip(t *testing.T) {
	t.Parallel()
	d := demoCatalog(t)
	rootMap := demoDetectorRoot + "=" + filepath.Join(d, "detector")
	nRuns := len(runFiles(t, d))
	e, f := filepath.Join(t.TempDir(), "E"), filepath.Join(t.TempDir(), "F")

	if c, s, x := copyRuns(t, d, e); c != itoa(nRuns) || s != "0" || x != "0" {
		t.Errorf("copy D E: copied %s, skipped %s, failed %s; want %d, 0, 0", c, s, x, nRuns)
	}
	for _, p := range runFiles(t, e) {
		if !strings.HasSuffix(p, ".msgpack") {
			t.Errorf("copy into a new directory without --format wrote %s, want msgpack", p)
		}
	}
	if c, _, x := copyRuns(t, "--format", "jsonl", e, f); c != itoa(nRuns) || x != "0" {
		t.Errorf("copy --format jsonl E F: copied %s, failed %s; want %d, 0", c, x, nRuns)
	}
	for _, p := range runFiles(t, f) {
		if !strings.HasSuffix(p, ".jsonl") {
			t.Errorf("copy --format jsonl wrote %s", p)
		}
	}
	checkStreams(t, append(runFiles(t, e), runFiles(t, f)...))

	md, _ := mount(t, d, "--root-map", rootMap)
	me, _ := mount(t, e, "--root-map", rootMap)
	mf, _ := mount(t, f, "--root-map", rootMap)
	expect(t, me, runFiles(t, e))
	compareMounts(t, me, md)
	compareMounts(t, mf, md)

	t.Run("resume", func(t *testing.T) {
		before := dirSnapshot(t, e)
		if c, s, x := copyRuns(t, d, e); c != "0" || s != itoa(nRuns) || x != "0" {
			t.Errorf("second copy D E: copied %s, skipped %s, failed %s; want 0, %d, 0", c, s, x, nRuns)
		}
		if after := dirSnapshot(t, e); !equalSnap(before, after) {
			t.Errorf("a copy with nothing to do changed DEST")
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		// What a copy killed mid-run leaves: a hidden temporary file holding half a run.
		g := t.TempDir()
		src := runFiles(t, e)[0]
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, g, ".copy-123456789", b[:len(b)/2])
		if mg, logs := mount(t, g); countRuns(t, mg) != 0 {
			t.Errorf("a directory holding only a partial .copy-* file lists runs; brokerfs says:\n%s", logs)
		}
		if c, s, x := copyRuns(t, e, g); c != itoa(nRuns) || s != "0" || x != "0" {
			t.Errorf("copy after an interruption: copied %s, skipped %s, failed %s; want %d, 0, 0", c, s, x, nRuns)
		}
		mg, _ := mount(t, g, "--root-map", rootMap)
		if n := countRuns(t, mg); n != nRuns {
			t.Errorf("after the re-run %d runs are listed, want %d", n, nRuns)
		}
		compareMounts(t, mg, md)
	})

	t.Run("interrupted by SIGKILL", func(t *testing.T) {
		// A bigger catalog: the demo's runs many times over under new uids, so that the copy
		// is still writing when it is killed.
		big := t.TempDir()
		runPython(t, "-c", multiplyScript, e, big, "60")
		g := t.TempDir()
		killCopyMidway(t, big, g)
		// Whatever the killed copy finished is complete; a re-run copies the rest.
		if files, _ := filepath.Glob(filepath.Join(g, "*.msgpack")); len(files) > 0 {
			checkStreams(t, files)
		}
		copyRuns(t, big, g)
		want := len(runFiles(t, big))
		if n := len(runFiles(t, g)); n != want {
			t.Errorf("after the re-run DEST holds %d runs, want %d", n, want)
		}
		if left, _ := filepath.Glob(filepath.Join(g, ".copy-*")); len(left) > 0 {
			t.Logf("the killed copy's temporary files are still in DEST after the re-run (hidden, not listed): %q", left)
		}
		if c, s, _ := copyRuns(t, big, g); c != "0" || s != itoa(want) {
			t.Errorf("third copy: copied %s, skipped %s; want 0, %d", c, s, want)
		}
		checkStreams(t, runFiles(t, g))
	})

	t.Run("copy-files", func(t *testing.T) {
		g, h := filepath.Join(t.TempDir(), "G"), filepath.Join(t.TempDir(), "H")
		copyRuns(t, "--copy-files", g, "--root-map", rootMap, d, h)
		mh, logs := mount(t, h) // no --root-map: the resources point into G now
		var found int
		filepath.WalkDir(md, func(path string, de os.DirEntry, err error) error {
			if err != nil || de.Name() != "cam_image.npy" {
				return nil
			}
			rel, _ := filepath.Rel(md, path)
			want, err1 := os.ReadFile(path)
			got, err2 := os.ReadFile(filepath.Join(mh, rel))
			if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %d bytes (%v) in the --copy-files copy, %d (%v) in the original; brokerfs says:\n%s", rel, len(got), err2, len(want), err1, logs)
			}
			found++
			return nil
		})
		if found == 0 {
			t.Fatal("the demo catalog has no cam_image.npy")
		}
		// The copied runs' resources name G, not the old root.
		for _, p := range runFiles(t, h) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(demoDetectorRoot)) {
				t.Errorf("%s still names the old root %s", p, demoDetectorRoot)
			}
		}
		compareMountsExceptFilesTxt(t, mh, md)
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// countRuns counts the run directories of a mount (its entries other than by-scan-id and latest).
func countRuns(t *testing.T, mnt string) int {
	t.Helper()
	entries, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Name() != "by-scan-id" && e.Name() != "latest" {
			n++
		}
	}
	return n
}

type snapshot map[string]string // name -> size and mtime

func dirSnapshot(t *testing.T, dir string) snapshot {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		s[e.Name()] = fi.ModTime().String() + " " + itoa(int(fi.Size()))
	}
	return s
}

func equalSnap(a, b snapshot) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// compareMountsExceptFilesTxt is compareMounts for a copy whose external files moved: the
// files.txt lists name other paths by design.
func compareMountsExceptFilesTxt(t *testing.T, got, want string) {
	t.Helper()
	filepath.WalkDir(want, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(want, path)
		if !strings.HasSuffix(rel, ".npy") && !strings.HasSuffix(rel, ".csv") {
			return nil
		}
		a, err1 := os.ReadFile(filepath.Join(got, rel))
		b, err2 := os.ReadFile(path)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: %d bytes (%v) in the copy, %d (%v) in the original", rel, len(a), err1, len(b), err2)
		}
		return nil
	})
}

// multiplyScript writes each msgpack run of argv[1] N times into argv[2], with new uids.
const multiplyScript = `
import glob, os, sys, uuid, msgpack
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for path in sorted(glob.glob(os.path.join(src, "*.msgpack"))):
    with open(path, "rb") as f:
        docs = list(msgpack.Unpacker(f, raw=False, strict_map_key=False))
    raw = msgpack.packb(docs)
    for i in range(n):
        old = docs[0][1]["uid"]
        new = str(uuid.uuid4())
        copy = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        def fix(v):
            if isinstance(v, str) and old in v:
                return v.replace(old, new)
            if isinstance(v, list):
                return [fix(x) for x in v]
            if isinstance(v, dict):
                return {k: fix(x) for k, x in v.items()}
            return v
        copy = fix(copy)
        # other documents' uids must be new too, or runs would share descriptors
        ren = {}
        for name, doc in copy:
            if name in ("descriptor", "resource") and "uid" in doc:
                ren[doc["uid"]] = str(uuid.uuid4())
        def fix2(v):
            if isinstance(v, str) and v in ren:
                return ren[v]
            if isinstance(v, list):
                return [fix2(x) for x in v]
            if isinstance(v, dict):
                return {k: fix2(x) for k, x in v.items()}
            return v
        copy = fix2(copy)
        with open(os.path.join(dst, new + ".msgpack"), "wb") as f:
            for d in copy:
                f.write(msgpack.packb(d, use_bin_type=True))
`

// killCopyMidway starts `brokerfs copy SRC DST` and kills it with SIGKILL once it has written
// some runs but not all; it checks that no partial run is visible.
func killCopyMidway(t *testing.T, src, dst string) {
	t.Helper()
	total := len(runFiles(t, src))
	cmd := exec.Command(brokerfs, "copy", "--no-progress", src, dst)
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for {
		files, _ := filepath.Glob(filepath.Join(dst, "*.msgpack"))
		if len(files) >= 3 {
			break
		}
		select {
		case err := <-done:
			t.Logf("the copy finished before it could be killed (%v): a faster machine than expected:\n%s", err, out.String())
			return
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatalf("the copy wrote nothing within a minute:\n%s", out.String())
		}
	}
	cmd.Process.Kill()
	<-done
	files, _ := filepath.Glob(filepath.Join(dst, "*.msgpack"))
	t.Logf("killed the copy after %d of %d runs", len(files), total)
	if len(files) >= total {
		t.Logf("the copy had finished all runs when killed")
	}
}
