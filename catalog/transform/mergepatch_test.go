package transform

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return catalog.FromJSON(v)
}

// TestMergePatchRFC7396 runs the examples of RFC 7396, Appendix A, as the RFC gives them.
func TestMergePatchRFC7396(t *testing.T) {
	for _, c := range [][3]string{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// The RFC's section 3 example.
		{`{"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},"tags":["example","sample"],"content":"This will be unchanged"}`,
			`{"title":"Hello!","phoneNumber":"+01-123-456-7890","author":{"familyName":null},"tags":["example"]}`,
			`{"title":"Hello!","author":{"givenName":"John"},"tags":["example"],"content":"This will be unchanged","phoneNumber":"+01-123-456-7890"}`},
	} {
		target, patch, want := decodeJSON(t, c[0]), decodeJSON(t, c[1]), decodeJSON(t, c[2])
		before := string(catalog.AppendJSON(nil, target))
		got := MergePatch(target, patch)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("MergePatch(%s, %s) = %s, want %s", c[0], c[1], catalog.AppendJSON(nil, got), c[2])
		}
		if after := string(catalog.AppendJSON(nil, target)); after != before {
			t.Errorf("MergePatch(%s, %s) changed its target to %s", c[0], c[1], after)
		}
	}
}

// TestMergePatchShares checks that a result shares nothing with its patch: a patch applied to
// many documents must not see one result's later changes.
func TestMergePatchShares(t *testing.T) {
	patch := decodeJSON(t, `{"a":{"b":[1,{"c":2}]}}`).(map[string]any)
	got := MergePatch(map[string]any{}, patch).(map[string]any)
	got["a"].(map[string]any)["b"].([]any)[1].(map[string]any)["c"] = int64(3)
	if s := string(catalog.AppendJSON(nil, patch)); s != `{"a": {"b": [1, {"c": 2}]}}` {
		t.Errorf("patch changed through its result: %s", s)
	}
}
