package mongo

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mongodb://host:27017/mds", "mongodb://host:27017/mds"},
		{"mongodb://user:pass@host/mds", "mongodb://xxxxx@host/mds"},
		{"mongodb://user@host/mds", "mongodb://xxxxx@host/mds"},
		{"mongodb+srv://user:pass@cluster.example.org/mds?retryWrites=true", "mongodb+srv://xxxxx@cluster.example.org/mds?retryWrites=true"},
		{"mongodb://user:p%40ss@h1:27017,h2:27018/mds?replicaSet=rs0&readPreference=secondaryPreferred",
			"mongodb://xxxxx@h1:27017,h2:27018/mds?replicaSet=rs0&readPreference=secondaryPreferred"},
		{"mongodb://user:p@ss/w@rd@host/mds", "mongodb://xxxxx@host/mds"}, // unescaped '@' and '/'
		{"mongodb://AKIA:SECRET@host/mds?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok",
			"mongodb://xxxxx@host/mds?authMechanism=MONGODB-AWS&authMechanismProperties=xxxxx"},
		{"mongodb://host/mds?tls=true&tlsCertificateKeyFilePassword=pw", "mongodb://host/mds?tls=true&tlsCertificateKeyFilePassword=xxxxx"},
		{"user:pass@host/mds", "xxxxx@host/mds"},
		{"", ""},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestScrub(t *testing.T) {
	uri := "mongodb://alice:p%40ssw0rd@host/mds?authMechanismProperties=AWS_SESSION_TOKEN:tok123"
	base := errors.New("auth failed for alice with p@ssw0rd and p%40ssw0rd (token AWS_SESSION_TOKEN:tok123)")
	err := scrub(base, uri)
	for _, secret := range []string{"alice", "p@ssw0rd", "p%40ssw0rd", "tok123"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("scrubbed error %q shows %q", err, secret)
		}
	}
	if !errors.Is(err, base) {
		t.Error("scrubbed error does not unwrap to the original")
	}
	if plain := errors.New("no secrets here"); scrub(plain, uri) != plain {
		t.Error("scrub changed an error without secrets")
	}
}

func TestShareable(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"mongodb://h/mds", "mongodb://h/assets", true},
		{"mongodb://h1,h2/mds?replicaSet=rs", "mongodb://h1,h2/assets?replicaSet=rs", true},
		{"mongodb://h/mds", "mongodb://other/assets", false},
		{"mongodb://h/mds?tls=true", "mongodb://h/assets", false},
		{"mongodb://u:p@h/mds", "mongodb://u:p@h/assets", false}, // each authenticates against its own database
		{"mongodb://u:p@h/mds?authSource=admin", "mongodb://u:p@h/assets?authSource=admin", true},
	} {
		if got := shareable(tc.a, tc.b); got != tc.want {
			t.Errorf("shareable(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// TestCredentialsHidden connects with credentials the server refuses or a URI the driver
// refuses: neither errors nor logs show them.
func TestCredentialsHidden(t *testing.T) {
	srv := mongotest.Start(t)
	ctx := context.Background()
	var logs logBuffer
	opts := Options{Timeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	for _, uri := range []string{
		"mongodb://bob:s3cret@" + srv.Addr() + "/mds?authMechanism=SCRAM-SHA-256",
		"mongodb://bob:s3cret@" + srv.Addr() + "/mds?authMechanism=NO-SUCH-MECHANISM",
		"mongodb://bob:s3cret@" + srv.Addr() + "/mds?maxPoolSize=s3cret",
		"mongodb://bob:s3cret%zz@" + srv.Addr() + "/mds",
	} {
		var errs []error
		_, err := OpenNormalized(ctx, uri, "", opts)
		errs = append(errs, err)
		_, err = OpenEmbedded(ctx, uri, opts)
		errs = append(errs, err, CheckSentinel(ctx, uri), InstallSentinel(ctx, uri, 1), InsertRun(ctx, uri, "", nil))
		for _, err := range errs {
			if err == nil {
				t.Errorf("%s: no error", Redact(uri))
				continue
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "bob") {
				t.Errorf("error shows credentials: %v", err)
			}
		}
		t.Log(errs[0])
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("logs show credentials:\n%s", logs.String())
	}
}
