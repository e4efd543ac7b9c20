package catalog

import (
	"strings"
	"testing"
)

// TestParseDescriptorBadKeys: a malformed data key (a negative dimension, an unknown dtype, a
// key that is not a map) is kept with its Err and costs nothing else: the descriptor and its
// other keys parse (a shape of [-1] made the whole descriptor, and so its stream, vanish).
func TestParseDescriptorBadKeys(t *testing.T) {
	doc := map[string]any{"uid": "d", "run_start": "r", "time": 1.0, "data_keys": map[string]any{
		"ok":    map[string]any{"dtype": "number", "shape": []any{}},
		"neg":   map[string]any{"dtype": "array", "shape": []any{int64(-1)}},
		"odd":   map[string]any{"dtype": "complex", "shape": []any{}},
		"nokey": "x",
	}}
	d, err := ParseDescriptor(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dk := d.DataKeys["ok"]; dk.Err != nil || dk.Dtype != "number" {
		t.Errorf("ok: %+v", dk)
	}
	for k, want := range map[string]string{"neg": "bad shape", "odd": "unknown dtype", "nokey": "want map"} {
		if dk, ok := d.DataKeys[k]; !ok || dk.Err == nil || !strings.Contains(dk.Err.Error(), want) || !strings.Contains(dk.Err.Error(), k) {
			t.Errorf("%s: %+v, want an Err naming the key and %q", k, dk, want)
		}
	}
}
