package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// isolateConfig points HOME, XDG_DATA_HOME and INTAKE_PATH at new temporary directories (and
// clears VIRTUAL_ENV and CONDA_PREFIX) for this test and the brokerfs processes it starts, so
// that the user's own intake and databroker configs are never read. It returns HOME and
// XDG_DATA_HOME. The test cannot be parallel (t.Setenv).
func isolateConfig(t *testing.T) (home, xdg string) {
	home, xdg = t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", xdg)
	t.Setenv("INTAKE_PATH", t.TempDir())
	t.Setenv("VIRTUAL_ENV", "")
	t.Setenv("CONDA_PREFIX", "")
	os.Unsetenv("VIRTUAL_ENV")
	os.Unsetenv("CONDA_PREFIX")
	return home, xdg
}

// TestNamedCatalog is what a databroker user does with the configs they have: an intake YAML
// catalog (paths and a root_map value relative to the YAML file) and a databroker 0.x config
// are listed by `brokerfs catalogs`; the intake catalog mounts by NAME; a databroker-pack
// directory mounts by its path; an unknown name fails, saying where brokerfs looked.
func TestNamedCatalog(t *testing.T) {
	home, xdg := isolateConfig(t)
	demo := demoCatalog(t)

	// An intake catalog in XDG_DATA_HOME/intake whose paths are relative to its directory:
	// the demo's run files in intake/runs/, its detector files in intake/moved/.
	intake := filepath.Join(xdg, "intake")
	if err := os.MkdirAll(filepath.Join(intake, "runs"), 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range runFiles(t, demo) {
		if !strings.HasSuffix(f, ".msgpack") { // the driver is bluesky-msgpack-catalog
			continue
		}
		files = append(files, copyFile(t, f, filepath.Join(intake, "runs"), filepath.Base(f)))
	}
	if err := os.Rename(filepath.Join(demo, "detector"), filepath.Join(intake, "moved")); err != nil {
		t.Fatal(err)
	}
	yml := filepath.Join(intake, "beamline.yml")
	writeFile(t, intake, "beamline.yml", []byte(`sources:
  beamline:
    description: the demo runs, as a databroker user's intake catalog
    driver: bluesky-msgpack-catalog
    args:
      paths: ["runs/*.msgpack"]
      root_map: {"`+demoDetectorRoot+`": "moved"}
      handler_registry: {AD_HDF5: area_detector_handlers.handlers.AreaDetectorHDF5Handler}
`))

	// A databroker 0.x config with a MongoDB URI.
	v0dir := filepath.Join(home, ".config", "databroker")
	if err := os.MkdirAll(v0dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v0 := filepath.Join(v0dir, "legacy.yml")
	writeFile(t, v0dir, "legacy.yml", []byte(`metadatastore:
  module: databroker.headersource.mongo
  class: MDS
  config: {uri: "mongodb://db.example.invalid:27017/legacy_mds", database: legacy_mds, timezone: US/Eastern}
assets:
  module: databroker.assets.mongo
  class: Registry
  config: {uri: "mongodb://db.example.invalid:27017/legacy_assets", database: legacy_assets}
root_map: {/old/root: /new/root}
`))

	out, code := run(t, time.Minute, "catalogs")
	if code != 0 {
		t.Fatalf("brokerfs catalogs exited %d:\n%s", code, out)
	}
	t.Logf("brokerfs catalogs:\n%s", out)
	listed := func(name, file string, words ...string) {
		t.Helper()
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && f[0] == name {
				if !strings.Contains(line, file) {
					t.Errorf("catalogs lists %s without its file %s: %q", name, file, line)
				}
				for _, w := range words {
					if !strings.Contains(line, w) {
						t.Errorf("catalogs lists %s without %q: %q", name, w, line)
					}
				}
				return
			}
		}
		t.Errorf("brokerfs catalogs does not list %s (%s):\n%s", name, file, out)
	}
	listed("beamline", yml, "msgpack")
	listed("legacy", v0, "mongodb://db.example.invalid:27017/legacy_mds")

	t.Run("mount by name", func(t *testing.T) {
		mnt, logs := mount(t, "beamline")
		expect(t, mnt, files)
		// The detector run's image is read through the relative root_map.
		if n := countCamImages(t, mnt); n == 0 {
			t.Errorf("no cam_image.npy read through the relative root_map; brokerfs says:\n%s", logs)
		}
	})

	t.Run("databroker-pack by path", func(t *testing.T) {
		pack := filepath.Join(t.TempDir(), "pack")
		copyTree(t, "../testdata/apstools/msgpack-pack", pack)
		mnt, _ := mount(t, pack)
		expect(t, mnt, runFiles(t, filepath.Join(pack, "documents")))
	})

	t.Run("unknown name", func(t *testing.T) {
		out, code := run(t, time.Minute, "ls", "no-such-catalog")
		if code == 0 {
			t.Fatalf("brokerfs ls no-such-catalog exited 0:\n%s", out)
		}
		for _, want := range []string{"no-such-catalog", intake, v0dir, "beamline", "legacy"} {
			if !strings.Contains(out, want) {
				t.Errorf("the error for an unknown catalog does not mention %s:\n%s", want, out)
			}
		}
		mnt := t.TempDir()
		out, code = run(t, time.Minute, "mount", "no-such-catalog", mnt)
		if code == 0 || isMounted(mnt) {
			detach(mnt)
			t.Fatalf("brokerfs mount no-such-catalog exited %d:\n%s", code, out)
		}
		if !strings.Contains(out, intake) {
			t.Errorf("brokerfs mount of an unknown name does not say where it looked:\n%s", out)
		}
	})
}

// countCamImages reads every cam_image.npy under mnt and returns how many were read whole.
func countCamImages(t *testing.T, mnt string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(mnt, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "cam_image.npy" {
			if _, err := os.ReadFile(path); err != nil {
				t.Errorf("%s: %v", path, err)
			} else {
				n++
			}
		}
		return nil
	})
	return n
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}
