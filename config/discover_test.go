package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/handlers"
)

// byName returns the discovered source named name, failing the test when there is none.
func byName(t *testing.T, srcs []Source, name string) Source {
	t.Helper()
	for _, s := range srcs {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no source %q among %v", name, srcs)
	return Source{}
}

// noErrors fails the test on discovery errors that are not warnings.
func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		if !errors.Is(err, ErrSkipped) {
			t.Errorf("unexpected error: %v", err)
		}
	}
}

const driversYAML = `
metadata:
  version: 1
sources:
  mp:
    driver: bluesky-msgpack-catalog
    args:
      paths: ["/data/docs/*.msgpack"]
  mp_class:
    driver: databroker._drivers.msgpack.BlueskyMsgpackCatalog
    args: {paths: "/data/one/*.msgpack"}
  mp_entrypoint:
    driver: "databroker._drivers.msgpack:BlueskyMsgpackCatalog"
    args: {paths: ["/a/*.msgpack", "/b/*.msgpack"]}
  jl:
    driver: bluesky-jsonl-catalog
    args: {paths: ["/data/docs/*.jsonl"]}
  jl_class:
    driver: intake_bluesky.jsonl.BlueskyJSONLCatalog
    args: {paths: ["/data/docs/*.jsonl"]}
  mongo:
    driver: bluesky-mongo-normalized-catalog
    args: {metadatastore_db: "mongodb://HOST:27017/mds", asset_registry_db: "mongodb://HOST:27017/assets"}
  mongo_class:
    driver: databroker._drivers.mongo_normalized.BlueskyMongoCatalog
    args: {metadatastore_db: "mongodb://HOST:27017/db", asset_registry_db: "mongodb://HOST:27017/db"}
  emb: {driver: bluesky-mongo-embedded-catalog, args: {datastore_db: "mongodb://HOST:27017/db"}}
  emb_class: {driver: databroker._drivers.mongo_embedded.BlueskyMongoCatalog, args: {datastore_db: "mongodb+srv://cluster/db"}}
  csv:
    driver: csv
    args: {urlpath: "/data/x.csv"}
`

func TestDiscoverDrivers(t *testing.T) {
	env := testEnv(t)
	file := write(t, filepath.Join(env.XDGDataHome, "intake", "catalogs.yml"), driversYAML)
	srcs, errs := Discover(env)
	tests := []struct {
		name                  string
		kind                  Kind
		paths                 []string
		meta, asset, embedded string
		driver                string
		wantLine              int
	}{
		{name: "mp", kind: Msgpack, paths: []string{"/data/docs/*.msgpack"}, driver: "bluesky-msgpack-catalog", wantLine: 5},
		{name: "mp_class", kind: Msgpack, paths: []string{"/data/one/*.msgpack"}, driver: "databroker._drivers.msgpack.BlueskyMsgpackCatalog"},
		{name: "mp_entrypoint", kind: Msgpack, paths: []string{"/a/*.msgpack", "/b/*.msgpack"}},
		{name: "jl", kind: JSONL, paths: []string{"/data/docs/*.jsonl"}},
		{name: "jl_class", kind: JSONL, paths: []string{"/data/docs/*.jsonl"}},
		{name: "mongo", kind: MongoNormalized, meta: "mongodb://HOST:27017/mds", asset: "mongodb://HOST:27017/assets"},
		{name: "mongo_class", kind: MongoNormalized, meta: "mongodb://HOST:27017/db", asset: "mongodb://HOST:27017/db"},
		{name: "emb", kind: MongoEmbedded, embedded: "mongodb://HOST:27017/db"},
		{name: "emb_class", kind: MongoEmbedded, embedded: "mongodb+srv://cluster/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := byName(t, srcs, tt.name)
			if s.Kind != tt.kind || !slices.Equal(s.Paths, tt.paths) || s.MetadataURI != tt.meta ||
				s.AssetURI != tt.asset || s.EmbeddedURI != tt.embedded {
				t.Errorf("got %#v", s)
			}
			if s.File != file {
				t.Errorf("File = %q, want %q", s.File, file)
			}
			if tt.driver != "" && s.Driver != tt.driver {
				t.Errorf("Driver = %q, want %q", s.Driver, tt.driver)
			}
			if tt.wantLine != 0 && s.Line != tt.wantLine {
				t.Errorf("Line = %d, want %d", s.Line, tt.wantLine)
			}
			if len(s.Warnings) != 0 {
				t.Errorf("warnings: %q", s.Warnings)
			}
		})
	}
	if len(srcs) != len(tests) {
		t.Errorf("%d sources, want %d", len(srcs), len(tests))
	}
	// The csv source is skipped with a warning that names the file, line and source.
	if len(errs) != 1 || !errors.Is(errs[0], ErrSkipped) {
		t.Fatalf("errors = %v, want one skipped source", errs)
	}
	for _, want := range []string{file + ":30:", `source "csv"`, "driver csv is not a Bluesky catalog driver"} {
		if !strings.Contains(errs[0].Error(), want) {
			t.Errorf("error %q does not contain %q", errs[0], want)
		}
	}
}

func TestIntakeSourceErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // in the error message
		skipped    bool
	}{
		{"no driver", "sources:\n  s:\n    args: {paths: [a]}\n", []string{":2:", "no driver"}, false},
		{"no paths", "sources:\n  s:\n    driver: bluesky-msgpack-catalog\n    args: {root_map: {}}\n", []string{":4:", "args.paths is missing"}, false},
		{"no args", "sources:\n  s:\n    driver: bluesky-jsonl-catalog\n", []string{":2:", "args.paths is missing"}, false},
		{"no asset db", "sources:\n  s:\n    driver: bluesky-mongo-normalized-catalog\n    args:\n      metadatastore_db: mongodb://h/mds\n",
			[]string{"args.asset_registry_db is missing"}, false},
		{"not a URI", "sources:\n  s:\n    driver: bluesky-mongo-embedded-catalog\n    args:\n      datastore_db: h:27017/db\n",
			[]string{":5:", "not a mongodb:// URI"}, false},
		{"no database", "sources:\n  s:\n    driver: bluesky-mongo-embedded-catalog\n    args:\n      datastore_db: mongodb://u:pw@h:27017/\n",
			[]string{":5:", "names no database", "mongodb://xxxxx@h:27017/"}, false},
		{"paths of the wrong type", "sources:\n  s:\n    driver: bluesky-msgpack-catalog\n    args:\n      paths: {a: b}\n",
			[]string{":5:", "want a string or a list of strings"}, false},
		{"handler of the wrong type", "sources:\n  s:\n    driver: bluesky-msgpack-catalog\n    args:\n      paths: [a]\n      handler_registry: {X: [a]}\n",
			[]string{":6:", "handler: want a class path"}, false},
		{"source defined twice", "sources:\n  s: {driver: bluesky-msgpack-catalog, args: {paths: a}}\n  s: {driver: bluesky-msgpack-catalog, args: {paths: b}}\n",
			[]string{":3:", `source "s" defined again (first at line 2)`}, false},
		{"sources not a mapping", "sources: [a, b]\n", []string{":1:", "sources: want a mapping"}, false},
		{"other driver", "sources:\n  s:\n    driver: intake_xarray.netcdf.NetCDFSource\n", []string{":3:", "is not a Bluesky catalog driver"}, true},
		{"not a catalog", "foo: bar\n", []string{"neither an intake catalog"}, true},
		{"empty", "", []string{"empty file"}, true},
		{"top-level list", "- a\n- b\n", []string{":1:", "want a mapping at the top level"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testEnv(t)
			file := write(t, filepath.Join(env.XDGDataHome, "intake", "c.yml"), tt.yaml)
			srcs, errs := Discover(env)
			if len(srcs) != 0 || len(errs) != 1 {
				t.Fatalf("got %v, %v; want one error", srcs, errs)
			}
			msg := errs[0].Error()
			for _, w := range append([]string{file}, tt.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if errors.Is(errs[0], ErrSkipped) != tt.skipped {
				t.Errorf("errors.Is(ErrSkipped) = %v, want %v", !tt.skipped, tt.skipped)
			}
			var fe *FileError
			if !errors.As(errs[0], &fe) || fe.File != file {
				t.Errorf("error is not a *FileError naming %s: %#v", file, errs[0])
			}
		})
	}
}

