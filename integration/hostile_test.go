package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHostileExternal mounts a run whose external field reads, row by row, a good HDF5
// file and hostile ones (handlers/testdata/gen_hostile.py): an external link and a virtual
// dataset reaching a secret outside --allowed-roots, a FIFO, an external link to a FIFO, and
// a resource_path with a line break. Through the real mount: the good row reads, every
// hostile row fails with EIO at once (no hang), the secret never appears, the log names the
// resources, and files.txt gets no injected line.
func TestHostileExternal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := exec.Command("/usr/bin/python3", "../handlers/testdata/gen_hostile.py", dir).CombinedOutput(); err != nil {
		t.Fatalf("gen_hostile.py: %v\n%s", err, out)
	}
	ok := filepath.Join(dir, "ok")
	for _, f := range []string{"fifo.h5", "fifo_target.h5"} {
		if err := syscall.Mkfifo(filepath.Join(ok, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	paths := []string{"good.h5", "elink_abs.h5", "vds.h5", "fifo.h5", "elink_fifo.h5", "good.h5\n/etc/shadow\n/root/.ssh/id_rsa"}
	var docs [][2]any
	add := func(name string, doc map[string]any) { docs = append(docs, [2]any{name, doc}) }
	uid := "hostile-run-0001"
	add("start", map[string]any{"uid": uid, "time": 1.7e9, "scan_id": 1, "plan_name": "count"})
	add("descriptor", map[string]any{"uid": "desc-1", "run_start": uid, "time": 1.7e9, "name": "primary",
		"data_keys": map[string]any{"det": map[string]any{"dtype": "array", "shape": []int{1, 2, 2}, "source": "sim", "external": "FILESYSTEM:"}}})
	for i, p := range paths {
		res := fmt.Sprintf("res-%d", i)
		add("resource", map[string]any{"uid": res, "spec": "AD_HDF5", "root": ok, "resource_path": p,
			"resource_kwargs": map[string]any{"frame_per_point": 1}, "path_semantics": "posix", "run_start": uid})
		add("datum", map[string]any{"datum_id": res + "/0", "resource": res, "datum_kwargs": map[string]any{"point_number": 0}})
		add("event", map[string]any{"uid": fmt.Sprintf("ev-%d", i), "descriptor": "desc-1", "seq_num": i + 1, "time": 1.7e9 + float64(i),
			"data": map[string]any{"det": res + "/0"}, "timestamps": map[string]any{"det": 1.7e9}, "filled": map[string]any{"det": false}})
	}
	add("stop", map[string]any{"uid": "stop-1", "run_start": uid, "time": 1.7e9 + 10, "exit_status": "success", "num_events": map[string]any{"primary": len(paths)}})
	var b bytes.Buffer
	for _, d := range docs {
		line, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	cat := filepath.Join(dir, "cat")
	os.MkdirAll(cat, 0o755)
	if err := os.WriteFile(filepath.Join(cat, uid+".jsonl"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	mnt, logs := mount(t, cat, "--allowed-roots", ok)
	det := filepath.Join(mnt, uid, "primary", "det.npy")
	f, err := os.OpenFile(det, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("open det.npy: %v\n%s", err, logs)
	}
	defer f.Close()
	// Only the header: a read reaching into the hostile rows fails as a whole.
	pre := make([]byte, 10)
	if _, err := f.ReadAt(pre, 0); err != nil {
		t.Fatalf("read det.npy: %v", err)
	}
	hb := make([]byte, 10+(int(pre[8])|int(pre[9])<<8))
	if _, err := f.ReadAt(hb, 0); err != nil {
		t.Fatalf("read det.npy's header: %v", err)
	}
	h, err := parseNPYHeader(hb)
	if err != nil {
		t.Fatal(err)
	}
	if h.descr != "|u1" || len(h.shape) != 4 || h.shape[0] != len(paths) {
		t.Fatalf("det.npy header: %s %v", h.descr, h.shape)
	}
	for row := range paths {
		buf := make([]byte, 4)
		start := time.Now()
		_, err := f.ReadAt(buf, int64(h.dataOffset+4*row))
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("row %d (%q): %v", row, paths[row], d)
		}
		switch {
		case row == 0:
			if err != nil || !bytes.Equal(buf, []byte{0, 1, 2, 3}) {
				t.Errorf("row 0 (good.h5): % x, %v", buf, err)
			}
		case !errors.Is(err, syscall.EIO):
			t.Errorf("row %d (%q): % x, %v; want EIO", row, paths[row], buf, err)
		}
		if bytes.Contains(buf, []byte{42}) {
			t.Errorf("row %d (%q): the secret", row, paths[row])
		}
	}
	for _, w := range [][]string{{"res-1", "outside the allowed roots"}, {"res-2", "outside the allowed roots"},
		{"res-3", "not a regular file"}, {"res-4", "not a regular file"}} {
		if len(waitLogLines(logs, w...)) == 0 {
			t.Errorf("no log line with %q:\n%s", w, logs)
		}
	}
	files, err := os.ReadFile(filepath.Join(mnt, uid, "files.txt"))
	if err != nil {
		t.Fatalf("files.txt: %v", err)
	}
	for _, line := range strings.Split(string(files), "\n") {
		if strings.Contains(line, "shadow") || strings.Contains(line, "id_rsa") {
			t.Errorf("files.txt has an injected line %q:\n%s", line, files)
		}
	}
	if !strings.Contains(string(files), filepath.Join(ok, "good.h5")) {
		t.Errorf("files.txt lacks good.h5:\n%s", files)
	}
}

// TestHostileDocuments mounts a msgpack and a JSONL run (testdata/bad_docs.py) in which six
// single documents are bad: a bit-flipped event page, values nested 600 deep, a ragged page,
// an event whose string value is 100 MB (a hole in a sparse file), an event whose seq_num is a
// string, and a JSONL event with a digit turned into a letter (msgpack: timestamps a list). Each used to make every
// file of its stream EIO, or cost 2.2 GB of memory. Through the mount: ls -l and numpy read
// the stream's files with the ten good events' values (from the generator, not brokerfs), each
// bad document is logged once naming its file and byte offset, and the server's peak RSS
// stays within 256 MiB.
func TestHostileDocuments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, err := exec.Command(python, "testdata/bad_docs.py", dir, "100000000").Output()
	if err != nil {
		t.Fatalf("bad_docs.py: %v", err)
	}
	var want struct {
		X   []float64                   `json:"x"`
		S   []string                    `json:"s"`
		Bad map[string]map[string]int64 `json:"bad"`
	}
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir)
	start := time.Now()
	for _, format := range []string{"msgpack", "jsonl"} {
		primary := filepath.Join(s.mnt, "bad-"+format, "primary")
		entries, err := os.ReadDir(primary)
		if err != nil {
			t.Fatalf("%s: ls: %v", format, err)
		}
		for _, e := range entries { // ls -l
			if _, err := e.Info(); err != nil {
				t.Errorf("%s: stat %s: %v", format, e.Name(), err)
			}
		}
		if _, err := os.ReadFile(filepath.Join(primary, "time.csv")); err != nil {
			t.Errorf("%s: time.csv: %v", format, err)
		}
	}
	t.Logf("listed both streams in %v", time.Since(start))
	got := runPython(t, "-c", `import json, sys, numpy as np
print(json.dumps([{"x": np.load(p + "/x.npy").tolist(), "s": np.load(p + "/s.npy").tolist()} for p in sys.argv[1:]]))`,
		filepath.Join(s.mnt, "bad-msgpack", "primary"), filepath.Join(s.mnt, "bad-jsonl", "primary"))
	var read []struct {
		X []float64 `json:"x"`
		S []string  `json:"s"`
	}
	if err := json.Unmarshal([]byte(got), &read); err != nil || len(read) != 2 {
		t.Fatalf("numpy read %q: %v", got, err)
	}
	for i, r := range read {
		if fmt.Sprint(r.X, r.S) != fmt.Sprint(want.X, want.S) {
			t.Errorf("run %d: x %v, s %q; want %v, %q", i, r.X, r.S, want.X, want.S)
		}
	}
	for format, docs := range want.Bad {
		for name, off := range docs {
			if lines := logLinesWith(s.logs.String(), "bad."+format+" ", fmt.Sprintf("offset=%d ", off)); len(lines) != 1 {
				t.Errorf("%s %s document at %d: log lines %q, want one", format, name, off, lines)
			}
		}
	}
	if n := len(logLinesWith(s.logs.String(), "skipping")); n != 12 {
		t.Errorf("%d log lines about skipped documents, want 12:\n%s", n, s.logs)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscan(rest, &hwm)
		}
	}
	t.Logf("peak RSS %d MiB", hwm>>10)
	if hwm == 0 || hwm > 256<<10 {
		t.Errorf("peak RSS %d KiB, want at most 256 MiB", hwm)
	}
}
