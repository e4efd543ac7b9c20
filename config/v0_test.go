package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/handlers"
)

func TestV0Configs(t *testing.T) {
	tests := []struct {
		name         string
		yaml         string
		meta, assets string
		wantErr      string // in the error message; "" for none
		skipped      bool
	}{
		{
			name: "host and port (FORMATS.md's example)",
			yaml: `metadatastore: {module: databroker.headersource.mongo, class: MDS,
                config: {host: localhost, port: 27017, database: mds_db, timezone: US/Eastern}}
assets: {module: databroker.assets.mongo, class: Registry,
         config: {host: localhost, port: 27017, database: assets_db}}
`,
			meta: "mongodb://localhost:27017/mds_db", assets: "mongodb://localhost:27017/assets_db",
		},
		{
			name: "block style, port as a string, no module",
			yaml: `description: heavyweight shared database
metadatastore:
    config:
        host: db.example.org
        port: '27018'
        database: mds
assets:
    config:
        host: db.example.org
        database: assets
`,
			meta: "mongodb://db.example.org:27018/mds", assets: "mongodb://db.example.org/assets",
		},
		{
			name: "no host: localhost",
			yaml: "metadatastore: {config: {database: mds}}\nassets: {config: {port: 27017, database: a}}\n",
			meta: "mongodb://localhost/mds", assets: "mongodb://localhost:27017/a",
		},
		{
			name: "uri without a path: database appended",
			yaml: `metadatastore: {config: {uri: "mongodb://db1:27017,db2:27017/?replicaSet=rs0", database: mds}}
assets: {config: {uri: "mongodb://db1:27017", database: assets}}
`,
			meta: "mongodb://db1:27017,db2:27017/mds?replicaSet=rs0", assets: "mongodb://db1:27017/assets",
		},
		{
			name: "uri with the same database: as is",
			yaml: `metadatastore: {config: {uri: "mongodb://u:p@db/mds?authSource=admin", database: mds}}
assets: {config: {uri: "mongodb://db/assets", database: assets}}
`,
			meta: "mongodb://u:p@db/mds?authSource=admin", assets: "mongodb://db/assets",
		},
		{
			name: "uri path authenticates: it becomes authSource",
			yaml: `metadatastore: {config: {uri: "mongodb://u:p@db/admin", database: mds}}
assets: {config: {uri: "mongodb://db/other", database: assets}}
`,
			meta: "mongodb://u:p@db/mds?authSource=admin", assets: "mongodb://db/assets",
		},
		{
			name: "legacy mongo_user and mongo_pwd, authsource",
			yaml: `metadatastore: {config: {host: db, port: 27017, database: mds, mongo_user: "beam line", mongo_pwd: "p@ss:word", authsource: admin}}
assets: {config: {uri: "mongodb://u:p@db/", database: assets, authsource: admin}}
`,
			meta: "mongodb://beam%20line:p%40ss%3Aword@db:27017/mds?authSource=admin", assets: "mongodb://u:p@db/assets?authSource=admin",
		},
		{
			name:    "uri and host",
			yaml:    "metadatastore: {config: {uri: 'mongodb://db/', host: db, database: mds}}\nassets: {config: {host: h, database: a}}\n",
			wantErr: ":1: source \"cat\": metadatastore: config defines both uri and host/port",
		},
		{
			name:    "no database",
			yaml:    "metadatastore: {config: {host: h, database: mds}}\nassets:\n  config: {host: h}\n",
			wantErr: ":3: source \"cat\": assets: config.database is missing",
		},
		{
			name:    "no assets",
			yaml:    "metadatastore: {config: {host: h, database: mds}}\n",
			wantErr: "no assets section",
		},
		{
			name:    "uri not mongodb",
			yaml:    "metadatastore: {config: {uri: 'http://h/', database: mds}}\nassets: {config: {host: h, database: a}}\n",
			wantErr: "config.uri http://h/ is not a mongodb:// URI",
		},
		{
			name:    "bad section",
			yaml:    "metadatastore: mongodb://h/mds\nassets: {config: {host: h, database: a}}\n",
			wantErr: ":1: source \"cat\": metadatastore: want a mapping",
		},
		{
			name: "sqlite store skipped",
			yaml: `metadatastore:
  module: databroker.headersource.sqlite
  class: MDS
  config: {directory: /tmp/mds, timezone: US/Eastern}
assets: {module: databroker.assets.sqlite, class: Registry, config: {dbpath: /tmp/a.sqlite}}
`,
			wantErr: ":2: source \"cat\": metadatastore module databroker.headersource.sqlite is not a MongoDB store",
			skipped: true,
		},
		{
			name:    "sqlite assets skipped",
			yaml:    "metadatastore: {config: {host: h, database: mds}}\nassets: {module: databroker.assets.sqlite, config: {dbpath: /tmp/a.sqlite}}\n",
			wantErr: "assets module databroker.assets.sqlite is not a MongoDB store",
			skipped: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testEnv(t)
			file := write(t, filepath.Join(env.Home, ".config", "databroker", "cat.yml"), tt.yaml)
			srcs, errs := Discover(env)
			if tt.wantErr != "" {
				want := tt.wantErr
				if strings.HasPrefix(want, ":") { // a line number: the file's name must precede it
					want = file + want
				}
				if len(srcs) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
					t.Fatalf("got %v, %v; want error %q", srcs, errs, want)
				}
				if errors.Is(errs[0], ErrSkipped) != tt.skipped {
					t.Errorf("errors.Is(ErrSkipped) = %v, want %v", !tt.skipped, tt.skipped)
				}
				return
			}
			noErrors(t, errs)
			s := byName(t, srcs, "cat")
			if s.Kind != MongoNormalized || s.MetadataURI != tt.meta || s.AssetURI != tt.assets || s.File != file || s.Line != 0 {
				t.Errorf("got MetadataURI %q AssetURI %q (%#v), want %q %q", s.MetadataURI, s.AssetURI, s, tt.meta, tt.assets)
			}
		})
	}
}

