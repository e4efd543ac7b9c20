package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLiveJSONL follows a run while it is written: events appended to the JSONL file show up
// as new rows, a half-written line is ignored until it is complete, and the stop document
// makes stop.json appear.
func TestLiveJSONL(t *testing.T) {
	t.Parallel()
	var live runSummary
	for _, r := range summaries(t, runFiles(t, demoCatalog(t))) {
		if r.ExitStatus == "live" {
			live = r
		}
	}
	if live.UID == "" || !strings.HasSuffix(live.Path, ".jsonl") {
		t.Fatalf("the demo catalog has no live JSONL run")
	}
	dir := t.TempDir()
	file := copyFile(t, live.Path, dir, filepath.Base(live.Path))
	mnt, logs := mount(t, dir, "--live-ttl", "200ms", "--list-ttl", "200ms")
	run := filepath.Join(mnt, live.UID)
	npy := filepath.Join(run, "primary", "I0.npy")

	expect(t, mnt, []string{file})
	rows := npyRows(t, npy)
	if _, err := os.Stat(filepath.Join(run, "stop.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stop.json of a live run: %v, want ENOENT", err)
	}

	lines := readJSONL(t, file)
	last := lines[len(lines)-1]
	if last[0] != "event" {
		t.Fatalf("the live run's last document is a %v, want an event", last[0])
	}
	event := last[1].(map[string]any)
	desc := event["descriptor"]
	seq, err := event["seq_num"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := event["time"].(json.Number).Float64()
	if err != nil {
		t.Fatal(err)
	}
	next := func() []byte { // the next event, as a JSONL line
		seq, tm = seq+1, tm+1
		b, err := json.Marshal([]any{"event", map[string]any{
			"uid": fmt.Sprintf("11111111-2222-4333-8444-%012d", seq), "descriptor": desc,
			"time": tm, "seq_num": seq, "data": map[string]any{"I0": 2e5 + float64(seq) + 0.1},
			"timestamps": map[string]any{"I0": tm - 0.01}, "filled": map[string]any{},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return append(b, '\n')
	}

	appendTo(t, file, next())
	appendTo(t, file, next())
	waitRows(t, npy, rows+2, logs)
	expect(t, mnt, []string{file})

	// A writer caught in the middle of a line: the complete rows stay as they are.
	line := next()
	appendTo(t, file, line[:len(line)/2])
	time.Sleep(time.Second)
	if got := npyRows(t, npy); got != rows+2 {
		t.Errorf("after half a line: %d rows, want %d", got, rows+2)
	}
	appendTo(t, file, line[len(line)/2:])
	waitRows(t, npy, rows+3, logs)
	expect(t, mnt, []string{file})

	start := lines[0][1].(map[string]any)
	stop, err := json.Marshal([]any{"stop", map[string]any{
		"uid": "11111111-2222-4333-8444-555555555555", "run_start": start["uid"], "time": tm + 1,
		"exit_status": "success", "reason": "", "num_events": map[string]any{"primary": rows + 3},
	}})
	if err != nil {
		t.Fatal(err)
	}
	appendTo(t, file, append(stop, '\n'))
	waitFor(t, "stop.json to appear", logs, func() bool {
		_, err := os.Stat(filepath.Join(run, "stop.json"))
		return err == nil
	})
	expect(t, mnt, []string{file})
}

// appendTo appends b to the file in one write, as suitcase-jsonl does.
func appendTo(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func waitRows(t *testing.T, npy string, want int, logs *logBuffer) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to have %d rows", filepath.Base(npy), want), logs, func() bool { return npyRows(t, npy) == want })
}

// waitFor polls cond for up to 5 s (the TTLs are 200 ms; the kernel's own caches add up to
// about a second).
func waitFor(t *testing.T, what string, logs *logBuffer, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("waited 5 s for %s; brokerfs says:\n%s", what, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
}

var shapeRE = regexp.MustCompile(`'shape':\s*\((\d+)`)

// npyRows reads the header of a .npy file and returns its first dimension.
func npyRows(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("\x93NUMPY")) {
		t.Fatalf("%s is not a .npy file: %q", path, b[:min(len(b), 16)])
	}
	var header []byte
	if b[6] == 1 {
		header = b[10:][:min(len(b)-10, int(binary.LittleEndian.Uint16(b[8:])))]
	} else {
		header = b[12:][:min(len(b)-12, int(binary.LittleEndian.Uint32(b[8:])))]
	}
	m := shapeRE.FindSubmatch(header)
	if m == nil {
		t.Fatalf("%s: no shape in the header %q", path, header)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestLiveTornReads reads a field of a growing run whole, again and again, with numpy, while a
// writer appends events every 10 ms (--live-ttl 200ms). Each open is one snapshot: header,
// size and bytes of the same moment. Before that was so, about a quarter of the np.loads failed
// ("expected X bytes got Y": the header had the new row count, the length the old) and some
// reads returned a byte count other than the st_size fstat gave on the same descriptor. Here
// every read must load, with the writer's values (its size against fstat is only logged yet:
// see below).
func TestLiveTornReads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	uid := "70000000-0000-4000-8000-000000000007"
	path := filepath.Join(dir, "live.jsonl")
	doc := func(name string, d map[string]any) []byte {
		b, err := json.Marshal([]any{name, d})
		if err != nil {
			t.Fatal(err)
		}
		return append(b, '\n')
	}
	seq := 0
	events := func(n int) []byte {
		var b []byte
		for range n {
			b = append(b, doc("event", map[string]any{"descriptor": "live-d", "uid": fmt.Sprint("e", seq), "time": 1.7e9 + float64(seq),
				"seq_num": seq + 1, "data": map[string]any{"x": 1.5 * float64(seq)}, "timestamps": map[string]any{"x": 1.7e9}, "filled": map[string]any{}})...)
			seq++
		}
		return b
	}
	head := append(doc("start", map[string]any{"uid": uid, "time": 1.7e9, "scan_id": 7, "plan_name": "count"}),
		doc("descriptor", map[string]any{"uid": "live-d", "run_start": uid, "time": 1.7e9, "name": "primary",
			"data_keys": map[string]any{"x": map[string]any{"dtype": "number", "shape": []any{}, "source": "sim"}}})...)
	if err := os.WriteFile(path, append(head, events(100)...), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt, logs := mount(t, dir, "--live-ttl", "200ms", "--list-ttl", "200ms")
	npy := filepath.Join(mnt, uid, "primary", "x.npy")
	waitRows(t, npy, 100, logs)

	const readFor = 4 * time.Second
	done := make(chan struct{})
	go func() { // the writer: a few events every 10 ms, in whole lines
		defer close(done)
		for start := time.Now(); time.Since(start) < readFor+500*time.Millisecond; {
			appendTo(t, path, events(1+seq%4))
			time.Sleep(10 * time.Millisecond)
		}
	}()
	out := runPython(t, "-c", `import io, json, os, sys, time
import numpy as np
path, until = sys.argv[1], time.time() + float(sys.argv[2])
loads, failures, sizes, values, rows = 0, [], [], 0, set()
# An older descriptor of the file still open (or its RELEASE still on its way, as after
# close(2) under load) while the file is opened again, after the run grew: fstat of the new
# descriptor must give the new open's size. go-fuse hands Getattr the inode's first open file
# when the kernel sends none, as for fstat.
held = []
for _ in range(3):
    f1 = open(path, "rb")
    time.sleep(0.3)
    with open(path, "rb") as f2:
        st, b = os.fstat(f2.fileno()).st_size, f2.read()
    if st != len(b):
        held.append((len(b), st))
    f1.close()
while time.time() < until:
    with open(path, "rb") as f:
        st = os.fstat(f.fileno()).st_size
        b = f.read()
    loads += 1
    if len(b) != st:
        sizes.append((len(b), st))
    try:
        a = np.load(io.BytesIO(b))
    except Exception as e:
        failures.append(str(e))
        continue
    rows.add(len(a))
    if not np.array_equal(a, 1.5 * np.arange(len(a))):
        values += 1
print(json.dumps({"loads": loads, "failures": failures[:5], "nfail": len(failures), "sizes": sizes[:5],
                  "nsizes": len(sizes), "values": values, "distinctRows": len(rows), "held": held}))`, npy, fmt.Sprint(readFor.Seconds()))
	<-done
	var r struct {
		Loads, NFail, NSizes, Values, DistinctRows int
		Failures                                   []string
		Sizes, Held                                [][2]int
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("reader: %v: %s", err, out)
	}
	t.Logf("%d whole-file loads of %d distinct lengths while the run grew to %d events", r.Loads, r.DistinctRows, seq)
	if r.NFail != 0 || r.Values != 0 {
		t.Errorf("%d of %d loads failed (%q), %d had wrong values", r.NFail, r.Loads, r.Failures, r.Values)
	}
	// A read's byte count against the st_size fstat gave on the same descriptor: fstat reaches
	// FUSE without the file handle, and Getattr answers with the last open's snapshot.
	if r.NSizes > 0 || len(r.Held) > 0 {
		t.Errorf("%d of %d reads' byte count was not the st_size fstat gave on the same descriptor (%v); with an older descriptor open: %v",
			r.NSizes, r.Loads, r.Sizes, r.Held)
	}
	if r.Loads < 20 || r.DistinctRows < 3 {
		t.Errorf("%d loads of %d lengths: the reader did not see the run grow", r.Loads, r.DistinctRows)
	}
}
