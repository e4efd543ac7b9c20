package catalog

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Generic document values. Backends decode documents into these Go types only:
// nil, bool, int64, float64, string, []any, map[string]any and *NDArray. Integers stay int64
// (databroker keeps 5 and 5.0 apart: an "integer" field is int64, a "number" field float64).

// NDArray is an n-dimensional array value: a msgpack-numpy array as stored, or a rectangular
// list that a decoder packed. Numeric arrays hold raw little-endian C-order bytes in Data;
// string arrays hold their elements in Strings (Dtype "<U0", the width decided by the encoder).
type NDArray struct {
	Dtype   string // numpy descr: "<f8", "<i8", "|b1", "<u2", ... or "<U0" for Strings
	Shape   []int
	Data    []byte
	Strings []string
}

// Len is the number of elements: the product of Shape.
func (a *NDArray) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Start is a run start document.
type Start struct {
	UID      string
	Time     float64
	ScanID   int64
	HasScan  bool
	PlanName string
	Doc      map[string]any // the decoded document, for queries
	Raw      []byte         // the document as stored, as JSON
}

// Stop is a run stop document.
type Stop struct {
	UID        string
	RunStart   string
	Time       float64
	ExitStatus string
	Reason     string
	NumEvents  map[string]int64
	Raw        []byte
}

// DataKey describes one field of a descriptor.
type DataKey struct {
	Dtype      string // string, number, array, boolean, integer
	Shape      []int  // per event; [] for scalars; may be wrong in real data
	Source     string
	External   bool   // the data key has "external": values are datum ids
	DtypeNumpy string // dtype_numpy, or dtype_str, when given (e.g. "<u2")
	ObjectName string
	// Err is why the data key is malformed (a negative dimension, an unknown dtype, a value
	// that is not a map): the field is listed and fails with EIO, the others read.
	Err error
}

// Descriptor is an event descriptor document.
type Descriptor struct {
	UID           string
	RunStart      string
	Time          float64
	Name          string // stream name; "primary" when the document has none
	DataKeys      map[string]DataKey
	ObjectKeys    map[string][]string
	Configuration map[string]any // object -> {data, timestamps, data_keys}
	Doc           map[string]any
	Raw           []byte
}

// Resource is a resource document.
type Resource struct {
	UID            string
	Spec           string
	Root           string
	ResourcePath   string
	ResourceKwargs map[string]any
	PathSemantics  string // posix or windows
	RunStart       string
	Raw            []byte
}

// Keys returns the sorted data key names of the descriptor.
func (d *Descriptor) Keys() []string {
	keys := make([]string, 0, len(d.DataKeys))
	for k := range d.DataKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var errMissing = errors.New("missing key")

func need(doc map[string]any, key string) (any, error) {
	v, ok := doc[key]
	if !ok {
		return nil, fmt.Errorf("%w %q", errMissing, key)
	}
	return v, nil
}

func needString(doc map[string]any, key string) (string, error) {
	v, err := need(doc, key)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("key %q: want string, have %T", key, v)
	}
	return s, nil
}

func needFloat(doc map[string]any, key string) (float64, error) {
	v, err := need(doc, key)
	if err != nil {
		return 0, err
	}
	f, ok := AsFloat(v)
	if !ok {
		return 0, fmt.Errorf("key %q: want number, have %T", key, v)
	}
	return f, nil
}

// AsFloat converts a generic number to float64.
func AsFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case nil:
		return math.NaN(), false
	}
	return 0, false
}

// AsInt converts a generic integral number to int64.
func AsInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		// Only integral floats that int64 holds exactly: 1e300 is no scan_id.
		if x == math.Trunc(x) && x >= -(1<<63) && x < 1<<63 {
			return int64(x), true
		}
	}
	return 0, false
}

func optString(doc map[string]any, key string) string {
	s, _ := doc[key].(string)
	return s
}

// ParseStart checks a decoded start document and returns it with raw as its stored form.
func ParseStart(doc map[string]any, raw []byte) (*Start, error) {
	s := &Start{Doc: doc, Raw: raw}
	var err error
	if s.UID, err = needString(doc, "uid"); err != nil {
		return nil, err
	}
	if s.Time, err = needFloat(doc, "time"); err != nil {
		return nil, err
	}
	if v, ok := doc["scan_id"]; ok {
		s.ScanID, s.HasScan = AsInt(v)
	}
	s.PlanName = optString(doc, "plan_name")
	return s, nil
}