func TestRelativePathsAndRootMap(t *testing.T) {
	tests := []struct {
		name       string
		args       string
		env        map[string]string
		paths      []string // "DIR" stands for the YAML file's directory
		rootMap    handlers.RootMap
		transforms map[string]string
		warns      []string
	}{
		{name: "relative glob", args: `{paths: ["docs/*.msgpack"]}`, paths: []string{"DIR/docs/*.msgpack"}},
		{name: "dot and dot-dot", args: `{paths: ["./docs/*.msgpack", "../other/*.msgpack"]}`,
			paths: []string{"DIR/docs/*.msgpack", "DIR/../other/*.msgpack"}},
		{name: "absolute glob unchanged", args: `{paths: ["/data//docs/*.msgpack"]}`, paths: []string{"/data//docs/*.msgpack"}},
		{name: "a single string", args: `{paths: "docs/*.msgpack"}`, paths: []string{"DIR/docs/*.msgpack"}},
		{name: "CATALOG_DIR template", args: `{paths: ["{{ CATALOG_DIR }}/docs/*.msgpack"]}`, paths: []string{"DIR/docs/*.msgpack"}},
		{name: "env template", args: `{paths: ['{{ env("DATA") }}/*.msgpack']}`, env: map[string]string{"DATA": "/beamline/data"},
			paths: []string{"/beamline/data/*.msgpack"}},
		{name: "other template", args: `{paths: ["{{ shell('ls') }}/*.msgpack"]}`, paths: []string{"DIR/{{ shell('ls') }}/*.msgpack"},
			warns: []string{"line 6: template {{ shell('ls') }} is not expanded"}},
		{name: "root_map values", args: `{paths: ["/d/*.msgpack"], root_map: {"/old/root": "moved_root", "/abs": "/new/abs", "rel_key": "./x/../y"}}`,
			paths: []string{"/d/*.msgpack"}, rootMap: handlers.RootMap{"/old/root": "DIR/moved_root", "/abs": "/new/abs", "rel_key": "DIR/y"}},
		{name: "root_map empty side", args: `{paths: ["/d/*"], root_map: {"/a": ""}}`, paths: []string{"/d/*"},
			warns: []string{`root_map "/a": "" has an empty side; ignored`}},
		{name: "ignored args", args: `{paths: ["/d/*"], query: {a: 1}, transforms: {}, zzz: 1, metadatastore_db: "mongodb://h/db"}`, paths: []string{"/d/*"},
			warns: []string{"args.metadatastore_db is not read by brokerfs for a msgpack catalog; ignored",
				"args.query is ignored: brokerfs lists every run (use --query to filter)",
				"args.zzz is not read by brokerfs for a msgpack catalog; ignored"}},
		{name: "transforms", args: `{paths: ["/d/*"], transforms: {start: "mypkg.fixes.fix_start", descriptor: "mypkg.fixes:fix_desc", datum: "m.f", stop: 3, resource: [a]}}`,
			paths: []string{"/d/*"}, transforms: map[string]string{"start": "mypkg.fixes.fix_start", "descriptor": "mypkg.fixes:fix_desc"},
			warns: []string{"line 6: args.transforms.datum: brokerfs transforms start, stop, descriptor and resource documents only; ignored",
				"line 6: args.transforms.stop: want an import path package.module.function; ignored",
				"line 6: args.transforms.resource: want an import path package.module.function; ignored"}},
		{name: "transforms not a mapping", args: `{paths: ["/d/*"], transforms: fix}`, paths: []string{"/d/*"},
			warns: []string{"line 6: args.transforms: want a mapping of document kinds to import paths; ignored"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testEnv(t)
			env.Getenv = func(k string) string { return tt.env[k] }
			dir := filepath.Join(env.Home, "cats")
			env.IntakePath = dir
			write(t, filepath.Join(dir, "c.yaml"), "sources:\n  s:\n    description: a test\n    driver: bluesky-msgpack-catalog\n    metadata: {}\n    args: "+tt.args+"\n")
			srcs, errs := Discover(env)
			noErrors(t, errs)
			s := byName(t, srcs, "s")
			sub := func(p string) string {
				if strings.HasPrefix(p, "DIR") {
					return filepath.Join(dir, strings.TrimPrefix(p, "DIR"))
				}
				return p
			}
			var wantPaths []string
			for _, p := range tt.paths {
				wantPaths = append(wantPaths, sub(p))
			}
			if !slices.Equal(s.Paths, wantPaths) {
				t.Errorf("Paths = %q, want %q", s.Paths, wantPaths)
			}
			var wantRM handlers.RootMap
			for k, v := range tt.rootMap {
				if wantRM == nil {
					wantRM = handlers.RootMap{}
				}
				wantRM[k] = sub(v)
			}
			if len(s.RootMap) != 0 || len(wantRM) != 0 {
				if !reflect.DeepEqual(s.RootMap, wantRM) {
					t.Errorf("RootMap = %q, want %q", s.RootMap, wantRM)
				}
			}
			if !slices.Equal(s.Warnings, tt.warns) {
				t.Errorf("Warnings = %q, want %q", s.Warnings, tt.warns)
			}
			if !maps.Equal(s.Transforms, tt.transforms) {
				t.Errorf("Transforms = %q, want %q", s.Transforms, tt.transforms)
			}
		})
	}
}

