package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
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

// TestRefuseMountInside: a mountpoint inside the catalog's directory is refused however the
// two are named: directly, through a symlink to the catalog (which the check did not resolve,
// so the mount went ahead and hid its own catalog), through a symlinked mountpoint, and for a
// glob or a comma list member; a mountpoint beside the catalog is allowed.
func TestRefuseMountInside(t *testing.T) {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(tmp, "real")
	for _, d := range []string{filepath.Join(real, "mnt"), filepath.Join(real, "sub", "mnt"), filepath.Join(tmp, "beside")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(tmp, "link")
	mntLink := filepath.Join(tmp, "mntlink")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "mnt"), mntLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dirs   []string
		mnt    string
		refuse bool
	}{
		{[]string{real}, filepath.Join(real, "mnt"), true},
		{[]string{link}, filepath.Join(real, "mnt"), true},
		{[]string{real}, filepath.Join(link, "mnt"), true},
		{[]string{real}, mntLink, true},
		{[]string{filepath.Join(link, "*")}, filepath.Join(real, "sub", "mnt"), true},
		{[]string{filepath.Join(tmp, "beside"), link}, filepath.Join(real, "mnt"), true},
		{[]string{link}, filepath.Join(tmp, "beside"), false},
		{[]string{filepath.Join(tmp, "beside")}, mntLink, false},
	} {
		src := &source{dirs: tc.dirs}
		err := src.refuseMountInside(tc.mnt, handlers.RootMap{})
		if (err != nil) != tc.refuse {
			t.Errorf("catalog %v, mountpoint %s: %v, want refused %v", tc.dirs, tc.mnt, err, tc.refuse)
		}
		if err != nil && !strings.Contains(err.Error(), "overlaps") {
			t.Errorf("error %v", err)
		}
	}
}
