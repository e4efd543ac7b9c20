package main

import (
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/brokerfs/brokerfs/handlers"
)

// fillerFlags are the flags of external data, shared by mount and cache prefetch.
type fillerFlags struct {
	rootMap      []string
	handlerCmds  []string
	cacheBytes   int64
	allowedRoots []string
	timeout      time.Duration
}

func (f *fillerFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVar(&f.rootMap, "root-map", nil, "OLD=NEW: read external files whose resource root is OLD under NEW (repeatable)")
	fl.StringArrayVar(&f.handlerCmds, "handler", nil, "SPEC=COMMAND: read resources of SPEC with an external program (repeatable; see handlers/external)")
	fl.Int64Var(&f.cacheBytes, "cache-size", 32<<20, "bytes of external data frames kept in memory for handlers' own reuse (filled frames live in the disk cache, --cache-max)")
	fl.StringSliceVar(&f.allowedRoots, "allowed-roots", nil, "DIR,...: handlers read only files under these directories (default: any)")
	fl.DurationVar(&f.timeout, "handler-timeout", handlers.DefaultCallTimeout, "the longest one handler call (open, read a frame) may take before it fails with EIO")
}

// filler makes the handler registry and filler of an opened source; rm is the root map
// already merged with the source's own.
func (f *fillerFlags) filler(src *source, rm handlers.RootMap, log *slog.Logger) (*handlers.Filler, error) {
	registry, err := newRegistry(f.handlerCmds, src.handlers, log)
	if err != nil {
		return nil, err
	}
	return handlers.NewFiller(handlers.FillerOptions{
		Registry:     registry,
		RootMap:      rm,
		Logger:       log,
		CacheBytes:   f.cacheBytes,
		AllowedRoots: f.allowedRoots,
		CallTimeout:  f.timeout,
		// A failing frame is remembered briefly, so a reader retrying it (readahead, mmap)
		// does not pay the retry window each time.
		NegativeTTL: handlers.DefaultNegativeTTL,
	}), nil
}
