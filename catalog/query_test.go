package catalog

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// testDoc is a start document as the decoders give it: int64 and float64 kept apart.
func testDoc() map[string]any {
	return map[string]any{
		"uid":       "a1b2",
		"scan_id":   int64(101),
		"time":      1700000000.5,
		"plan_name": "rel_scan",
		"sample":    "Si (111)",
		"num":       5.0,
		"ok":        true,
		"nan":       math.NaN(),
		"big":       int64(1) << 60,
		"empty":     nil,
		"detectors": []any{"det", "I0"},
		"motors":    []any{},
		"points":    []any{int64(1), 2.5, int64(10)},
		"versions":  map[string]any{"bluesky": "1.14.1", "ophyd": "1.10.6"},
		"hints":     map[string]any{"dimensions": []any{[]any{[]any{"motor"}, "primary"}}},
		"samples":   []any{map[string]any{"name": "Si", "t": int64(300)}, map[string]any{"name": "Ge", "t": int64(10)}},
		"Ion Ch 1":  "x",
	}
}

// parse decodes a JSON query as the CLI does, numbers as float64.
func parse(t *testing.T, q string) (*Query, error) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(q), &m); err != nil {
		t.Fatalf("bad test query %s: %v", q, err)
	}
	return ParseQuery(m)
}

