// Package memory is a Catalog held in memory, built from generic documents. Tests use it as
// the simplest backend; the contract suite checks it like any other.
package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
)

// Catalog is an in-memory catalog. It is safe for concurrent use.
type Catalog struct {
	mu   sync.RWMutex
	runs map[string]*run // guarded by mu
	gen  int             // guarded by mu; counts Adds
}

// run is an assembled run with the generation of the Add that made it: its version for the
// persistent cache.
type run struct {
	*catalog.Assembled
	version string
}

// Version implements catalog.Versioner: every Add makes a new version.
func (r *run) Version(context.Context) (string, error) { return r.version, nil }

var _ catalog.Catalog = (*Catalog)(nil)

// New returns a catalog holding the given runs, each a list of documents beginning with its
// start. A malformed run is an error.
func New(runs ...[]catalog.Document) (*Catalog, error) {
	c := &Catalog{runs: make(map[string]*run)}
	for _, docs := range runs {
		if err := c.Add(docs); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Add adds or replaces a run.
func (c *Catalog) Add(docs []catalog.Document) error {
	a, bad, err := catalog.Assemble(docs)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("run %s: %w", a.StartDoc.UID, bad[0])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.runs[a.StartDoc.UID] = &run{Assembled: a, version: fmt.Sprintf("memory:%p:%d:%s", c, c.gen, a.StartDoc.UID)}
	return nil
}

// Runs implements catalog.Catalog.
func (c *Catalog) Runs(context.Context) ([]*catalog.Start, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*catalog.Start, 0, len(c.runs))
	for _, a := range c.runs {
		out = append(out, a.StartDoc)
	}
	return out, nil
}

// Run implements catalog.Catalog.
func (c *Catalog) Run(_ context.Context, uid string) (catalog.Run, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.runs[uid]
	if !ok {
		return nil, fmt.Errorf("run %s: %w", uid, catalog.ErrNotFound)
	}
	return a, nil
}

// Close implements catalog.Catalog.
func (c *Catalog) Close() error { return nil }

// RunVersion implements catalog.RunVersioner: the version of the run as last added.
func (c *Catalog) RunVersion(_ context.Context, uid string) (string, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.runs[uid]
	if !ok {
		return "", fmt.Errorf("run %s: %w", uid, catalog.ErrNotFound)
	}
	return r.version, nil
}
