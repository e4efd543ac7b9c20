package nodes

import (
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/transform"
)

// TestRemountTransformed: a finished run's transformed documents are kept in the cache and a
// remount with the same transforms serves them without opening the run; a remount with other
// transforms, or none, never gets them.
func TestRemountTransformed(t *testing.T) {
	if withoutCache {
		t.Skip("needs the cache")
	}
	cat, withStore := countingWithStore(t)
	wrap := func(sample string) catalog.Catalog {
		if sample == "" {
			return cat
		}
		r, err := transform.ParseRules([]byte("start:\n  - patch: {sample: " + sample + "}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return transform.Wrap(cat, transform.Options{Rules: r})
	}
	p := catalogtest.UIDScalars + "/start.json"
	for i, c := range []struct {
		sample string
		want   string // in start.json
		opens  int64  // runs opened in the catalog
	}{
		{"first", `"sample": "first"`, 1},
		{"first", `"sample": "first"`, 0}, // from the cache
		{"second", `"sample": "second"`, 1},
		{"", `"sample": "Si (111)"`, 1}, // as stored
		{"first", `"sample": "first"`, 0},
	} {
		cat.runs.Store(0)
		got := string(newTree(t, wrap(c.sample), withStore).mustRead(p))
		if !strings.Contains(got, c.want) {
			t.Errorf("mount %d (sample %q): start.json = %s", i, c.sample, got)
		}
		if n := cat.runs.Load(); n != c.opens {
			t.Errorf("mount %d (sample %q): %d runs opened, want %d", i, c.sample, n, c.opens)
		}
	}
}
