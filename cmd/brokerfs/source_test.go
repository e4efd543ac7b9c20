package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// TestQueryKeepsRunVersion: a --query wrapper still tells run versions (a remount opens
// finished runs from the cache), and still refuses runs the query leaves out.
func TestQueryKeepsRunVersion(t *testing.T) {
	dir := t.TempDir()
	for uid, plan := range map[string]string{"run-one": "scan", "run-two": "count"} {
		doc := `["start", {"uid": "` + uid + `", "time": 1.0, "plan_name": "` + plan + `"}]` + "\n" +
			`["stop", {"uid": "` + uid + `-s", "run_start": "` + uid + `", "time": 2.0, "exit_status": "success"}]` + "\n"
		if err := os.WriteFile(filepath.Join(dir, uid+".jsonl"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cf := catalogFlags{query: `{"plan_name": "scan"}`, layout: "normalized", noCache: true}
	src, err := cf.open(context.Background(), dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.cat.Close()
	rv, ok := src.cat.(catalog.RunVersioner)
	if !ok {
		t.Fatalf("%T hides RunVersion", src.cat)
	}
	if v, err := rv.RunVersion(context.Background(), "run-one"); err != nil || v == "" {
		t.Errorf("RunVersion = %q, %v", v, err)
	}
	starts, err := src.cat.Runs(context.Background())
	if err != nil || len(starts) != 1 || starts[0].UID != "run-one" {
		t.Errorf("Runs = %v, %v", starts, err)
	}
	if _, err := src.cat.Run(context.Background(), "run-two"); err == nil {
		t.Error("a run the query leaves out opens")
	}
}