// copyPack copies the real databroker-pack output in testdata to a new directory.
func copyPack(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "moved pack")
	if err := os.CopyFS(dst, os.DirFS("../testdata/apstools/msgpack-pack")); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestLoadPack(t *testing.T) {
	dir := copyPack(t)
	s, err := LoadPack(dir)
	if err != nil {
		t.Fatal(err)
	}
	// catalog.yml says paths: [/tmp/440_specwriter_problem_run/documents/*.msgpack] and
	// relative_paths: [./documents/*.msgpack]: the relative one wins, under the copy.
	want := []string{filepath.Join(dir, "documents", "*.msgpack")}
	if s.Name != "packed_catalog" || s.Kind != Msgpack || !slices.Equal(s.Paths, want) ||
		s.File != filepath.Join(dir, "catalog.yml") || len(s.RootMap) != 0 || len(s.Warnings) != 0 {
		t.Fatalf("LoadPack = %#v, want Paths %q", s, want)
	}
	if !strings.HasSuffix(s.Paths[0], "/documents/*.msgpack") {
		t.Errorf("Paths[0] = %s", s.Paths[0])
	}
	matches, err := filepath.Glob(s.Paths[0])
	if err != nil || len(matches) != 1 || filepath.Base(matches[0]) != "624e776a-a914-4a74-8841-babf1591fb29.msgpack" {
		t.Errorf("glob %s = %q, %v", s.Paths[0], matches, err)
	}

	// A relative dir works too: the paths come out absolute.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := LoadPack(rel); err != nil || !slices.Equal(s2.Paths, want) {
		t.Errorf("LoadPack(%s) = %v, %v", rel, s2, err)
	}
}

func TestLoadPackDiscovered(t *testing.T) {
	// The same catalog.yml found through the search path (INTAKE_PATH may name a file).
	dir := copyPack(t)
	env := testEnv(t)
	env.IntakePath = filepath.Join(dir, "catalog.yml")
	srcs, errs := Discover(env)
	noErrors(t, errs)
	s := byName(t, srcs, "packed_catalog")
	if want := []string{filepath.Join(dir, "documents", "*.msgpack")}; !slices.Equal(s.Paths, want) {
		t.Errorf("Paths = %q, want %q", s.Paths, want)
	}
}

func TestLoadPackRootMapAndSeveralSources(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "catalog.yml"), `sources:
  packed_catalog:
    args:
      paths:
      - /home/dallan/pack/documents/*.msgpack
      root_map:
        6dd0c365fe571bb2a00c63e1623fa298: external_files/6dd0c365fe571bb2a00c63e1623fa298
    driver: bluesky-msgpack-catalog
    metadata:
      relative_paths:
      - ./documents/*.msgpack
  second:
    driver: bluesky-jsonl-catalog
    args: {paths: ["*.jsonl"]}
`)
	s, err := LoadPack(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantRM := handlers.RootMap{"6dd0c365fe571bb2a00c63e1623fa298": filepath.Join(dir, "external_files", "6dd0c365fe571bb2a00c63e1623fa298")}
	if !reflect.DeepEqual(s.RootMap, wantRM) || s.Name != "packed_catalog" {
		t.Errorf("LoadPack = %#v", s)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "holds 2 sources; brokerfs mounts the first, packed_catalog") {
		t.Errorf("Warnings = %q", s.Warnings)
	}
}

