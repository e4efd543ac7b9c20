package msgpack

import (
	"encoding/hex"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// writerDoc holds a value of every kind the writer takes, at the edges of msgpack's encodings.
func writerDoc() m {
	var ints []any
	for _, i := range []int64{0, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64} {
		ints = append(ints, i)
	}
	var strs []any
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		strs = append(strs, strings.Repeat("é", n/2)+strings.Repeat("x", n%2))
	}
	big := m{}
	for i := range 20 {
		big[string(rune('a'+i))] = int64(i)
	}
	long := make([]any, 70000)
	for i := range long {
		long[i] = nil
	}
	return m{
		"uid": "w", "time": 1.25, "ints": ints, "strs": strs, "big": big, "long": long,
		"floats": []any{0.0, -0.5, math.Inf(1), math.Inf(-1), 1e300, 5e-324},
		"misc":   []any{nil, true, false, m{}, []any{}, []any{[]any{int64(1)}}},
		"nd":     &catalog.NDArray{Dtype: "<u2", Shape: []int{2, 3}, Data: []byte{1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0}},
		"raw":    []byte{0, 1, 2},
		"conv":   []any{int(7), float32(0.5), []string{"a"}, []float64{2}, []int64{3}},
	}
}

// pyJSON is what testdata/pyjson.py prints for a value the writer wrote.
func pyJSON(v any) any {
	switch x := v.(type) {
	case m:
		out := m{}
		for k, e := range x {
			out[k] = pyJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = pyJSON(e)
		}
		return out
	case *catalog.NDArray:
		shape := make([]any, len(x.Shape))
		for i, d := range x.Shape {
			shape[i] = int64(d)
		}
		return m{"$b:nd": true, "$b:type": x.Dtype, "$b:kind": m{"$bytes": ""}, "$b:shape": shape, "$b:data": m{"$bytes": hex.EncodeToString(x.Data)}}
	case []byte:
		return m{"$bytes": hex.EncodeToString(x)}
	case int:
		return int64(x)
	case float32:
		return float64(x)
	case []string:
		return []any{x[0]}
	case []float64:
		return []any{x[0]}
	case []int64:
		return []any{x[0]}
	}
	return v
}

func TestWriterFormat(t *testing.T) {
	doc := writerDoc()
	path := filepath.Join(t.TempDir(), "w.msgpack")
	if err := WriteRun(path, []catalog.Document{{Name: "start", Doc: doc}}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", "testdata/pyjson.py", path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 testdata/pyjson.py: %v", err)
	}
	want := string(catalog.AppendJSON(nil, []any{"start", pyJSON(doc)}))
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("python reads\n%.3000s\nwant\n%.3000s", got, want)
	}

	// And this package reads back what it wrote, the array included.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := arrayLen(data, 0)
	_, p, _ = str(data, p)
	v, _, err := value(data, p, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := v.(map[string]any)
	if a, ok := got["nd"].(*catalog.NDArray); !ok || !reflect.DeepEqual(a, doc["nd"]) {
		t.Errorf("nd read back as %#v", got["nd"])
	}
	if !reflect.DeepEqual(got["ints"], doc["ints"]) || !reflect.DeepEqual(got["strs"], doc["strs"]) {
		t.Errorf("ints or strings changed: %v", got["ints"])
	}
}

func TestWriterErrors(t *testing.T) {
	w := NewWriter(&strings.Builder{})
	if err := w.Write("start", m{"f": func() {}}); err == nil || !strings.Contains(err.Error(), `key "f"`) {
		t.Errorf("writing a func: %v", err)
	}
	deep := any(int64(1))
	for range maxDepth + 2 {
		deep = []any{deep}
	}
	if err := w.Write("start", m{"deep": deep}); err == nil {
		t.Error("writing values nested too deep succeeded")
	}
}
