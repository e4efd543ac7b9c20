package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"mongodb://h:27017/db", "mongodb://h:27017/db"},
		{"mongodb://user:secret@h:27017/db", "mongodb://xxxxx@h:27017/db"},
		{"mongodb://user@h/db", "mongodb://xxxxx@h/db"},
		{"mongodb://us%40er:p@ss@h1,h2/db?replicaSet=rs", "mongodb://xxxxx@h1,h2/db?replicaSet=rs"},
		{"mongodb://h/db?authMechanismProperties=AWS_SESSION_TOKEN:tok&w=1", "mongodb://h/db?authMechanismProperties=xxxxx&w=1"},
		{"mongodb://h/db?tlsCertificateKeyFilePassword=pw", "mongodb://h/db?tlsCertificateKeyFilePassword=xxxxx"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Redact(tt.uri); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.uri, got, tt.want)
		}
	}
	text := "line 3: cannot unmarshal !!str `mongodb://u:hunter2@h/db` into x; see \"mongodb://a:b@c\""
	if got := RedactText(text); strings.Contains(got, "hunter2") || strings.Contains(got, "a:b") ||
		!strings.Contains(got, "`mongodb://xxxxx@h/db`") {
		t.Errorf("RedactText = %q", got)
	}
}

// TestCredentialsNeverPrinted: every way a Source or an error about it is printed hides
// the password.
func TestCredentialsNeverPrinted(t *testing.T) {
	const secret = "hunter2"
	env := testEnv(t)
	dir := filepath.Join(env.XDGDataHome, "intake")
	write(t, filepath.Join(dir, "a.yml"), `sources:
  norm:
    driver: bluesky-mongo-normalized-catalog
    args:
      metadatastore_db: mongodb://reader:hunter2@db.example.org:27017/mds?authSource=admin
      asset_registry_db: mongodb://reader:hunter2@db.example.org:27017/assets?authSource=admin
      bogus: mongodb://reader:hunter2@elsewhere/x
  emb:
    driver: bluesky-mongo-embedded-catalog
    args: {datastore_db: "mongodb://reader:hunter2@db.example.org/db"}
  bad:
    driver: bluesky-mongo-embedded-catalog
    args: {datastore_db: "mongodb://reader:hunter2@db.example.org/"}
  badtype:
    driver: bluesky-msgpack-catalog
    args: {paths: [[mongodb://reader:hunter2@x/y]]}
`)
	write(t, filepath.Join(env.Home, ".config", "databroker", "old.yml"), `metadatastore:
  config: {host: db, port: 27017, database: mds, mongo_user: reader, mongo_pwd: hunter2}
assets:
  config: {uri: "mongodb://reader:hunter2@db/", database: assets}
`)
	srcs, errs := Discover(env)
	if len(srcs) != 3 || len(errs) != 2 {
		t.Fatalf("sources %d, errors %v", len(srcs), errs)
	}
	var out bytes.Buffer
	for _, s := range srcs {
		if !strings.Contains(s.MetadataURI+s.EmbeddedURI, secret) {
			t.Fatalf("%s: the URI itself must keep its credentials to connect", s.Name)
		}
		fmt.Fprintf(&out, "%v\n%+v\n%s\n%#v\n%q\n", s, s, s, s, s)
		fmt.Fprintf(&out, "%v\n%#v\n", &s, &s)
		slog.New(slog.NewTextHandler(&out, nil)).Info("mount", "source", s)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("mount", "source", s)
		out.WriteString(s.Where() + "\n")
		out.WriteString(strings.Join(s.Warnings, "\n"))
	}
	if err := Format(&out, srcs); err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		out.WriteString(err.Error() + "\n")
	}
	if _, err := Find(env, "missing"); err != nil {
		out.WriteString(err.Error() + "\n")
	}
	if _, err := Find(env, "bad"); err != nil {
		out.WriteString(err.Error() + "\n")
	}
	if strings.Contains(out.String(), secret) {
		t.Errorf("the password is printed:\n%s", out.String())
	}
	for _, want := range []string{"mongodb://xxxxx@db.example.org:27017/mds?authSource=admin", "mongodb://xxxxx@db:27017/mds", "MetadataURI:\"mongodb://xxxxx@"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
