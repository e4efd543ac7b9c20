package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzLoad: no configuration file makes discovery panic, and every source it yields is
// complete for its kind.
func FuzzLoad(f *testing.F) {
	pack, err := os.ReadFile("../testdata/apstools/msgpack-pack/catalog.yml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pack)
	f.Add([]byte(driversYAML))
	f.Add([]byte("metadatastore: {config: {uri: 'mongodb://u:p@h/admin', database: mds}}\nassets: {config: {host: h, port: 1, database: a}}\nhandlers: {A: {module: m, class: C}}\nroot_map: {/a: b}\n"))
	f.Add([]byte("sources:\n  s: &x {driver: bluesky-jsonl-catalog, args: {paths: '{{ CATALOG_DIR }}/a'}}\n  t: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		srcs, errs := loadBytes("/cfg/c.yml", data, Env{Getenv: func(string) string { return "v" }})
		for _, err := range errs {
			if !strings.HasPrefix(err.Error(), "/cfg/c.yml") {
				t.Errorf("error does not name the file: %v", err)
			}
		}
		for _, s := range srcs {
			switch s.Kind {
			case Msgpack, JSONL:
				if len(s.Paths) == 0 {
					t.Errorf("%s: no paths", s.Name)
				}
				for _, p := range s.Paths {
					if !strings.HasPrefix(p, "/") {
						t.Errorf("%s: relative path %q", s.Name, p)
					}
				}
			case MongoNormalized:
				if s.MetadataURI == "" || s.AssetURI == "" {
					t.Errorf("%s: missing URI", s.Name)
				}
			case MongoEmbedded:
				if s.EmbeddedURI == "" {
					t.Errorf("%s: missing URI", s.Name)
				}
			default:
				t.Errorf("%s: kind %v", s.Name, s.Kind)
			}
		}
	})
}
