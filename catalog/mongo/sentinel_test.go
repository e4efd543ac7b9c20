package mongo

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

func TestSentinel(t *testing.T) {
	srv := mongotest.Start(t)
	ctx := context.Background()
	mds, assets := srv.URI("s_mds"), srv.URI("s_assets")
	if err := InsertRun(ctx, mds, assets, catalogtest.Runs()[3]); err != nil {
		t.Fatal(err)
	}
	open := func() error {
		c, err := OpenNormalized(ctx, mds, assets, Options{})
		if err == nil {
			_ = c.Close()
		}
		return err
	}

	// Without a sentinel: refused, naming the sentinel and the command that installs it.
	err := open()
	if !errors.Is(err, ErrNoSentinel) {
		t.Fatalf("open without a sentinel: %v, want ErrNoSentinel", err)
	}
	for _, want := range []string{`collection "sentinel"`, "resource collection", "brokerfs sentinel install " + assets} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := CheckSentinel(ctx, assets); !errors.Is(err, ErrNoSentinel) {
		t.Errorf("CheckSentinel without one: %v", err)
	}

	// A sentinel in the metadata database does not count: the asset database needs it.
	if err := InstallSentinel(ctx, mds, SentinelVersion); err != nil {
		t.Fatal(err)
	}
	if err := open(); !errors.Is(err, ErrNoSentinel) {
		t.Errorf("open with the sentinel in the metadata database only: %v", err)
	}

	// Installed: opens; a second install is refused.
	if err := InstallSentinel(ctx, assets, SentinelVersion); err != nil {
		t.Fatal(err)
	}
	if err := open(); err != nil {
		t.Errorf("open with a sentinel: %v", err)
	}
	if err := CheckSentinel(ctx, assets); err != nil {
		t.Errorf("CheckSentinel: %v", err)
	}
	if err := InstallSentinel(ctx, assets, SentinelVersion); !errors.Is(err, ErrSentinelExists) {
		t.Errorf("second install: %v, want ErrSentinelExists", err)
	}

	// Another version: refused.
	other := srv.URI("s_v2")
	if err := InstallSentinel(ctx, other, 2); err != nil {
		t.Fatal(err)
	}
	if err := InstallSentinel(ctx, other, 1); !errors.Is(err, ErrSentinelExists) {
		t.Errorf("install over version 2: %v, want ErrSentinelExists", err)
	}
	err = CheckSentinel(ctx, other)
	if !errors.Is(err, ErrSentinelVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("CheckSentinel of version 2: %v, want ErrSentinelVersion naming version 2", err)
	}
	if c, err := OpenNormalized(ctx, mds, other, Options{}); !errors.Is(err, ErrSentinelVersion) {
		if c != nil {
			_ = c.Close()
		}
		t.Errorf("open with version 2: %v, want ErrSentinelVersion", err)
	}
}
