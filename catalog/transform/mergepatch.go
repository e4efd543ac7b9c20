package transform

// MergePatch applies an RFC 7396 JSON merge patch to target and returns the result. Neither
// argument is modified: maps on the way to a change are copied, and values taken from the
// patch are copied, so the result shares no map or list with the patch. Values are the
// generic document values of package catalog (map[string]any, []any, nil, ...): a JSON null
// is nil, and a nil in a patch object removes that member.
func MergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return clone(patch)
	}
	t, ok := target.(map[string]any)
	out := make(map[string]any, len(t)+len(p))
	if ok {
		for k, v := range t {
			out[k] = v
		}
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = MergePatch(out[k], v)
	}
	return out
}

// clone copies the maps and lists of a generic value (leaves are immutable).
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = clone(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = clone(e)
		}
		return l
	}
	return v
}
