package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadOnly tries every kind of change through the mount: each must fail with EROFS and
// leave the files as they were.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	mnt, _ := mount(t, demoCatalog(t))
	target, err := os.Readlink(filepath.Join(mnt, "by-scan-id", "1"))
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(mnt, "by-scan-id", target)
	doc := filepath.Join(run, "start.json")
	field := filepath.Join(run, "primary", "det.npy")
	before, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ops := []struct {
		name string
		op   func() error
	}{
		{"open a file for writing", func() error { return closeIfOpened(os.OpenFile(doc, os.O_WRONLY, 0)) }},
		{"open a file for appending", func() error { return closeIfOpened(os.OpenFile(field, os.O_RDWR|os.O_APPEND, 0)) }},
		{"truncate a file", func() error { return os.Truncate(field, 0) }},
		{"create a file in a run", func() error { return os.WriteFile(filepath.Join(run, "new.txt"), nil, 0o644) }},
		{"create a file in the root", func() error { return os.WriteFile(filepath.Join(mnt, "new.txt"), nil, 0o644) }},
		{"mkdir in a run", func() error { return os.Mkdir(filepath.Join(run, "newdir"), 0o755) }},
		{"mkdir in the root", func() error { return os.Mkdir(filepath.Join(mnt, "newdir"), 0o755) }},
		{"rename a file", func() error { return os.Rename(doc, filepath.Join(run, "renamed.json")) }},
		{"rename a run", func() error { return os.Rename(run, filepath.Join(mnt, "renamed")) }},
		{"chmod a file", func() error { return os.Chmod(doc, 0o666) }},
		{"chmod a directory", func() error { return os.Chmod(run, 0o777) }},
		{"chown a file", func() error { return os.Chown(doc, 1, 1) }},
		{"set times", func() error { return os.Chtimes(doc, now, now) }},
		{"unlink a file", func() error { return syscall.Unlink(doc) }},
		{"unlink a symlink", func() error { return syscall.Unlink(filepath.Join(mnt, "latest")) }},
		{"rmdir a stream", func() error { return syscall.Rmdir(filepath.Join(run, "primary")) }},
		{"symlink", func() error { return os.Symlink("start.json", filepath.Join(run, "link")) }},
		{"hard link", func() error { return os.Link(doc, filepath.Join(run, "hard.json")) }},
		{"mknod a fifo", func() error { return syscall.Mkfifo(filepath.Join(run, "fifo"), 0o644) }},
	}
	for _, o := range ops {
		if err := o.op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", o.name, err)
		}
	}
	after, err := os.ReadFile(doc)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("start.json changed or became unreadable: %v", err)
	}
	if fi, err := os.Stat(field); err != nil || fi.Size() == 0 {
		t.Errorf("det.npy after the attempts: %v, %v", fi, err)
	}
}

func closeIfOpened(f *os.File, err error) error {
	if err == nil {
		f.Close()
	}
	return err
}

// TestMountpointChecks: brokerfs refuses a mountpoint that is not empty, does not exist, is
// already a mount point or lies inside the catalog, says what to do and mounts nothing.
func TestMountpointChecks(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	catalog := demoCatalog(t)

	refused := func(t *testing.T, mnt string, wants ...string) {
		t.Helper()
		out, code := run(t, 30*time.Second, "mount", catalog, mnt)
		if code == 0 {
			t.Fatalf("brokerfs mount on %s exited 0, want a refusal:\n%s", mnt, out)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("the refusal does not say %q:\n%s", w, out)
			}
		}
		t.Logf("exit %d: %s", code, strings.TrimSpace(out))
	}

	t.Run("not empty", func(t *testing.T) {
		mnt := t.TempDir()
		if err := os.WriteFile(filepath.Join(mnt, "notes.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, mnt, mnt, "not empty", "empty directory")
		if isMounted(mnt) {
			t.Errorf("%s got mounted", mnt)
		}
		if b, err := os.ReadFile(filepath.Join(mnt, "notes.txt")); err != nil || string(b) != "mine" {
			t.Errorf("the mountpoint's own file: %q, %v", b, err)
		}
	})

	t.Run("does not exist", func(t *testing.T) {
		mnt := filepath.Join(t.TempDir(), "missing")
		refused(t, mnt, mnt, "does not exist", "mkdir")
		if _, err := os.Stat(mnt); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("brokerfs created the mountpoint: %v", err)
		}
	})

	t.Run("already mounted", func(t *testing.T) {
		mnt, _ := mount(t, catalog)
		refused(t, mnt, mnt, "already a mount point", "umount")
		if _, err := os.ReadDir(mnt); err != nil {
			t.Errorf("the first mount broke after the refused second one: %v", err)
		}
	})

	t.Run("inside the catalog", func(t *testing.T) {
		mnt := filepath.Join(catalog, "view")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(mnt)
		refused(t, mnt, mnt, "catalog")
		if isMounted(mnt) {
			t.Errorf("%s got mounted", mnt)
		}
	})
}