func TestLoadPackErrors(t *testing.T) {
	tests := []struct {
		name, catalog string // catalog "" means no catalog.yml
		want          string
	}{
		{"no catalog.yml", "", "no catalog.yml: not a databroker-pack directory"},
		{"malformed", "sources:\n  p:\n    driver: [\n", "catalog.yml:3: parse yaml"},
		{"no sources", "foo: 1\n", "no sources"},
		{"empty sources", "sources: {}\n", "sources is empty"},
		{"other driver", "sources:\n  p: {driver: csv}\n", "driver csv is not a Bluesky catalog driver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.catalog != "" {
				write(t, filepath.Join(dir, "catalog.yml"), tt.catalog)
			}
			s, err := LoadPack(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadPack = %v, %v; want error containing %q", s, err, tt.want)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	// Where a source named "shared" may be defined, highest precedence first.
	type loc struct {
		name string
		path func(env Env) string
	}
	intake := "sources:\n  shared:\n    driver: bluesky-jsonl-catalog\n    args: {paths: [x.jsonl]}\n"
	v0 := "metadatastore: {config: {host: h, database: mds}}\nassets: {config: {host: h, database: assets}}\n"
	locs := []loc{
		{"extra", func(env Env) string { return filepath.Join(env.ExtraDirs[0], "a.yml") }},
		{"xdg", func(env Env) string { return filepath.Join(env.XDGDataHome, "intake", "a.yml") }},
		{"xdg second file", func(env Env) string { return filepath.Join(env.XDGDataHome, "intake", "b.yaml") }},
		{"venv", func(env Env) string { return filepath.Join(env.VirtualEnv, "share", "intake", "a.yml") }},
		{"conda", func(env Env) string { return filepath.Join(env.CondaPrefix, "share", "intake", "a.yml") }},
		{"usr local", func(env Env) string { return filepath.Join(env.Root, "usr", "local", "share", "intake", "a.yml") }},
		{"INTAKE_PATH", func(env Env) string { return filepath.Join(env.IntakePath, "a.yml") }},
		{"~/.config/databroker", func(env Env) string { return filepath.Join(env.Home, ".config", "databroker", "shared.yml") }},
		{"conda etc", func(env Env) string { return filepath.Join(env.CondaPrefix, "etc", "databroker", "shared.yml") }},
		{"/etc/databroker", func(env Env) string { return filepath.Join(env.Root, "etc", "databroker", "shared.yml") }},
	}
	// Each case defines "shared" in the locations from index from onwards: the one at from wins
	// and names each of the others in a warning, in order.
	for from := range locs {
		t.Run(locs[from].name, func(t *testing.T) {
			env := testEnv(t)
			env.ExtraDirs = []string{filepath.Join(t.TempDir(), "extra")}
			env.IntakePath = filepath.Join(t.TempDir(), "intake_path")
			var files []string
			for _, l := range locs[from:] {
				p := l.path(env)
				if strings.HasSuffix(p, "shared.yml") {
					write(t, p, v0)
				} else {
					write(t, p, intake)
				}
				files = append(files, p)
			}
			srcs, errs := Discover(env)
			noErrors(t, errs)
			if len(srcs) != 1 || srcs[0].File != files[0] {
				t.Fatalf("sources %#v, want one from %s", srcs, files[0])
			}
			if len(srcs[0].Warnings) != len(files)-1 {
				t.Fatalf("warnings %q, want %d", srcs[0].Warnings, len(files)-1)
			}
			for i, w := range srcs[0].Warnings {
				if !strings.HasPrefix(w, "shadows the source shared in "+files[i+1]) {
					t.Errorf("warning %d = %q, want it to name %s", i, w, files[i+1])
				}
			}
			got, err := Find(env, "shared")
			if err != nil || got.File != files[0] {
				t.Errorf("Find = %v, %v", got, err)
			}
		})
	}
}

func TestSameFileTwice(t *testing.T) {
	env := testEnv(t)
	dir := filepath.Join(env.XDGDataHome, "intake")
	write(t, filepath.Join(dir, "a.yml"), "sources:\n  s: {driver: bluesky-jsonl-catalog, args: {paths: [x]}}\n")
	if err := os.Symlink(dir, filepath.Join(env.Home+"-link")); err != nil {
		t.Fatal(err)
	}
	env.IntakePath = env.Home + "-link" + ":" + filepath.Join(dir, "a.yml")
	srcs, errs := Discover(env)
	noErrors(t, errs)
	if len(srcs) != 1 || len(srcs[0].Warnings) != 0 {
		t.Errorf("sources %#v: a file reached twice must not shadow itself", srcs)
	}
}

func TestMalformedYAML(t *testing.T) {
	env := testEnv(t)
	dir := filepath.Join(env.XDGDataHome, "intake")
	bad := write(t, filepath.Join(dir, "a_bad.yml"), `sources:
  good_looking:
    driver: bluesky-msgpack-catalog
    args:
      paths: ["/d/*.msgpack"]
     root_map: {}
`)
	badTab := write(t, filepath.Join(dir, "b_tab.yml"), "sources:\n  s:\n\tdriver: x\n")
	write(t, filepath.Join(dir, "c_good.yml"), "sources:\n  fine: {driver: bluesky-jsonl-catalog, args: {paths: [x]}}\n")
	write(t, filepath.Join(env.Home, ".config", "databroker", "also_fine.yml"),
		"metadatastore: {config: {host: h, database: mds}}\nassets: {config: {host: h, database: mds}}\n")
	srcs, errs := Discover(env)
	if len(srcs) != 2 || srcs[0].Name != "fine" || srcs[1].Name != "also_fine" {
		t.Errorf("sources = %v: a malformed file must not stop discovery", srcs)
	}
	if len(errs) != 2 {
		t.Fatalf("errors = %v, want 2", errs)
	}
	tests := []struct {
		err  error
		want string
	}{
		{errs[0], bad + ":6: parse yaml: "},
		{errs[1], badTab + ":3: parse yaml: "},
	}
	for _, tt := range tests {
		if !strings.HasPrefix(tt.err.Error(), tt.want) {
			t.Errorf("error %q, want prefix %q", tt.err, tt.want)
		}
		if errors.Is(tt.err, ErrSkipped) {
			t.Errorf("a parse error is not a warning: %v", tt.err)
		}
	}
}

func TestUnreadableFile(t *testing.T) {
	env := testEnv(t)
	dir := filepath.Join(env.XDGDataHome, "intake")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "dangling.yml")); err != nil {
		t.Fatal(err)
	}
	_, errs := Discover(env)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), filepath.Join(dir, "dangling.yml")+": read: ") {
		t.Errorf("errors = %v", errs)
	}
}

