package jsonl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
)

const apsDir = "../../testdata/apstools/jsonl"

// pyEvents reads the run files with Python's json module and prints, per file, the start uid and
// every event (event_page rows unpacked) per descriptor, values tagged with their Python type and
// floats in hex, so nothing is lost between the two languages.
const pyEvents = `
import json, sys
def enc(v):
    if isinstance(v, bool): return {"b": v}
    if isinstance(v, int): return {"i": str(v)}
    if isinstance(v, float): return {"f": v.hex()}
    if isinstance(v, str): return {"s": v}
    if v is None: return {"n": True}
    if isinstance(v, list): return {"l": [enc(x) for x in v]}
    return {"m": {k: enc(x) for k, x in v.items()}}
out = {}
for path in sys.argv[1:]:
    run = out[path] = {"uid": None, "events": {}}
    with open(path) as f:
        for line in f:
            name, doc = json.loads(line)
            if name == "start":
                run["uid"] = doc["uid"]
            elif name == "descriptor":
                run["events"].setdefault(doc["uid"], [])
            elif name == "event":
                run["events"].setdefault(doc["descriptor"], []).append(
                    {"time": enc(doc["time"]), "seq_num": doc["seq_num"], "data": enc(doc["data"])})
            elif name == "event_page":
                for i in range(len(doc["time"])):
                    run["events"].setdefault(doc["descriptor"], []).append(
                        {"time": enc(doc["time"][i]), "seq_num": doc["seq_num"][i],
                         "data": enc({k: v[i] for k, v in doc["data"].items()})})
json.dump(out, sys.stdout)
`

type pyValue struct {
	B *bool               `json:"b"`
	I *string             `json:"i"`
	F *string             `json:"f"`
	S *string             `json:"s"`
	N bool                `json:"n"`
	L []pyValue           `json:"l"`
	M map[string]*pyValue `json:"m"`
}

func (v *pyValue) goValue(t *testing.T) any {
	switch {
	case v.B != nil:
		return *v.B
	case v.I != nil:
		n, err := strconv.ParseInt(*v.I, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	case v.F != nil:
		f, err := strconv.ParseFloat(*v.F, 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	case v.S != nil:
		return *v.S
	case v.N:
		return nil
	case v.L != nil:
		out := make([]any, len(v.L))
		for i := range v.L {
			out[i] = v.L[i].goValue(t)
		}
		return out
	case v.M != nil:
		out := make(map[string]any, len(v.M))
		for k, e := range v.M {
			out[k] = e.goValue(t)
		}
		return out
	}
	t.Fatalf("empty python value")
	return nil
}

type pyEvent struct {
	Time   pyValue `json:"time"`
	SeqNum int64   `json:"seq_num"`
	Data   pyValue `json:"data"`
}

// sameValue compares a value read by brokerfs with Python's: types must agree (int64 vs float64)
// except inside packed arrays, which hold floats when any element is one.
func sameValue(got, want any, inArray bool) bool {
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		if !ok && inArray {
			if i, isInt := got.(int64); isInt {
				g, ok = float64(i), true
			}
		}
		return ok && (g == w || math.IsNaN(g) && math.IsNaN(w))
	case int64:
		if g, ok := got.(int64); ok {
			return g == w
		}
		g, ok := got.(float64)
		return ok && inArray && g == float64(w)
	case []any:
		if a, ok := got.(*catalog.NDArray); ok {
			got = a.List()
			inArray = true
		}
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(g[i], w[i], inArray) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k := range w {
			if !sameValue(g[k], w[k], false) {
				return false
			}
		}
		return true
	}
	return got == want
}

// TestAPSAgainstPython reads seven real APS runs and checks every event's time, seq_num and data
// against what Python's json module reads from the same files.
func TestAPSAgainstPython(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(apsDir, "*.jsonl"))
	if err != nil || len(files) != 7 {
		t.Fatalf("want 7 APS run files in %s, have %d (%v)", apsDir, len(files), err)
	}
	out, err := exec.Command("/usr/bin/python3", append([]string{"-c", pyEvents}, files...)...).Output()
	if err != nil {
		t.Fatalf("python3 (needed as the reference reader): %v", err)
	}
	var want map[string]struct {
		UID    string               `json:"uid"`
		Events map[string][]pyEvent `json:"events"`
	}
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger(t)
	c, err := jsonl.Open([]string{apsDir}, jsonl.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	starts, err := c.Runs(ctx)
	if err != nil || len(starts) != 7 {
		t.Fatalf("Runs: %d runs, %v", len(starts), err)
	}
	events := 0
	for _, path := range files {
		w := want[path]
		run, err := c.Run(ctx, w.UID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run.Stop(ctx); err != nil {
			t.Errorf("%s: Stop: %v", path, err)
		}
		// Raw is the document's bytes exactly as stored in the line.
		content, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		first := content[:bytes.IndexByte(content, '\n')]
		if want := first[len(`["start", `) : len(first)-1]; !bytes.Equal(run.Start().Raw, want) {
			t.Errorf("%s: Start.Raw differs from the stored document", path)
		}
		descs, err := run.Descriptors(ctx)
		if err != nil || len(descs) != len(w.Events) {
			t.Fatalf("%s: %d descriptors, %v; want %d", path, len(descs), err, len(w.Events))
		}
		for _, d := range descs {
			wantEvents := w.Events[d.UID]
			row := 0
			err := run.EventPages(ctx, d.UID, 0, -1, nil, func(p *catalog.EventPage) error {
				for i := 0; i < p.Len(); i, row = i+1, row+1 {
					if row >= len(wantEvents) {
						return fmt.Errorf("more than %d events", len(wantEvents))
					}
					we := wantEvents[row]
					wantData := we.Data.goValue(t).(map[string]any)
					if p.Time[i] != we.Time.goValue(t) || p.SeqNum[i] != we.SeqNum {
						t.Errorf("%s %s row %d: time %v seq %d, want %v %d", path, d.Name, row, p.Time[i], p.SeqNum[i], we.Time.goValue(t), we.SeqNum)
					}
					if len(p.Data) != len(wantData) {
						t.Errorf("%s %s row %d: %d fields, want %d", path, d.Name, row, len(p.Data), len(wantData))
					}
					for k, wv := range wantData {
						col := p.Data[k]
						if col == nil {
							t.Errorf("%s %s row %d: no field %q", path, d.Name, row, k)
						} else if !sameValue(col.At(i), wv, false) {
							t.Errorf("%s %s row %d field %q: %#v, want %#v", path, d.Name, row, k, col.At(i), wv)
						}
					}
					events++
				}
				return nil
			})
			if err != nil || row != len(wantEvents) {
				t.Errorf("%s %s: %d events, %v; want %d", path, d.Name, row, err, len(wantEvents))
			}
		}
	}
	if events < 50 {
		t.Errorf("compared only %d events", events)
	}
	if s := logs.String(); s != "" {
		t.Errorf("unexpected log output:\n%s", s)
	}
}
