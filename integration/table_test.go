package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hyparquetDir is where scripts/setup.sh installs hyparquet (npm install --prefix).
func hyparquetDir() string {
	if d := os.Getenv("BROKERFS_HYPARQUET"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "brokerfs", "npm")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "brokerfs", "npm")
}

// TestStreamTables mounts the edge-case run and two runs (one finished, one live) whose
// stream names end in .csv or take a run file's name, and checks every <stream>.csv (pandas) and
// <stream>.parquet (hyparquet, an independent reader in JavaScript) against values expect.py
// computes from the raw documents: columns, values bit for bit, types, and the data keys'
// units, source and dtype in the Parquet metadata. The finished runs' tables come from the
// cache (the mounts share one cache directory), the live run's are built in memory.
func TestStreamTables(t *testing.T) {
	t.Parallel()
	var opts []string
	_, noNode := exec.LookPath("node")
	if noNode == nil {
		dir := hyparquetDir()
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "hyparquet", "package.json")); err != nil {
			t.Fatalf("hyparquet is not installed in %s: run scripts/setup.sh (%v)", dir, err)
		}
		opts = append(opts, "--parquet-reader", dir)
	}

	// The edge-case run (its external field cam, whose file is missing, left out: each read
	// of it retries for seconds), a run of awkward stream names, and a live run of them (its
	// tables are built in memory, not in the cache).
	cat := t.TempDir()
	runPython(t, "testdata/edge_run.py", cat)
	writeNamesRun(t, filepath.Join(cat, "names.jsonl"), namesUID, true)
	writeNamesRun(t, filepath.Join(cat, "live.jsonl"), liveUID, false)
	files := runFiles(t, cat)

	mnt, _ := mount(t, cat, "--exclude", "cam")
	expect(t, mnt, files, append(opts, "--exclude", "cam")...)

	// The names: the stream "primary.csv" is a directory of its own, beside primary.csv.
	uid := namesUID
	for _, name := range []string{"primary.csv", "primary.parquet", "primary%2Ecsv", "primary%2Ecsv.csv", "start", "start.csv", "start.json"} {
		if _, err := os.Stat(filepath.Join(mnt, uid, name)); err != nil {
			t.Errorf("%s/%s: %v", uid, name, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(mnt, uid, "primary%2Ecsv.csv"))
	if err != nil || !strings.HasSuffix(string(b), ",2.0\n") {
		t.Errorf("primary%%2Ecsv.csv = %q, %v; want the x of the stream primary.csv (2.0)", b, err)
	}
	if noNode != nil {
		t.Skipf("node is not installed (apt-get install nodejs, then scripts/setup.sh): the .csv tables were checked, the .parquet ones for their magic only: %v", noNode)
	}
}

const (
	namesUID = "7ab1e000-0000-4000-8000-000000000001"
	liveUID  = "7ab1e000-0000-4000-8000-000000000002"
)

// writeNamesRun writes a JSONL run with streams named primary, primary.csv and start; without
// its stop document when finished is false.
func writeNamesRun(t *testing.T, path, uid string, finished bool) {
	t.Helper()
	type doc = map[string]any
	t0 := 1700000000.5
	if !finished {
		t0 += 100 // the newer run
	}
	docs := [][2]any{{"start", doc{"uid": uid, "time": t0, "scan_id": 1, "plan_name": "names"}}}
	for i, s := range []string{"primary", "primary.csv", "start"} {
		d := uid + "-d" + string(rune('0'+i))
		docs = append(docs,
			[2]any{"descriptor", doc{"uid": d, "run_start": uid, "time": t0 + 0.1, "name": s,
				"data_keys": doc{"x": doc{"dtype": "number", "shape": []any{}, "source": "SIM:x", "units": "mm"}}}},
			[2]any{"event", doc{"uid": d + "-e", "descriptor": d, "time": t0 + 1 + float64(i), "seq_num": 1,
				"data": doc{"x": float64(i + 1)}, "timestamps": doc{"x": t0 + 1}, "filled": doc{}}})
	}
	if finished {
		docs = append(docs, [2]any{"stop", doc{"uid": uid + "-s", "run_start": uid, "time": t0 + 5, "exit_status": "success"}})
	}
	var sb strings.Builder
	for _, d := range docs {
		line, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
