package tiled

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/brokerfs/brokerfs/catalog"
)

// Find lists the runs whose start document matches a Mongo-style query (--query). Clauses
// that mean the same in tiled's filters go to the server: implicit equality and $eq (eq),
// $ne (noteq), $in (in), $nin (notin), $gt $gte $lt $lte (comparison), on start-document
// keys, values JSON-encoded. The whole query is then applied here as well, so a clause the
// server cannot take ($regex, $or, $exists, ...) still holds; each such clause is logged once
// per call, saying it runs client-side.
func (c *Catalog) Find(ctx context.Context, query map[string]any) ([]*catalog.Start, error) {
	q, err := catalog.ParseQuery(query)
	if err != nil {
		return nil, err
	}
	filters, rest := Filters(query)
	for _, k := range rest {
		c.opts.Logger.Info("tiled: query clause applied client-side (no tiled filter means the same)", "clause", k)
	}
	starts, _, err := c.search(ctx, filters)
	if err != nil {
		return nil, err
	}
	out := starts[:0]
	for _, s := range starts {
		if q.Match(s.Doc) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Filters translates the clauses of a Mongo-style query that tiled's filters express into
// query parameters, and names the clauses left for the client.
func Filters(query map[string]any) (url.Values, []string) {
	v := url.Values{}
	var rest []string
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !filterable(k) {
			rest = append(rest, k)
			continue
		}
		cond := query[k]
		ops, isOps := cond.(map[string]any)
		if !isOps || !allOps(ops) {
			if isOps || !scalar(cond) {
				rest = append(rest, k)
				continue
			}
			addFilter(v, "eq", "key", k, "value", jsonValue(cond))
			continue
		}
		opKeys := make([]string, 0, len(ops))
		for op := range ops {
			opKeys = append(opKeys, op)
		}
		sort.Strings(opKeys)
		for _, op := range opKeys {
			x := ops[op]
			switch op {
			case "$eq":
				if !scalar(x) {
					rest = append(rest, k+"."+op)
					continue
				}
				addFilter(v, "eq", "key", k, "value", jsonValue(x))
			case "$ne":
				if !scalar(x) {
					rest = append(rest, k+"."+op)
					continue
				}
				addFilter(v, "noteq", "key", k, "value", jsonValue(x))
			case "$in", "$nin":
				l, ok := x.([]any)
				if !ok || !allScalar(l) {
					rest = append(rest, k+"."+op)
					continue
				}
				name := "in"
				if op == "$nin" {
					name = "notin"
				}
				addFilter(v, name, "key", k, "value", jsonValue(l))
			case "$gt", "$gte", "$lt", "$lte":
				if _, num := catalog.AsFloat(x); !num {
					rest = append(rest, k+"."+op)
					continue
				}
				operator := map[string]string{"$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}[op]
				addFilter(v, "comparison", "operator", operator, "key", k, "value", jsonValue(x))
			default:
				rest = append(rest, k+"."+op)
			}
		}
	}
	return v, rest
}

// filterable: top-level keys that are start-document keys (not $and, $or, ...).
func filterable(k string) bool { return k != "" && !strings.HasPrefix(k, "$") }

func allOps(m map[string]any) bool {
	if len(m) == 0 {
		return false
	}
	for k := range m {
		if !strings.HasPrefix(k, "$") {
			return false
		}
	}
	return true
}

func scalar(v any) bool {
	switch v.(type) {
	case string, int64, float64, bool:
		return true
	}
	return false
}

func allScalar(l []any) bool {
	for _, x := range l {
		if !scalar(x) {
			return false
		}
	}
	return true
}

// jsonValue encodes a filter value as tiled wants it: JSON (an unquoted string is a 500),
// lists with Python's ", " separator.
func jsonValue(v any) string { return string(catalog.AppendJSON(nil, v)) }

// addFilter adds one filter group: filter[NAME][condition][K]=V for each pair. Groups of the
// same name repeat their parameters in order; the server ANDs them.
func addFilter(v url.Values, name string, kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		p := fmt.Sprintf("filter[%s][condition][%s]", name, kv[i])
		v[p] = append(v[p], kv[i+1])
	}
}
