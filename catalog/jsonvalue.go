package catalog

import "encoding/json"

// FromJSON turns what encoding/json decodes with UseNumber (json.Number, []any,
// map[string]any) into this package's generic values: int64 where a number is integral and
// fits, float64 otherwise. It converts in place and returns v.
func FromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = FromJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = FromJSON(x[k])
		}
	}
	return v
}