// ParseStop checks a decoded stop document.
func ParseStop(doc map[string]any, raw []byte) (*Stop, error) {
	s := &Stop{Raw: raw}
	var err error
	if s.UID, err = needString(doc, "uid"); err != nil {
		return nil, err
	}
	if s.RunStart, err = needString(doc, "run_start"); err != nil {
		return nil, err
	}
	if s.Time, err = needFloat(doc, "time"); err != nil {
		return nil, err
	}
	if s.ExitStatus, err = needString(doc, "exit_status"); err != nil {
		return nil, err
	}
	s.Reason = optString(doc, "reason")
	if ne, ok := doc["num_events"].(map[string]any); ok {
		s.NumEvents = make(map[string]int64, len(ne))
		for k, v := range ne {
			n, _ := AsInt(v)
			s.NumEvents[k] = n
		}
	}
	return s, nil
}

// ParseDescriptor checks a decoded descriptor document.
func ParseDescriptor(doc map[string]any, raw []byte) (*Descriptor, error) {
	d := &Descriptor{Doc: doc, Raw: raw, Name: "primary"}
	var err error
	if d.UID, err = needString(doc, "uid"); err != nil {
		return nil, err
	}
	if d.RunStart, err = needString(doc, "run_start"); err != nil {
		return nil, err
	}
	if d.Time, err = needFloat(doc, "time"); err != nil {
		return nil, err
	}
	if n, ok := doc["name"].(string); ok && n != "" {
		d.Name = n
	}
	v, err := need(doc, "data_keys")
	if err != nil {
		return nil, err
	}
	dks, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("key \"data_keys\": want map, have %T", v)
	}
	d.DataKeys = make(map[string]DataKey, len(dks))
	for name, v := range dks {
		// A malformed data key costs its own field, not the descriptor's others.
		var dk DataKey
		m, ok := v.(map[string]any)
		if !ok {
			dk.Err = fmt.Errorf("data key %q: want map, have %T", name, v)
		} else if dk, err = parseDataKey(m); err != nil {
			dk.Err = fmt.Errorf("data key %q: %w", name, err)
		}
		d.DataKeys[name] = dk
	}
	if ok, _ := doc["object_keys"].(map[string]any); ok != nil {
		d.ObjectKeys = make(map[string][]string, len(ok))
		for obj, v := range ok {
			list, _ := v.([]any)
			for _, k := range list {
				if s, isStr := k.(string); isStr {
					d.ObjectKeys[obj] = append(d.ObjectKeys[obj], s)
				}
			}
		}
	}
	d.Configuration, _ = doc["configuration"].(map[string]any)
	return d, nil
}

func parseDataKey(m map[string]any) (DataKey, error) {
	var dk DataKey
	var err error
	if dk.Dtype, err = needString(m, "dtype"); err != nil {
		return dk, err
	}
	switch dk.Dtype {
	case "string", "number", "array", "boolean", "integer":
	default:
		return dk, fmt.Errorf("unknown dtype %q", dk.Dtype)
	}
	v, err := need(m, "shape")
	if err != nil {
		return dk, err
	}
	switch s := v.(type) {
	case []any:
		for _, x := range s {
			n, ok := AsInt(x)
			if !ok || n < 0 {
				return dk, fmt.Errorf("bad shape %v", s)
			}
			dk.Shape = append(dk.Shape, int(n))
		}
	case nil:
	default:
		return dk, fmt.Errorf("key \"shape\": want list, have %T", v)
	}
	_, dk.External = m["external"]
	dk.Source = optString(m, "source")
	dk.ObjectName = optString(m, "object_name")
	dk.DtypeNumpy = optString(m, "dtype_numpy")
	if dk.DtypeNumpy == "" {
		dk.DtypeNumpy = optString(m, "dtype_str")
	}
	return dk, nil
}

// ParseResource checks a decoded resource document.
func ParseResource(doc map[string]any, raw []byte) (*Resource, error) {
	r := &Resource{Raw: raw, PathSemantics: "posix"}
	var err error
	if r.UID, err = needString(doc, "uid"); err != nil {
		return nil, err
	}
	if r.Spec, err = needString(doc, "spec"); err != nil {
		return nil, err
	}
	if r.ResourcePath, err = needString(doc, "resource_path"); err != nil {
		return nil, err
	}
	r.Root = optString(doc, "root")
	if ps := optString(doc, "path_semantics"); ps != "" {
		r.PathSemantics = ps
	}
	r.RunStart = optString(doc, "run_start")
	r.ResourceKwargs, _ = doc["resource_kwargs"].(map[string]any)
	return r, nil
}
