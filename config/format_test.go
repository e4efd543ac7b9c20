package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	srcs := []Source{
		{Name: "local", Kind: Msgpack, Paths: []string{"/data/a/*.msgpack", "/data/b/*.msgpack"}, File: "/home/u/.local/share/intake/c.yml", Line: 3},
		{Name: "jl", Kind: JSONL, Paths: []string{"/d/*.jsonl"}, File: "/c.yml", Line: 9,
			Warnings: []string{"handler X for spec S is a Python class brokerfs does not know; reads of S fail unless --handler S=COMMAND is given"}},
		{Name: "shared", Kind: MongoNormalized, MetadataURI: "mongodb://u:pw@db/mds", AssetURI: "mongodb://u:pw@db/assets", File: "/etc/databroker/shared.yml"},
		{Name: "same", Kind: MongoNormalized, MetadataURI: "mongodb://db/x", AssetURI: "mongodb://db/x", File: "/f.yml", Line: 1},
		{Name: "emb", Kind: MongoEmbedded, EmbeddedURI: "mongodb://db/e", File: "/f.yml", Line: 4,
			Warnings: []string{"shadows the source emb in /g.yml:2, which comes later in the search path"}},
	}
	var b bytes.Buffer
	if err := Format(&b, srcs); err != nil {
		t.Fatal(err)
	}
	want := `NAME    KIND              WHERE                                                      FILE
local   msgpack           /data/a/*.msgpack /data/b/*.msgpack                        /home/u/.local/share/intake/c.yml:3
jl      jsonl             /d/*.jsonl                                                 /c.yml:9
shared  mongo-normalized  mongodb://xxxxx@db/mds (assets mongodb://xxxxx@db/assets)  /etc/databroker/shared.yml
same    mongo-normalized  mongodb://db/x                                             /f.yml:1
emb     mongo-embedded    mongodb://db/e                                             /f.yml:4
warning: jl: handler X for spec S is a Python class brokerfs does not know; reads of S fail unless --handler S=COMMAND is given
warning: emb: shadows the source emb in /g.yml:2, which comes later in the search path
`
	if b.String() != want {
		t.Errorf("Format =\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	if err := Format(&b, nil); err != nil || !strings.Contains(b.String(), "no catalogs found") {
		t.Errorf("Format(nil) = %q, %v", b.String(), err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Msgpack: "msgpack", JSONL: "jsonl", MongoNormalized: "mongo-normalized", MongoEmbedded: "mongo-embedded", 0: "unknown"} {
		if k.String() != want {
			t.Errorf("Kind(%d) = %q, want %q", int(k), k, want)
		}
	}
}
