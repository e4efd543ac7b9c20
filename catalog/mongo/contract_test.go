package mongo

import (
	"context"
	"sync"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

// openNormalized writes runs into fresh metadata and asset databases (assets "" = the same
// database), installs the sentinel and opens the catalog.
func openNormalized(t testing.TB, srv *mongotest.Server, mds, assets string, runs [][]catalog.Document, opts Options) *Catalog {
	t.Helper()
	ctx := context.Background()
	for _, r := range runs {
		if err := InsertRun(ctx, mds, assets, r); err != nil {
			t.Fatal(err)
		}
	}
	sentinelDB := assets
	if sentinelDB == "" {
		sentinelDB = mds
	}
	if err := InstallSentinel(ctx, sentinelDB, SentinelVersion); err != nil {
		t.Fatal(err)
	}
	c, err := OpenNormalized(ctx, mds, assets, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestNormalizedContract(t *testing.T) {
	srv := mongotest.Start(t)
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		return openNormalized(t, srv, srv.URI("mds"), srv.URI("assets"), runs, Options{})
	})
}

func TestNormalizedContractOneDatabase(t *testing.T) {
	srv := mongotest.Start(t)
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		return openNormalized(t, srv, srv.URI("databroker"), "", runs, Options{PageSize: 2})
	})
}

// TestConcurrentRun uses one run from several goroutines (run with -race).
func TestConcurrentRun(t *testing.T) {
	srv := mongotest.Start(t)
	c := openNormalized(t, srv, srv.URI("c_mds"), srv.URI("c_assets"), catalogtest.Runs(), Options{PageSize: 2})
	ctx := context.Background()
	run, err := c.Run(ctx, catalogtest.UIDAssets)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		wg.Go(func() {
			_, err := run.Stop(ctx)
			errs <- err
			descs, err := run.Descriptors(ctx)
			errs <- err
			_, err = run.Resources(ctx)
			errs <- err
			if err == nil && len(descs) > 0 {
				errs <- run.EventPages(ctx, descs[0].UID, 0, -1, nil, func(*catalog.EventPage) error { return nil })
			}
			errs <- run.(catalog.DocumentReader).Documents(ctx, func(catalog.Document) error { return nil })
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
