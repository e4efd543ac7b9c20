package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/brokerfs/brokerfs/config"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/builtin"
	"github.com/brokerfs/brokerfs/handlers/external"
)

// newRegistry composes the handler registry: the built-in handlers; then the specs a catalog
// configuration maps to built-ins (spec -> built-in spec); then --handler SPEC=COMMAND
// external programs, which replace whatever the spec had.
func newRegistry(handlerCmds []string, aliases map[string]string, log *slog.Logger) (*handlers.Registry, error) {
	var ext []builtin.External
	given := map[string]bool{}
	for _, hc := range handlerCmds {
		spec, command, err := external.ParseFlag(hc)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		ext = append(ext, builtin.External{Spec: spec, Command: command})
		given[spec] = true
	}
	reg := handlers.NewRegistry()
	if err := builtin.Register(reg, builtin.Options{External: ext}); err != nil {
		return nil, err
	}
	for spec, target := range aliases {
		if spec == target || given[spec] {
			continue
		}
		if err := reg.Alias(spec, target); err != nil {
			log.Warn("catalog handler registry", "spec", spec, "err", err)
		}
	}
	return reg, nil
}

// mergeRootMaps returns base with over's entries added, over winning.
func mergeRootMaps(base, over handlers.RootMap) handlers.RootMap {
	out := handlers.RootMap{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// cmdCatalogs lists the catalogs found in the user's configuration.
func cmdCatalogs(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("catalogs", stderr)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs catalogs\n\nLists the catalogs in intake YAML files and databroker configs, searched in:\n  %s\n",
			strings.Join(config.SearchPath(config.EnvFromOS()), "\n  "))
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	sources, errs := config.Discover(config.EnvFromOS())
	if err := config.Format(stdout, sources); err != nil {
		return err
	}
	for _, e := range errs {
		kind := "error"
		if errors.Is(e, config.ErrSkipped) {
			kind = "skipped"
		}
		fmt.Fprintf(stderr, "%s: %v\n", kind, e)
	}
	if len(sources) == 0 {
		fmt.Fprintf(stdout, "searched:\n  %s\n", strings.Join(config.SearchPath(config.EnvFromOS()), "\n  "))
	}
	return nil
}
