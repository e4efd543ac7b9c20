// Package handlers reads the external data of Bluesky runs: the handler registry that maps a
// resource's spec to a reader, and root_map, which finds files that moved.
package handlers

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// RootMap maps a resource's root as stored to where its files are now. A root matches only
// exactly, as in databroker: "/old/" does not match "/old".
type RootMap map[string]string

// ParseRootMap parses OLD=NEW pairs, as given to --root-map. An empty side or an OLD given
// twice is an error.
func ParseRootMap(pairs []string) (RootMap, error) {
	rm := RootMap{}
	for _, p := range pairs {
		old, new, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("root map %q: want OLD=NEW", p)
		}
		if old == "" || new == "" {
			return nil, fmt.Errorf("root map %q: OLD and NEW must not be empty", p)
		}
		if prev, dup := rm[old]; dup {
			return nil, fmt.Errorf("root map: %q is mapped twice (to %q and %q)", old, prev, new)
		}
		rm[old] = new
	}
	return rm, nil
}

// Targets returns the NEW sides, sorted.
func (rm RootMap) Targets() []string {
	out := make([]string, 0, len(rm))
	for _, v := range rm {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Resolve returns the path of a resource's files: root_map applied to root (exact match),
// joined with resourcePath as Python's os.path.join does (an absolute resourcePath wins), and
// whether root_map changed the root.
func (rm RootMap) Resolve(root, resourcePath string) (p string, mapped bool) {
	if r, ok := rm[root]; ok {
		root, mapped = r, true
	}
	switch {
	case root == "" || strings.HasPrefix(resourcePath, "/"):
		return resourcePath, mapped
	case strings.HasSuffix(root, "/"):
		return root + resourcePath, mapped
	}
	return path.Join(root, resourcePath), mapped
}