func TestQueryMatch(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{`{}`, true},
		// implicit equality and $eq, numbers across int64/float64
		{`{"plan_name": "rel_scan"}`, true},
		{`{"plan_name": "scan"}`, false},
		{`{"scan_id": 101}`, true},
		{`{"scan_id": 101.0}`, true},
		{`{"scan_id": {"$eq": 101}}`, true},
		{`{"num": 5}`, true},
		{`{"scan_id": "101"}`, false},
		{`{"ok": true}`, true},
		{`{"ok": 1}`, false},
		{`{"empty": null}`, true},
		{`{"missing": null}`, true},
		{`{"uid": null}`, false},
		{`{"Ion Ch 1": "x"}`, true},
		{`{"plan_name": "rel_scan", "scan_id": 102}`, false},
		// $ne
		{`{"scan_id": {"$ne": 101}}`, false},
		{`{"scan_id": {"$ne": 7}}`, true},
		{`{"missing": {"$ne": 7}}`, true},
		{`{"detectors": {"$ne": "det"}}`, false},
		// comparisons, ranges, type mismatch
		{`{"scan_id": {"$gt": 100}}`, true},
		{`{"scan_id": {"$gt": 101}}`, false},
		{`{"scan_id": {"$gte": 101}}`, true},
		{`{"scan_id": {"$lt": 101.5}}`, true},
		{`{"scan_id": {"$lte": 100}}`, false},
		{`{"scan_id": {"$gte": 100, "$lt": 200}}`, true},
		{`{"scan_id": {"$gte": 100, "$lt": 101}}`, false},
		{`{"time": {"$gt": 1699999999}}`, true},
		{`{"scan_id": {"$gt": "100"}}`, false},
		{`{"plan_name": {"$gt": 1}}`, false},
		{`{"plan_name": {"$gte": "rel"}}`, true},
		{`{"plan_name": {"$lt": "rel"}}`, false},
		{`{"ok": {"$gt": false}}`, true},
		{`{"nan": {"$gt": 0}}`, false},
		{`{"nan": {"$lt": 0}}`, false},
		{`{"missing": {"$lt": 0}}`, false},
		// $in, $nin
		{`{"plan_name": {"$in": ["scan", "rel_scan"]}}`, true},
		{`{"plan_name": {"$in": ["scan"]}}`, false},
		{`{"scan_id": {"$in": [1, 101.0]}}`, true},
		{`{"missing": {"$in": [null]}}`, true},
		{`{"plan_name": {"$nin": ["scan"]}}`, true},
		{`{"plan_name": {"$nin": ["rel_scan"]}}`, false},
		{`{"missing": {"$nin": ["x"]}}`, true},
		{`{"detectors": {"$in": ["I0", "x"]}}`, true},
		{`{"detectors": {"$nin": ["I0"]}}`, false},
		// $exists
		{`{"sample": {"$exists": true}}`, true},
		{`{"missing": {"$exists": true}}`, false},
		{`{"missing": {"$exists": false}}`, true},
		{`{"empty": {"$exists": true}}`, true},
		{`{"versions.bluesky": {"$exists": 1}}`, true},
		// $regex and $options
		{`{"plan_name": {"$regex": "^rel"}}`, true},
		{`{"plan_name": {"$regex": "^REL"}}`, false},
		{`{"plan_name": {"$regex": "^REL", "$options": "i"}}`, true},
		{`{"sample": {"$regex": "^si\\ \\(1+\\) $  # comment", "$options": "ix"}}`, true},
		{`{"sample": {"$regex": "^si\\ \\(1+\\) $", "$options": "i"}}`, false},
		{`{"sample": {"$regex": "^si [(]1+[)]$", "$options": "i"}}`, true},
		{`{"sample": {"$regex": "\\(111\\)$", "$options": "ms"}}`, true},
		{`{"scan_id": {"$regex": "101"}}`, false},
		{`{"detectors": {"$regex": "^I"}}`, true},
		// $not
		{`{"scan_id": {"$not": {"$gt": 200}}}`, true},
		{`{"scan_id": {"$not": {"$gt": 100}}}`, false},
		{`{"missing": {"$not": {"$gt": 1}}}`, true},
		{`{"plan_name": {"$not": {"$regex": "^rel"}}}`, false},
		// $and, $or, $nor
		{`{"$and": [{"scan_id": 101}, {"plan_name": "rel_scan"}]}`, true},
		{`{"$and": [{"scan_id": 101}, {"plan_name": "scan"}]}`, false},
		{`{"$or": [{"scan_id": 1}, {"plan_name": "rel_scan"}]}`, true},
		{`{"$or": [{"scan_id": 1}, {"plan_name": "scan"}]}`, false},
		{`{"$nor": [{"scan_id": 1}, {"plan_name": "scan"}]}`, true},
		{`{"$nor": [{"scan_id": 101}]}`, false},
		{`{"$or": [{"$and": [{"ok": true}, {"num": {"$gte": 5}}]}, {"x": 1}], "uid": "a1b2"}`, true},
		// dotted paths, lists of maps, list indexes
		{`{"versions.bluesky": "1.14.1"}`, true},
		{`{"versions.bluesky": {"$regex": "^1\\.14"}}`, true},
		{`{"versions.ophyd": "1.14.1"}`, false},
		{`{"versions.nothing.deeper": null}`, true},
		{`{"plan_name.x": {"$exists": true}}`, false},
		{`{"samples.name": "Ge"}`, true},
		{`{"samples.name": "Cu"}`, false},
		{`{"samples.t": {"$gt": 200}}`, true},
		{`{"samples.t": {"$gt": 400}}`, false},
		{`{"samples.1.name": "Ge"}`, true},
		{`{"samples.0.name": "Ge"}`, false},
		{`{"detectors.1": "I0"}`, true},
		{`{"hints.dimensions.0.1": "primary"}`, true},
		// list semantics
		{`{"detectors": "det"}`, true},
		{`{"detectors": ["det", "I0"]}`, true},
		{`{"detectors": ["I0", "det"]}`, false},
		{`{"motors": []}`, true},
		{`{"motors": {"$exists": true}}`, true},
		{`{"points": {"$gt": 5}}`, true},
		{`{"points": {"$gt": 10}}`, false},
		{`{"points": 2.5}`, true},
		{`{"points": {"$gte": 2, "$lte": 2}}`, true}, // each condition may be met by another element, as in Mongo
		// documents compare whole
		{`{"versions": {"bluesky": "1.14.1", "ophyd": "1.10.6"}}`, true},
		{`{"versions": {"bluesky": "1.14.1"}}`, false},
		// NaN equals NaN, big ints compare exactly
		{`{"nan": NaN}`, true},
		{`{"big": {"$gt": 1152921504606846975}}`, true},
	} {
		// encoding/json cannot read NaN; build that one by hand.
		var q *Query
		var err error
		if strings.Contains(tc.q, "NaN}") {
			q, err = ParseQuery(map[string]any{"nan": math.NaN()})
		} else if strings.Contains(tc.q, "1152921504606846975") {
			q, err = ParseQuery(map[string]any{"big": map[string]any{"$gt": int64(1)<<60 - 1}})
		} else {
			q, err = parse(t, tc.q)
		}
		if err != nil {
			t.Errorf("%s: %v", tc.q, err)
			continue
		}
		if got := q.Match(testDoc()); got != tc.want {
			t.Errorf("%s: Match = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	for _, tc := range []struct{ q, want string }{
		{`{"scan_id": {"$gtt": 1}}`, `unknown operator "$gtt"`},
		{`{"$where": "this.x"}`, `unknown top-level operator "$where"`},
		{`{"a": {"$eq": 1, "b": 2}}`, `unknown operator "b"`},
		{`{"a": {"$in": 1}}`, `$in wants a list`},
		{`{"a": {"$nin": "x"}}`, `$nin wants a list`},
		{`{"a": {"$exists": "yes"}}`, `$exists wants a bool`},
		{`{"a": {"$regex": 1}}`, `$regex wants a string`},
		{`{"a": {"$regex": "("}}`, `$regex: error parsing`},
		{`{"a": {"$regex": "x", "$options": "q"}}`, `unsupported option 'q'`},
		{`{"a": {"$options": "i"}}`, `$options without $regex`},
		{`{"a": {"$not": 5}}`, `$not wants an operator object`},
		{`{"a": {"$not": {"$foo": 5}}}`, `unknown operator "$foo"`},
		{`{"$and": []}`, `$and: want a non-empty list`},
		{`{"$or": {"a": 1}}`, `$or: want a non-empty list`},
		{`{"$nor": [1]}`, `$nor[0]: want a query object`},
		{`{"$or": [{"a": {"$bad": 1}}]}`, `unknown operator "$bad"`},
		{`{"a..b": 1}`, `empty path component`},
		{`{"": 1}`, `empty path component`},
	} {
		_, err := parse(t, tc.q)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.q, err, tc.want)
		}
	}
}

func TestQueryString(t *testing.T) {
	q, err := parse(t, `{"scan_id": {"$gte": 100}, "plan_name": "scan"}`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := q.String(), `{"plan_name": "scan", "scan_id": {"$gte": 100.0}}`; got != want {
		t.Errorf("String = %s, want %s", got, want)
	}
	var nilQ *Query
	if !nilQ.Match(testDoc()) || nilQ.String() != "{}" {
		t.Error("nil Query must match everything")
	}
}