func TestV0HandlersAndRootMap(t *testing.T) {
	env := testEnv(t)
	dir := filepath.Join(env.Root, "etc", "databroker")
	write(t, filepath.Join(dir, "beamline.yml"), `metadatastore:
  module: databroker.headersource.mongo
  class: MDSRO
  config: {host: localhost, port: 27017, database: mds_db}
assets:
  module: databroker.assets.mongo
  class: RegistryRO
  config: {host: localhost, port: 27017, database: assets_db}
handlers:
  FOO: {module: databroker.assets.path_only_handlers, class: RawHandler}
  AD_HDF5: {module: area_detector_handlers.handlers, class: AreaDetectorHDF5Handler}
  AD_TIFF_CUSTOM: {module: databroker.assets.handlers, class: AreaDetectorTiffHandler}
root_map: {/old/root: /new/root, /GPFS/xf: relative/xf}
transforms: {start: beamline_fixes.start}
`)
	srcs, errs := Discover(env)
	noErrors(t, errs)
	s := byName(t, srcs, "beamline")
	if s.Driver != "databroker.headersource.mongo.MDSRO" {
		t.Errorf("Driver = %q", s.Driver)
	}
	wantH := map[string]string{"AD_HDF5": "AD_HDF5", "AD_TIFF_CUSTOM": "AD_TIFF"}
	if !reflect.DeepEqual(s.Handlers, wantH) {
		t.Errorf("Handlers = %v, want %v", s.Handlers, wantH)
	}
	wantRM := handlers.RootMap{"/old/root": "/new/root", "/GPFS/xf": filepath.Join(dir, "relative", "xf")}
	if !reflect.DeepEqual(s.RootMap, wantRM) {
		t.Errorf("RootMap = %v, want %v", s.RootMap, wantRM)
	}
	if want := map[string]string{"start": "beamline_fixes.start"}; !reflect.DeepEqual(s.Transforms, want) {
		t.Errorf("Transforms = %v, want %v", s.Transforms, want)
	}
	wantW := []string{"handler databroker.assets.path_only_handlers.RawHandler for spec FOO is a Python class brokerfs does not know; reads of FOO fail unless --handler FOO=COMMAND is given"}
	if !reflect.DeepEqual(s.Warnings, wantW) {
		t.Errorf("Warnings = %q, want %q", s.Warnings, wantW)
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct{ uri, db, authSource, want string }{
		{"mongodb://h", "d", "", "mongodb://h/d"},
		{"mongodb://h/", "d", "", "mongodb://h/d"},
		{"mongodb://h/?", "d", "", "mongodb://h/d"},
		{"mongodb://h/d", "d", "", "mongodb://h/d"},
		{"mongodb://h/x", "d", "", "mongodb://h/d"}, // no credentials: the path only picked the database
		{"mongodb://u:p@h/x", "d", "", "mongodb://u:p@h/d?authSource=x"},
		{"mongodb://u:p@h/x?authSource=y", "d", "", "mongodb://u:p@h/d?authSource=y"},
		{"mongodb://u:p@h/x?w=1", "d", "z", "mongodb://u:p@h/d?w=1&authSource=z"},
		{"mongodb+srv://u:p/@x@cluster.example/?retryWrites=true", "d", "", "mongodb+srv://u:p/@x@cluster.example/d?retryWrites=true"},
	}
	for _, tt := range tests {
		if got := withDatabase(tt.uri, tt.db, tt.authSource); got != tt.want {
			t.Errorf("withDatabase(%q, %q, %q) = %q, want %q", tt.uri, tt.db, tt.authSource, got, tt.want)
		}
	}
}
