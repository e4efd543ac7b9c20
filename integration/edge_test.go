package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestEdgeValues mounts one run full of edge cases (testdata/edge_run.py), written both as
// JSONL and as msgpack with msgpack-numpy values: merged descriptors, missing values, NaN and
// infinities, -0.0, denormals, awkward strings, arrays of every kind. Besides the reference
// check, a field whose values cannot form an array and an external field whose file is
// missing must fail with EIO and be logged with the run, the field and the file.
func TestEdgeValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runPython(t, "testdata/edge_run.py", dir)
	files := runFiles(t, dir)
	mnt, logs := mount(t, dir)
	expect(t, mnt, files)

	for _, r := range summaries(t, files) {
		primary := filepath.Join(mnt, r.UID, "primary")
		if _, err := os.ReadFile(filepath.Join(primary, "ragged.npy")); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: ragged.npy: %v, want EIO", r.Path, err)
		}
		if _, err := os.ReadFile(filepath.Join(primary, "cam.npy")); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: cam.npy (its file is missing): %v, want EIO", r.Path, err)
		}
		for _, want := range [][]string{{r.UID, "ragged"}, {r.UID, "cam", "/nonexistent/cam"}} {
			if !logLineWith(logs.String(), want...) {
				t.Errorf("no log line names all of %q:\n%s", want, logs)
			}
		}
	}
}

// logLineWith reports whether one line of logs contains every one of words.
func logLineWith(logs string, words ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}
