package catalog

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Query is a Mongo-style filter on start documents, as databroker users write them for
// catalog.search() and brokerfs takes them with --query: {"plan_name": "scan",
// "scan_id": {"$gte": 100}, "versions.bluesky": {"$regex": "^1\\."}}.
//
// Supported: implicit equality, $eq $ne $gt $gte $lt $lte $in $nin $exists $regex (with
// $options i, m, s, x) $not, and $and $or $nor; dotted paths into nested maps (and list
// indexes); Mongo's list semantics (a list field matches when the list itself or any element
// does). Numbers compare across int64 and float64; comparing different types is false.
// A Query is immutable and safe for concurrent use.
type Query struct {
	src  map[string]any
	root matcher
}

// matcher is one parsed clause.
type matcher interface{ match(doc map[string]any) bool }

// ParseQuery parses a decoded JSON query (generic values). Unknown operators and malformed
// operands are errors naming them.
func ParseQuery(q map[string]any) (*Query, error) {
	root, err := parseDoc(q)
	if err != nil {
		return nil, fmt.Errorf("parse query: %w", err)
	}
	return &Query{src: q, root: root}, nil
}

// Match reports whether doc satisfies the query. A nil Query matches everything.
func (q *Query) Match(doc map[string]any) bool { return q == nil || q.root.match(doc) }

// String returns the query as canonical JSON, for logs.
func (q *Query) String() string {
	if q == nil {
		return "{}"
	}
	return string(AppendJSON(nil, q.src))
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic errors
	return keys
}

type and []matcher
type or []matcher
type not struct{ m matcher }

func (a and) match(doc map[string]any) bool {
	for _, m := range a {
		if !m.match(doc) {
			return false
		}
	}
	return true
}

func (o or) match(doc map[string]any) bool {
	for _, m := range o {
		if m.match(doc) {
			return true
		}
	}
	return false
}

func (n not) match(doc map[string]any) bool { return !n.m.match(doc) }

// parseDoc parses a query document: an implicit $and of its clauses.
func parseDoc(q map[string]any) (matcher, error) {
	var all and
	for _, k := range sortedKeys(q) {
		v := q[k]
		switch {
		case k == "$and" || k == "$or" || k == "$nor":
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return nil, fmt.Errorf("%s: want a non-empty list of queries", k)
			}
			var subs []matcher
			for i, e := range list {
				m, ok := e.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s[%d]: want a query object, have %T", k, i, e)
				}
				sub, err := parseDoc(m)
				if err != nil {
					return nil, err
				}
				subs = append(subs, sub)
			}
			switch k {
			case "$and":
				all = append(all, and(subs))
			case "$or":
				all = append(all, or(subs))
			default:
				all = append(all, not{or(subs)})
			}
		case strings.HasPrefix(k, "$"):
			return nil, fmt.Errorf("unknown top-level operator %q", k)
		default:
			m, err := parseField(k, v)
			if err != nil {
				return nil, err
			}
			all = append(all, m)
		}
	}
	return all, nil
}

// field applies a predicate to the values a dotted path reaches.
type field struct {
	path []string
	pred predicate
}

// predicate tests the values a path reaches; found is false when it reaches none.
type predicate func(vals []any, found bool) bool

func (f field) match(doc map[string]any) bool {
	vals := lookup(doc, f.path, nil)
	return f.pred(vals, len(vals) > 0)
}

// lookup collects the values at path. Like Mongo, it descends into the elements of lists on
// the way (a path "a.b" reaches b of every map in list a) and reads a numeric component as an
// index into a list.
func lookup(v any, path []string, out []any) []any {
	if a, ok := v.(*NDArray); ok {
		v = a.List()
	}
	if len(path) == 0 {
		return append(out, v)
	}
	switch x := v.(type) {
	case map[string]any:
		if child, ok := x[path[0]]; ok {
			out = lookup(child, path[1:], out)
		}
	case []any:
		if i, err := strconv.Atoi(path[0]); err == nil && i >= 0 && i < len(x) {
			out = lookup(x[i], path[1:], out)
		}
		for _, e := range x {
			if _, isMap := e.(map[string]any); isMap {
				out = lookup(e, path, out)
			}
		}
	}
	return out
}

func parseField(path string, v any) (matcher, error) {
	parts := strings.Split(path, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("field %q: empty path component", path)
		}
	}
	pred, err := parseOperand(path, v)
	if err != nil {
		return nil, err
	}
	return field{path: parts, pred: pred}, nil
}

// isOperatorDoc reports whether v is {"$op": ...}, as opposed to a document to compare with.
func isOperatorDoc(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil, false
	}
	for k := range m {
		if strings.HasPrefix(k, "$") {
			return m, true
		}
	}
	return nil, false
}

