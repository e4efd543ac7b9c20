package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/brokerfs/brokerfs/catalog/tiled"
)

// tiledFlags are the flags of http(s):// SOURCEs (tiled servers). The API key never comes
// from the command line (argv is world-readable in /proc): TILED_API_KEY or a file.
type tiledFlags struct {
	apiKeyFile  string
	maxRequests int
}

func (t *tiledFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&t.apiKeyFile, "api-key-file", "", "tiled: read the API key from FILE (default: $TILED_API_KEY)")
	fl.IntVar(&t.maxRequests, "max-requests", 8, "tiled: most requests in flight (and pooled connections)")
}

// tiledAPIKey returns the key from --api-key-file (first line, trimmed), else TILED_API_KEY.
func tiledAPIKey(file string, getenv func(string) string) (string, error) {
	if file == "" {
		return strings.TrimSpace(getenv("TILED_API_KEY")), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	key, _, _ := strings.Cut(string(b), "\n")
	key = strings.TrimSpace(key)
	if key == "" {
		return "", fmt.Errorf("--api-key-file %s: empty", file)
	}
	return key, nil
}

// openTiled opens an http(s)://HOST/api/v1[/PATH] SOURCE. The name shown in /proc/mounts and
// logs is the URL, which holds no secret (tiled.ParseURL refuses credentials in it).
func openTiled(ctx context.Context, arg string, cf *catalogFlags, log *slog.Logger) (*source, error) {
	if cf.assetDB != "" || cf.layout != "normalized" {
		return nil, usageError{"--asset-db and --layout apply to mongodb:// sources only"}
	}
	if cf.tiled.maxRequests <= 0 {
		return nil, usageError{"--max-requests: want at least 1"}
	}
	key, err := tiledAPIKey(cf.tiled.apiKeyFile, os.Getenv)
	if err != nil {
		return nil, err
	}
	cat, err := tiled.Open(ctx, arg, tiled.Options{APIKey: key, Timeout: cf.timeout, MaxRequests: cf.tiled.maxRequests, Logger: log})
	if err != nil {
		if errors.Is(err, tiled.ErrUnauthorized) {
			return nil, fmt.Errorf("open %s: %w", redactTiled(arg), err)
		}
		return nil, err
	}
	return &source{cat: cat, fsName: "brokerfs:" + cat.String()}, nil
}

// redactTiled is the SOURCE without anything after '?' or before '@'.
func redactTiled(arg string) string {
	base, path, err := tiled.ParseURL(arg)
	if err != nil {
		return "tiled URL"
	}
	return base.String() + "/" + strings.Join(path, "/")
}
