package transform

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/brokerfs/brokerfs/catalog"
)

// Rules are declarative transforms, read from a --transform-file: per document kind, a list
// of entries {match: QUERY, patch: PATCH}. Every entry whose match (a Mongo-style query, as
// --query takes) matches the document as stored applies its patch (an RFC 7396 JSON merge
// patch), in file order, each to the result of the one before:
//
//	start:
//	  - match: {plan_name: count, sample: null}   # optional: without it, every start document
//	    patch: {sample: unknown}
//	descriptor:
//	  - match: {name: primary}
//	    patch: {data_keys: {det: {shape: [512, 512], dtype_numpy: "<u2"}}}
//
// A Rules is immutable and safe for concurrent use.
type Rules struct {
	byKind map[string][]rule
	canon  []byte // the rules as canonical JSON, for the digest
}

type rule struct {
	match *catalog.Query // nil: every document
	patch map[string]any
}

// maxRuleNodes bounds the YAML nodes a rules file may expand to (aliases included).
const maxRuleNodes = 1 << 20

// LoadRules reads a rules file (YAML, or JSON, which YAML reads too).
func LoadRules(path string) (*Rules, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// ParseRules parses the text of a rules file. Unknown kinds and keys, matches that are not
// queries and patches that are not objects are errors naming their line.
func ParseRules(data []byte) (*Rules, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	r := &Rules{byKind: map[string][]rule{}}
	if len(root.Content) == 0 {
		return nil, errors.New("no rules: want a mapping of document kinds (start, stop, descriptor, resource) to lists of {match, patch}")
	}
	budget := maxRuleNodes
	v, err := generic(root.Content[0], &budget, 0)
	if err != nil {
		return nil, err
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, lineError(root.Content[0], "want a mapping of document kinds (start, stop, descriptor, resource) to lists of {match, patch}")
	}
	doc := root.Content[0]
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, n := doc.Content[i], doc.Content[i+1]
		kind := k.Value
		if !isKind(kind) {
			return nil, lineError(k, "unknown document kind %q: want start, stop, descriptor or resource", kind)
		}
		list, ok := top[kind].([]any)
		if !ok {
			if top[kind] == nil {
				continue
			}
			return nil, lineError(n, "%s: want a list of {match, patch}", kind)
		}
		items := deref(n).Content
		for j, e := range list {
			line := n
			if j < len(items) {
				line = items[j]
			}
			ru, err := parseRule(e)
			if err != nil {
				return nil, lineError(line, "%s[%d]: %v", kind, j, err)
			}
			r.byKind[kind] = append(r.byKind[kind], ru)
		}
	}
	r.canon = catalog.AppendJSON(nil, top)
	return r, nil
}

func parseRule(e any) (rule, error) {
	m, ok := e.(map[string]any)
	if !ok {
		return rule{}, errors.New("want {match: QUERY, patch: PATCH}")
	}
	var ru rule
	for k, v := range m {
		switch k {
		case "match":
			if v == nil {
				continue
			}
			q, ok := v.(map[string]any)
			if !ok {
				return rule{}, errors.New("match: want a query object")
			}
			var err error
			if ru.match, err = catalog.ParseQuery(q); err != nil {
				return rule{}, fmt.Errorf("match: %w", err)
			}
		case "patch":
			p, ok := v.(map[string]any)
			if !ok {
				return rule{}, errors.New("patch: want an object (an RFC 7396 merge patch of the document)")
			}
			ru.patch = p
		default:
			return rule{}, fmt.Errorf("unknown key %q: want match and patch", k)
		}
	}
	if ru.patch == nil {
		return rule{}, errors.New("no patch")
	}
	return ru, nil
}

// has reports whether any rule is for kind.
func (r *Rules) has(kind string) bool { return r != nil && len(r.byKind[kind]) > 0 }

// apply patches doc with the rules of kind whose match accepts stored, and reports whether
// any did. doc is not modified.
func (r *Rules) apply(kind string, stored, doc map[string]any) (map[string]any, bool) {
	if r == nil {
		return doc, false
	}
	applied := false
	for _, ru := range r.byKind[kind] {
		if ru.match.Match(stored) {
			doc = MergePatch(doc, ru.patch).(map[string]any)
			applied = true
		}
	}
	return doc, applied
}

// generic turns a YAML node into the generic values of package catalog. Scalars keep the
// type YAML resolves (integers int64, floats float64, timestamps as written); keys are
// strings as written.
func generic(n *yaml.Node, budget *int, depth int) (any, error) {
	if *budget--; *budget < 0 {
		return nil, lineError(n, "more than %d values (aliases expanded)", maxRuleNodes)
	}
	if depth > 256 {
		return nil, lineError(n, "nested deeper than 256")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return generic(n.Content[0], budget, depth+1)
	case yaml.AliasNode:
		return generic(n.Alias, budget, depth+1)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := generic(c, budget, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := deref(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				return nil, lineError(k, "a key must be a scalar")
			}
			if k.Tag == "!!merge" {
				return nil, lineError(k, "merge keys (<<) are not supported")
			}
			if _, dup := out[k.Value]; dup {
				return nil, lineError(k, "key %q given twice", k.Value)
			}
			v, err := generic(n.Content[i+1], budget, depth+1)
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	case yaml.ScalarNode:
		return scalar(n)
	}
	return nil, lineError(n, "unexpected YAML node")
}

func scalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, lineError(n, "%v", err)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return nil, lineError(n, "integer %s out of range", n.Value)
		}
		return f, nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, lineError(n, "%v", err)
		}
		return f, nil
	case "!!str", "!!timestamp":
		return n.Value, nil
	}
	return nil, lineError(n, "values tagged %s are not supported", n.ShortTag())
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func lineError(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", n.Line, fmt.Sprintf(format, args...))
}
