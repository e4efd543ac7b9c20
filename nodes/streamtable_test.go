package nodes

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/memory"
)

// TestStreamTableNames: a stream's tables sit beside its directory, and no stream name
// (one ending in .csv or .parquet, one named like a run file) shadows another's files.
func TestStreamTableNames(t *testing.T) {
	const uid = "r1"
	docs := []catalog.Document{{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.0}}}
	streams := []string{"primary", "primary.csv", "start", "X.PARQUET", "stop.json", ".csv"}
	for i, s := range streams {
		d := fmt.Sprint("d", i)
		docs = append(docs,
			catalog.Document{Name: "descriptor", Doc: map[string]any{"uid": d, "run_start": uid, "time": 1.0, "name": s,
				"data_keys": map[string]any{"x": map[string]any{"dtype": "number", "shape": []any{}, "source": "s"}}}},
			catalog.Document{Name: "event", Doc: map[string]any{"descriptor": d, "uid": d + "e", "time": 2.0, "seq_num": int64(1),
				"data": map[string]any{"x": float64(i)}, "timestamps": map[string]any{"x": 2.0}}})
	}
	docs = append(docs, catalog.Document{Name: "stop", Doc: map[string]any{"uid": "s", "run_start": uid, "time": 3.0, "exit_status": "success"}})
	cat, err := memory.New(docs)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTree(t, cat, nil)
	got := tr.list(uid)
	sort.Strings(got)
	want := "[%2Ecsv %2Ecsv.csv %2Ecsv.parquet %73top.json %73top.json.csv %73top.json.parquet X%2EPARQUET X%2EPARQUET.csv X%2EPARQUET.parquet" +
		" primary primary%2Ecsv primary%2Ecsv.csv primary%2Ecsv.parquet primary.csv primary.parquet start start.csv start.json start.parquet stop.json]"
	if fmt.Sprint(got) != want {
		t.Errorf("run dir = %v\nwant      %v", got, want)
	}
	// Each table holds its own stream's value.
	for table, x := range map[string]string{"primary.csv": "0.0", "primary%2Ecsv.csv": "1.0", "start.csv": "2.0", "X%2EPARQUET.csv": "3.0", "%2Ecsv.csv": "5.0"} {
		b := string(tr.mustRead(uid + "/" + table))
		if !strings.HasPrefix(b, "seq_num,time,time_iso,x\n1,2.0,1970-01-01T00:00:02.000000+00:00,"+x+"\n") {
			t.Errorf("%s = %q, want x = %s", table, b, x)
		}
	}
	if b := tr.mustRead(uid + "/primary.parquet"); len(b) < 8 || string(b[:4]) != "PAR1" || string(b[len(b)-4:]) != "PAR1" {
		t.Errorf("primary.parquet is not a Parquet file: %q", b)
	}
}

// TestStreamTableLive: a live run's tables follow the run as it grows.
func TestStreamTableLive(t *testing.T) {
	tr, cat := fixtureTree(t)
	p := catalogtest.UIDLive + "/primary"
	if b := string(tr.mustRead(p + ".csv")); strings.Count(b, "\n") != 4 {
		t.Fatalf("live primary.csv has %d lines, want a header and 3 rows: %q", strings.Count(b, "\n"), b)
	}
	pq := tr.mustRead(p + ".parquet")
	more := append(catalogtest.Runs()[2], catalog.Document{Name: "event", Doc: map[string]any{"uid": "x", "descriptor": catalogtest.UIDLive + "-d1",
		"time": 1700002010.0, "seq_num": int64(4), "data": map[string]any{"I0": 7.0}, "timestamps": map[string]any{"I0": 1.0}}})
	if err := cat.Add(more); err != nil {
		t.Fatal(err)
	}
	tr.clock.advance(2 * time.Second)
	b := string(tr.mustRead(p + ".csv"))
	if lines := strings.Split(strings.TrimSuffix(b, "\n"), "\n"); len(lines) != 5 || !strings.HasPrefix(lines[4], "4,1700002010.0,") {
		t.Errorf("grown live primary.csv = %q, want a 4th row at 1700002010.0", b)
	}
	if pq2 := tr.mustRead(p + ".parquet"); bytes.Equal(pq, pq2) {
		t.Error("the live primary.parquet did not change as the run grew")
	}
}