func TestFind(t *testing.T) {
	env := testEnv(t)
	write(t, filepath.Join(env.XDGDataHome, "intake", "a.yml"), `sources:
  alpha: {driver: bluesky-msgpack-catalog, args: {paths: [a]}}
  beta: {driver: bluesky-jsonl-catalog, args: {paths: [b]}}
  gamma: {driver: csv}
`)
	write(t, filepath.Join(env.XDGDataHome, "intake", "broken.yml"), "sources: [\n")
	write(t, filepath.Join(env.Root, "etc", "databroker", "old.yml"),
		"metadatastore: {config: {host: h, database: mds}}\nassets: {config: {host: h, database: mds}}\n")

	s, err := Find(env, "beta")
	if err != nil || s.Name != "beta" || s.Kind != JSONL {
		t.Fatalf("Find(beta) = %v, %v", s, err)
	}
	if s, err := Find(env, "old"); err != nil || s.Kind != MongoNormalized {
		t.Fatalf("Find(old) = %v, %v", s, err)
	}

	tests := []struct {
		name    string
		want    []string
		notWant []string
	}{
		{"delta", []string{`catalog "delta" not found`, "available: alpha, beta, old",
			"searched: " + strings.Join(SearchPath(env), ", "), "broken.yml:1: parse yaml"}, []string{"csv"}},
		// A source of that name that brokerfs skipped: say why, not what else is broken.
		{"gamma", []string{`catalog "gamma" not found`, "driver csv is not a Bluesky catalog driver"}, []string{"broken.yml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Find(env, tt.name)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			var nf *NotFoundError
			if !errors.As(err, &nf) || nf.Name != tt.name {
				t.Errorf("err is not a *NotFoundError: %#v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q contains %q", err, w)
				}
			}
		})
	}
	if _, err := Find(testEnv(t), "x"); err == nil || !strings.Contains(err.Error(), "available: none") {
		t.Errorf("empty search path: %v", err)
	}
}