// parseOperand parses the value of a field clause: an operator document or a value to equal.
func parseOperand(path string, v any) (predicate, error) {
	ops, ok := isOperatorDoc(v)
	if !ok {
		return eqPred(v), nil
	}
	var preds []predicate
	for _, op := range sortedKeys(ops) {
		arg := ops[op]
		var p predicate
		var err error
		switch op {
		case "$eq":
			p = eqPred(arg)
		case "$ne":
			p = negate(eqPred(arg))
		case "$gt", "$gte", "$lt", "$lte":
			p = cmpPred(op, arg)
		case "$in", "$nin":
			list, isList := arg.([]any)
			if !isList {
				return nil, fmt.Errorf("field %q: %s wants a list, have %T", path, op, arg)
			}
			p = inPred(list)
			if op == "$nin" {
				p = negate(p)
			}
		case "$exists":
			want, isBool := arg.(bool)
			if f, isNum := AsFloat(arg); isNum {
				want, isBool = f != 0, true
			}
			if !isBool {
				return nil, fmt.Errorf("field %q: $exists wants a bool, have %T", path, arg)
			}
			p = func(_ []any, found bool) bool { return found == want }
		case "$regex":
			p, err = regexPred(arg, ops["$options"])
		case "$options":
			if _, has := ops["$regex"]; !has {
				return nil, fmt.Errorf("field %q: $options without $regex", path)
			}
			continue
		case "$not":
			if _, isOps := isOperatorDoc(arg); !isOps {
				return nil, fmt.Errorf("field %q: $not wants an operator object, have %v", path, string(AppendJSON(nil, arg)))
			}
			p, err = parseOperand(path, arg)
			p = negate(p)
		default:
			return nil, fmt.Errorf("field %q: unknown operator %q", path, op)
		}
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", path, err)
		}
		preds = append(preds, p)
	}
	return func(vals []any, found bool) bool {
		for _, p := range preds {
			if !p(vals, found) {
				return false
			}
		}
		return true
	}, nil
}

func negate(p predicate) predicate {
	return func(vals []any, found bool) bool { return !p(vals, found) }
}

// anyValue applies test to each value and, for list values, to each element: Mongo's rule that
// a list matches when any element does.
func anyValue(vals []any, test func(any) bool) bool {
	for _, v := range vals {
		if test(v) {
			return true
		}
		if list, ok := v.([]any); ok {
			for _, e := range list {
				if test(e) {
					return true
				}
			}
		}
	}
	return false
}

func eqPred(want any) predicate {
	return func(vals []any, found bool) bool {
		if want == nil && !found { // {field: null} matches a missing field, as in Mongo
			return true
		}
		return anyValue(vals, func(v any) bool { return equal(v, want) })
	}
}

func inPred(list []any) predicate {
	return func(vals []any, found bool) bool {
		for _, want := range list {
			if eqPred(want)(vals, found) {
				return true
			}
		}
		return false
	}
}

func cmpPred(op string, arg any) predicate {
	return func(vals []any, _ bool) bool {
		return anyValue(vals, func(v any) bool {
			c, ok := compare(v, arg)
			switch {
			case !ok:
				return false
			case op == "$gt":
				return c > 0
			case op == "$gte":
				return c >= 0
			case op == "$lt":
				return c < 0
			}
			return c <= 0
		})
	}
}

// compare orders two values of the same kind: numbers (int64 and float64 together), strings
// and bools. Other pairs, and NaN, are not comparable.
func compare(a, b any) (int, bool) {
	if i, ok := a.(int64); ok {
		if j, ok := b.(int64); ok { // exact beyond 2^53, where floats are not
			return cmp.Compare(i, j), true
		}
	}
	if x, ok := AsFloat(a); ok {
		y, ok := AsFloat(b)
		if !ok || math.IsNaN(x) || math.IsNaN(y) {
			return 0, false
		}
		return cmp.Compare(x, y), true
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true
		}
	case bool:
		if y, ok := b.(bool); ok {
			return cmp.Compare(boolInt(x), boolInt(y)), true
		}
	}
	return 0, false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// equal compares generic values, numbers across int64 and float64, NaN equal to NaN (as Mongo
// matches {x: NaN}), maps and lists element by element.
func equal(a, b any) bool {
	if x, ok := a.(*NDArray); ok {
		a = x.List()
	}
	if c, ok := compare(a, b); ok {
		return c == 0
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case float64:
		y, ok := b.(float64)
		return ok && math.IsNaN(x) && math.IsNaN(y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

func regexPred(arg, options any) (predicate, error) {
	pattern, ok := arg.(string)
	if !ok {
		return nil, fmt.Errorf("$regex wants a string, have %T", arg)
	}
	flags := ""
	if options != nil {
		opts, ok := options.(string)
		if !ok {
			return nil, fmt.Errorf("$options wants a string, have %T", options)
		}
		for _, o := range opts {
			switch o {
			case 'i', 'm', 's':
				flags += string(o)
			case 'x':
				pattern = stripExtended(pattern)
			default:
				return nil, fmt.Errorf("$options: unsupported option %q", o)
			}
		}
	}
	if flags != "" {
		pattern = "(?" + flags + ")" + pattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("$regex: %w", err)
	}
	return func(vals []any, _ bool) bool {
		return anyValue(vals, func(v any) bool {
			s, ok := v.(string)
			return ok && re.MatchString(s)
		})
	}, nil
}

// stripExtended removes what PCRE's x option ignores: unescaped whitespace and # comments
// outside character classes. Go's regexp has no such mode.
func stripExtended(p string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			b.WriteByte(c)
			i++
			b.WriteByte(p[i])
			continue
		case inClass:
			inClass = c != ']'
		case c == '[':
			inClass = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		case c == '#':
			for i < len(p) && p[i] != '\n' {
				i++
			}
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
