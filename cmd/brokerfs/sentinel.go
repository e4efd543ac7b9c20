package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/brokerfs/brokerfs/catalog/mongo"
)

// cmdSentinel installs or checks databroker's version sentinel in a MongoDB asset database.
func cmdSentinel(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("sentinel", stderr)
	version := fl.Int("version", 1, "the asset registry version to install")
	timeout := fl.Duration("timeout", 10*time.Second, "server timeout")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs sentinel install|check [flags] URI\n\nURI names the asset database (resource, datum), e.g. mongodb://HOST/assets.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 2 {
		fl.Usage()
		return usageError{"want install or check, and URI"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	uri := fl.Arg(1)
	switch fl.Arg(0) {
	case "install":
		if err := mongo.InstallSentinel(ctx, uri, *version); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "installed version sentinel %d in %s\n", *version, mongo.Redact(uri))
	case "check":
		if err := mongo.CheckSentinel(ctx, uri); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: version sentinel present and current\n", mongo.Redact(uri))
	default:
		fl.Usage()
		return usageError{fmt.Sprintf("unknown sentinel command %q", fl.Arg(0))}
	}
	return nil
}
