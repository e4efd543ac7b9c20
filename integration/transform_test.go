package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// transformModule is the user's module of databroker transforms, imported by brokerfs's
// helper (--python, PYTHONPATH) and by expect.py alike.
const transformModule = `
def fix(doc):
    if doc.get("sample") == "bad":
        raise RuntimeError("cannot fix sample 'bad'")
    doc["operator"] = doc["operator"].title()
    doc["sample"] = {"Si": "silicon"}.get(doc["sample"], doc["sample"])
    return doc


def fix_descriptor(doc):
    if "count" in doc["data_keys"]:
        doc["data_keys"]["count"]["dtype"] = "integer"
    return doc
`

// transformCheck checks what expect.py does not: values computed here from the run files.
// Arguments: MOUNTPOINT DIR (transform_run.py's directory).
const transformCheck = `
import json, os, sys
import numpy as np

mnt, d = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(d, "manifest.json")))

def stored(name, kind="start"):
    for line in open(os.path.join(d, "cat", name + ".jsonl")):
        k, doc = json.loads(line)
        if k == kind:
            return doc

def load(path):
    return json.load(open(os.path.join(mnt, path)))

a, b = m["a"], m["b"]
assert sorted(os.listdir(mnt)) == sorted([a, b, "by-scan-id", "latest"]), os.listdir(mnt)

want = stored("a")
want.update(operator="Ann", sample="silicon", rule="v1")
assert load(a + "/start.json") == want, load(a + "/start.json")
# The raising transform: run B's start as stored, byte for byte (the JSONL line holds
# json.dumps of the document).
got = open(os.path.join(mnt, b, "start.json")).read()
assert got == json.dumps(stored("b")) + "\n", got

# The descriptor transforms: count becomes integer (function), the dark frame (4, 5) (patch).
count = np.load(os.path.join(mnt, a, "primary", "count.npy"))
assert count.dtype == np.int64 and count.tolist() == [1, 2, 3], count
frame = np.load(os.path.join(mnt, a, "dark", "frame.npy"))
assert frame.dtype == np.uint16 and frame.shape == (0, 4, 5), (frame.dtype, frame.shape)
desc = load(a + "/dark/descriptors.json")
assert desc[0]["data_keys"]["frame"]["shape"] == [4, 5] and desc[0]["uid"] == a + "-dark", desc

# The resource transform: img is read from the resource's new root.
frames = np.load(os.path.join(d, "files", "frames.npy"))
img = np.load(os.path.join(mnt, a, "primary", "img.npy"))
assert img.dtype == frames.dtype and np.array_equal(img, frames), img
files = open(os.path.join(mnt, a, "files.txt")).read().split()
assert files == [os.path.join(d, "files", "frames.npy")], files
print("transforms checked")
`

// TestTransforms mounts a catalog with databroker transforms run by a real python3
// (--transform start=..., descriptor=...) and declarative ones (--transform-file): every
// file is checked by expect.py, which applies the same transforms itself; a --query on a
// value the transform changes selects by the stored value; a raising transform shows its
// document as stored with one log line; and a remount with other transforms does not serve
// documents the cache kept from the first.
func TestTransforms(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runPython(t, "testdata/transform_run.py", dir)
	var manifest map[string]string
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(b, &manifest) != nil {
		t.Fatalf("manifest: %v %s", err, b)
	}
	mods := filepath.Join(dir, "mods")
	if err := os.Mkdir(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, mods, "mod.py", []byte(transformModule))
	rules := func(name, version string) string {
		writeFile(t, dir, name, []byte(`{
  "start": [{"match": {"plan_name": "scan"}, "patch": {"rule": "`+version+`"}}],
  "descriptor": [{"match": {"name": "dark"}, "patch": {"data_keys": {"frame": {"shape": [4, 5]}}}}],
  "resource": [{"match": {"root": "`+manifest["old_root"]+`"}, "patch": {"root": "`+filepath.Join(dir, "files")+`"}}]
}`))
		return filepath.Join(dir, name)
	}
	rules1 := rules("rules1.json", "v1")
	query := `{"operator": "ann"}` // stored "ann"; the start transform makes it "Ann"
	env := []string{"PYTHONPATH=" + mods, "PYTHONDONTWRITEBYTECODE=1"}
	source := filepath.Join(dir, "cat")
	args := func(rules string) []string {
		return []string{"--python", python, "--transform", "start=mod.fix", "--transform", "descriptor=mod.fix_descriptor",
			"--transform-file", rules, "--query", query}
	}
	s := startServerEnv(t, env, source, args(rules1)...)

	files := []string{filepath.Join(source, "a.jsonl"), filepath.Join(source, "b.jsonl")}
	expect(t, s.mnt, files, "--query", query, "--transform", "start=mod.fix", "--transform", "descriptor=mod.fix_descriptor",
		"--transform-path", mods, "--transform-file", rules1)
	t.Log(strings.TrimSpace(runPython(t, "-c", transformCheck, s.mnt, dir)))

	logs := s.logs.String()
	failed := strings.Count(logs, "transform failed")
	line := `kind=start uid=` + manifest["b"] + ` err="mod.fix: RuntimeError: cannot fix sample 'bad'"`
	if failed != 1 || !strings.Contains(logs, line) {
		t.Errorf("%d transform failures logged, want 1 with %s:\n%s", failed, line, logs)
	}
	s.stop(syscall.SIGTERM)

	// Other transforms, the same cache directory: run A's start as the new rules make it.
	s2 := startServerEnv(t, env, source, args(rules("rules2.json", "v2"))...)
	b, err = os.ReadFile(filepath.Join(s2.mnt, manifest["a"], "start.json"))
	var start map[string]any
	if err != nil || json.Unmarshal(b, &start) != nil || start["rule"] != "v2" || start["sample"] != "silicon" {
		t.Errorf("start.json after a change of transforms: %s %v", b, err)
	}
}
