package mongo

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

// queryRuns are the fixture runs that every layout can hold on FerretDB.
func queryRuns() [][]catalog.Document {
	var out [][]catalog.Document
	for _, r := range catalogtest.Runs() {
		if r[0].Doc["uid"] != catalogtest.UIDPages { // array fields: see TestEmbeddedContract
			out = append(out, r)
		}
	}
	return out
}

func TestQueries(t *testing.T) {
	srv := mongotest.Start(t)
	ctx := context.Background()
	var cmds commands
	opts := Options{Monitor: cmds.monitor()}
	norm := openNormalized(t, srv, srv.URI("q_mds"), "", queryRuns(), opts)
	for _, r := range queryRuns() {
		if err := InsertRunEmbedded(ctx, srv.URI("q_embedded"), r); err != nil {
			t.Fatal(err)
		}
	}
	emb, err := OpenEmbedded(ctx, srv.URI("q_embedded"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()

	for _, c := range []*Catalog{norm, emb} {
		name := "normalized"
		if c == emb {
			name = "embedded"
		}
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				query map[string]any
				want  []string
			}{
				{nil, []string{catalogtest.UIDScalars, catalogtest.UIDLive, catalogtest.UIDAssets}},
				{map[string]any{"scan_id": int64(101)}, []string{catalogtest.UIDScalars, catalogtest.UIDAssets}},
				{map[string]any{"plan_name": "count", "scan_id": map[string]any{"$gt": int64(102)}}, []string{catalogtest.UIDLive}},
				{map[string]any{"$or": []any{map[string]any{"sample": "Si (111)"}, map[string]any{"scan_id": int64(103)}}},
					[]string{catalogtest.UIDScalars, catalogtest.UIDLive}},
				{map[string]any{"detectors": "det"}, []string{catalogtest.UIDScalars}},
				{map[string]any{"plan_name": "nothing"}, nil},
			} {
				starts, err := c.Find(ctx, tc.query)
				if err != nil {
					t.Fatalf("Find(%v): %v", tc.query, err)
				}
				var got []string
				for _, s := range starts {
					got = append(got, s.UID)
				}
				slices.Sort(got)
				slices.Sort(tc.want)
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("Find(%v) = %v, want %v", tc.query, got, tc.want)
				}
			}
			cmds.take()
			for _, tc := range []struct {
				name, want string
				err        error
				trips      int
			}{
				{"101", catalogtest.UIDAssets, nil, 1}, // the most recent run with scan_id 101
				{"103", catalogtest.UIDLive, nil, 1},
				{"104", "", catalog.ErrNotFound, 1},
				{"-1", catalogtest.UIDAssets, nil, 1}, // the latest run
				{"-3", catalogtest.UIDScalars, nil, 1},
				{"-4", "", catalog.ErrNotFound, 1},
				{catalogtest.UIDLive, catalogtest.UIDLive, nil, 1},
				{"b7e5", catalogtest.UIDLive, nil, 2}, // exact, then prefix
				{"a1b2c3d4-0000", catalogtest.UIDScalars, nil, 2},
				{"c9d0e1f2-0000-4000-8000-000000000004x", "", catalog.ErrNotFound, 2},
				{"a.*", "", catalog.ErrNotFound, 2}, // not a regular expression
			} {
				s, err := c.Lookup(ctx, tc.name)
				switch {
				case tc.err != nil && !errors.Is(err, tc.err):
					t.Errorf("Lookup(%q) = %v, want %v", tc.name, err, tc.err)
				case tc.err == nil && (err != nil || s.UID != tc.want):
					t.Errorf("Lookup(%q) = %v, %v; want %s", tc.name, s, err, tc.want)
				}
				if got, _ := cmds.take(); len(got) != tc.trips {
					t.Errorf("Lookup(%q): round trips %q, want %d", tc.name, got, tc.trips)
				}
			}
		})
	}
}

func TestLookupAmbiguous(t *testing.T) {
	srv := mongotest.Start(t)
	c := openNormalized(t, srv, srv.URI("amb"), "", catalogtest.Runs(), Options{})
	if _, err := c.Lookup(context.Background(), "a1b2c3d4"); !errors.Is(err, catalog.ErrAmbiguous) {
		t.Errorf("Lookup(a1b2c3d4) = %v, want ErrAmbiguous", err)
	}
}
