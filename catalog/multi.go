package catalog

import (
	"context"
	"errors"
	"fmt"
)

// Multi joins catalogs into one: a source named as several stores. A run (a start uid) held by
// more than one of them is listed once, from the first catalog that holds it, and Run opens it
// there: the order of the sources is the order of preference, as it is for databroker's
// catalog of catalogs.
type Multi []Catalog

var _ Catalog = Multi(nil)

// Runs implements Catalog. It fails when any catalog fails: a partial listing would make runs
// seem to vanish.
func (m Multi) Runs(ctx context.Context) ([]*Start, error) {
	var all []*Start
	seen := map[string]bool{}
	for _, c := range m {
		starts, err := c.Runs(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range starts {
			if !seen[s.UID] {
				seen[s.UID] = true
				all = append(all, s)
			}
		}
	}
	return all, nil
}

// Run implements Catalog: the run from the first catalog that has it.
func (m Multi) Run(ctx context.Context, uid string) (Run, error) {
	for _, c := range m {
		r, err := c.Run(ctx, uid)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return r, err
		}
	}
	return nil, fmt.Errorf("run %s: %w", uid, ErrNotFound)
}

// Close implements Catalog: it closes every catalog.
func (m Multi) Close() error {
	var errs []error
	for _, c := range m {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
