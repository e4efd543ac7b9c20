package mongo

import (
	"context"
	"slices"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

// TestLegacyResources reads a run whose resources predate the run_start key: they are found
// through the datum ids in its events, "<resource>/<n>" ids by their prefix and bare (v0)
// ids through the datum collection.
func TestLegacyResources(t *testing.T) {
	srv := mongotest.Start(t)
	uid := "d0000000-0000-4000-8000-00000000000a"
	bare := "7c1f4e1a-0000-4000-8000-0000000000bb"
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: map[string]any{"uid": uid + "-d", "run_start": uid, "time": 2.0, "data_keys": map[string]any{
			"img": map[string]any{"dtype": "array", "shape": []any{int64(2)}, "source": "x", "external": "FILESYSTEM:"},
			"I0":  dk("number"),
		}}},
		{Name: "resource", Doc: map[string]any{"uid": "resA", "spec": "AD_HDF5", "root": "/", "resource_path": "a.h5", "resource_kwargs": map[string]any{}}},
		{Name: "resource", Doc: map[string]any{"uid": "resB", "spec": "AD_HDF5", "root": "/", "resource_path": "b.h5", "resource_kwargs": map[string]any{}}},
		{Name: "resource", Doc: map[string]any{"uid": "resC", "spec": "AD_HDF5", "root": "/", "resource_path": "c.h5", "resource_kwargs": map[string]any{}}},
		{Name: "datum_page", Doc: map[string]any{"resource": "resA", "datum_id": []any{"resA/0", "resA/1"}, "datum_kwargs": map[string]any{"point_number": []any{int64(0), int64(1)}}}},
		{Name: "datum", Doc: map[string]any{"resource": "resB", "datum_id": bare, "datum_kwargs": map[string]any{"point_number": int64(0)}}},
	}
	for i, id := range []string{"resA/0", "resA/1", bare} {
		docs = append(docs, catalog.Document{Name: "event", Doc: map[string]any{"uid": id + "-e", "descriptor": uid + "-d",
			"time": 3.0 + float64(i), "seq_num": int64(i + 1), "data": map[string]any{"img": id, "I0": 1.0},
			"timestamps": map[string]any{"img": 3.0, "I0": 3.0}, "filled": map[string]any{"img": false}}})
	}
	c := openNormalized(t, srv, srv.URI("l_mds"), srv.URI("l_assets"), [][]catalog.Document{docs}, Options{})
	ctx := context.Background()
	run, err := c.Run(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	res, err := run.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		got = append(got, r.UID)
	}
	slices.Sort(got)
	if want := []string{"resA", "resB"}; !slices.Equal(got, want) {
		t.Errorf("resources %v, want %v (resC is not used by the run)", got, want)
	}
}
