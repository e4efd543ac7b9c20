package catalog_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/memory"
)

func start(uid, plan string) []catalog.Document {
	return []catalog.Document{{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.0, "plan_name": plan}}}
}

// TestMulti: a run in two catalogs lists once and opens from the first.
func TestMulti(t *testing.T) {
	a, err := memory.New(start("u1", "first"), start("u2", "first"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := memory.New(start("u2", "second"), start("u3", "second"))
	if err != nil {
		t.Fatal(err)
	}
	m := catalog.Multi{a, b}
	ctx := context.Background()
	starts, err := m.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range starts {
		got = append(got, s.UID+"/"+s.PlanName)
	}
	slices.Sort(got)
	if want := []string{"u1/first", "u2/first", "u3/second"}; !slices.Equal(got, want) {
		t.Errorf("Runs = %v, want %v", got, want)
	}
	for uid, plan := range map[string]string{"u1": "first", "u2": "first", "u3": "second"} {
		r, err := m.Run(ctx, uid)
		if err != nil || r.Start().PlanName != plan {
			t.Errorf("Run(%s): %v, want the %s catalog's", uid, err, plan)
		}
	}
	if _, err := m.Run(ctx, "u4"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Run(u4) = %v, want ErrNotFound", err)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}
