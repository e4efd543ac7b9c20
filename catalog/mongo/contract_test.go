package mongo

import (
	"context"
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