// TestBadInput mounts good runs next to a truncated msgpack run, garbage files and a JSONL
// run whose descriptor lacks data_keys: the mount comes up, the good runs read correctly,
// reading everything else fails cleanly, each bad file is named in the log, nothing panics.
func TestBadInput(t *testing.T) {
	t.Parallel()
	demo := demoCatalog(t)
	byScan := map[string]runSummary{}
	for _, r := range summaries(t, runFiles(t, demo)) {
		byScan[jsonNumber(r.ScanID)] = r
	}
	dir := t.TempDir()
	var good []string
	for _, id := range []string{"1", "2", "4", "5"} { // msgpack, JSONL, aborted msgpack, live JSONL
		r := byScan[id]
		good = append(good, copyFile(t, r.Path, dir, filepath.Base(r.Path)))
	}

	// The grid scan (scan 3, older than the newest good run) cut in the middle of a document.
	grid, err := os.ReadFile(byScan["3"].Path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "truncated.msgpack", grid[:len(grid)*3/5])
	writeFile(t, dir, "random.msgpack", bytes.Repeat([]byte{0xc1, 0xff, 0x00, 0x93}, 300))
	writeFile(t, dir, "garbage.jsonl", []byte("this is not JSON\n{\"half\": [1, 2\n[\"start\"]\n"))
	writeFile(t, dir, "empty.jsonl", nil)
	writeFile(t, dir, "nodatakeys.jsonl", withoutDataKeys(t, byScan["2"]))
	bad := []string{"truncated.msgpack", "random.msgpack", "garbage.jsonl", "nodatakeys.jsonl"}

	mnt, logs := mount(t, dir)
	expect(t, mnt, good, "--subset")

	// Read everything, bad runs included: errors are fine, hangs and crashes are not.
	done := make(chan int)
	go func() { done <- readEverything(mnt) }()
	select {
	case n := <-done:
		t.Logf("read the whole mount: %d files failed to read", n)
	case <-time.After(2 * time.Minute):
		t.Fatalf("reading the whole mount did not finish in 2 minutes; brokerfs says:\n%s", logs)
	}
	for _, name := range bad {
		if !logs.waitFor(name, 5*time.Second) {
			t.Errorf("the log does not name the bad file %s:\n%s", name, logs)
		}
	}
	if !isMounted(mnt) {
		t.Fatalf("the mount went away; brokerfs says:\n%s", logs)
	}
	expect(t, mnt, good, "--subset") // still readable after all that
	t.Logf("brokerfs said:\n%s", logs)
}

func writeFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// withoutDataKeys returns a JSONL run made from r (a JSONL file) under a new uid and scan_id
// 99, older than every demo run, whose descriptors have no data_keys.
func withoutDataKeys(t *testing.T, r runSummary) []byte {
	t.Helper()
	lines := readJSONL(t, r.Path)
	const newUID = "0badda7a-0000-4000-8000-000000000000"
	var out bytes.Buffer
	for _, l := range lines {
		name, doc := l[0].(string), l[1].(map[string]any)
		switch name {
		case "start":
			doc["uid"], doc["scan_id"] = newUID, 99
			doc["time"] = json.Number("1000000000.5")
		case "descriptor":
			doc["run_start"] = newUID
			delete(doc, "data_keys")
		case "stop":
			doc["run_start"] = newUID
		}
		b, err := json.Marshal([]any{name, doc})
		if err != nil {
			t.Fatal(err)
		}
		out.Write(append(b, '\n'))
	}
	return out.Bytes()
}

// readJSONL decodes a JSONL run file into its [name, doc] lines, numbers as json.Number.
func readJSONL(t *testing.T, path string) [][]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]any
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var l []any
		if err := dec.Decode(&l); err != nil || len(l) != 2 {
			t.Fatalf("%s: bad line %q: %v", path, line, err)
		}
		lines = append(lines, l)
	}
	return lines
}

// readEverything reads every file under dir (not following symlinks) and returns how many
// could not be read.
func readEverything(dir string) int {
	failed := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			failed++
			return nil // keep walking: a failing directory must not stop the rest
		}
		if d.Type().IsRegular() {
			if _, err := os.ReadFile(path); err != nil {
				failed++
			}
		}
		return nil
	})
	return failed
}
