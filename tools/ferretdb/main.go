// Command ferretdb runs FerretDB v1.24.2 (the MongoDB wire protocol over SQLite) for brokerfs's
// tests and demos. It embeds FerretDB through its ferretdb package, so that FerretDB's
// dependencies stay in this module and out of brokerfs's go.mod.
//
// It accepts the flags of FerretDB's own binary that brokerfs uses, so that either binary serves:
//
//	ferretdb --listen-addr=127.0.0.1:27018 --handler=sqlite --sqlite-url=file:DIR/ \
//	    --debug-addr=- --telemetry=disable --log-level=error
//
// The embedded FerretDB has no debug HTTP server and no telemetry: --debug-addr accepts only
// "-" (or empty) and --telemetry only "disable". It runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("ferretdb", flag.ContinueOnError)
	addr := fl.String("listen-addr", "127.0.0.1:27017", "listen TCP address")
	unix := fl.String("listen-unix", "", "listen Unix domain socket path")
	handler := fl.String("handler", "sqlite", "backend handler: sqlite or postgresql")
	sqliteURL := fl.String("sqlite-url", "file:data/", "SQLite URI (a directory) for the sqlite handler")
	pgURL := fl.String("postgresql-url", "postgres://127.0.0.1:5432/ferretdb", "PostgreSQL URL for the postgresql handler")
	debugAddr := fl.String("debug-addr", "-", `debug HTTP address; only "-" (none) is supported`)
	telemetry := fl.String("telemetry", "disable", `telemetry; only "disable" is supported`)
	level := fl.String("log-level", "error", "log level: debug, info, warn or error")
	version := fl.Bool("version", false, "print the FerretDB version and exit")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *version {
		fmt.Println("FerretDB", ferretVersion(), "(embedded in brokerfs tools/ferretdb)")
		return nil
	}
	if *debugAddr != "" && *debugAddr != "-" {
		return fmt.Errorf("--debug-addr=%s: this wrapper has no debug server; use -", *debugAddr)
	}
	if *telemetry != "disable" {
		return fmt.Errorf("--telemetry=%s: this wrapper supports only disable", *telemetry)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *addr, Unix: *unix},
		Logger:        logger,
		Handler:       *handler,
		SQLiteURL:     *sqliteURL,
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return f.Run(ctx)
}

// ferretVersion is the version of the FerretDB module this binary was built with.
func ferretVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/FerretDB/FerretDB" {
				return m.Version
			}
		}
	}
	return "(unknown version)"
}
