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
