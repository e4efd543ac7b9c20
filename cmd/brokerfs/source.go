package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
	"github.com/brokerfs/brokerfs/handlers"
)

// source is an opened SOURCE argument.
type source struct {
	cat    catalog.Catalog
	fsName string   // shown in /proc/mounts
	dirs   []string // directories the catalog reads, to refuse mounting inside them
}

// openSource opens a directory, glob or file of suitcase run files, or a comma-separated list
// of them. A directory holds *.msgpack and/or *.jsonl files; a glob or file is chosen by its
// extension.
func openSource(arg string, log *slog.Logger) (*source, error) {
	var mp, jl []string
	src := &source{fsName: "brokerfs:" + arg}
	for _, p := range strings.Split(arg, ",") {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			src.dirs = append(src.dirs, p)
			mp = append(mp, filepath.Join(p, "*.msgpack"))
			jl = append(jl, filepath.Join(p, "*.jsonl"))
		case strings.HasSuffix(p, ".msgpack"):
			mp = append(mp, p)
			src.dirs = append(src.dirs, filepath.Dir(p))
		case strings.HasSuffix(p, ".jsonl"):
			jl = append(jl, p)
			src.dirs = append(src.dirs, filepath.Dir(p))
		case err != nil && !strings.ContainsAny(p, "*?["):
			return nil, fmt.Errorf("source %s: %w", p, err)
		default:
			return nil, fmt.Errorf("source %s: not a directory and not a *.msgpack or *.jsonl glob or file", p)
		}
	}
	if len(mp) == 0 && len(jl) == 0 {
		return nil, fmt.Errorf("source %q names no catalog", arg)
	}
	var cats multi
	if len(mp) > 0 {
		c, err := msgpack.Open(mp, msgpack.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		cats = append(cats, c)
	}
	if len(jl) > 0 {
		c, err := jsonl.Open(jl, jsonl.Options{Logger: log})
		if err != nil {
			cats.Close()
			return nil, err
		}
		cats = append(cats, c)
	}
	if len(cats) == 1 {
		src.cat = cats[0]
	} else {
		src.cat = cats
	}
	return src, nil
}

// refuseMountInside refuses a mountpoint inside a directory the catalog or root_map reads:
// the mount would hide its own data.
func (s *source) refuseMountInside(mnt string, rm handlers.RootMap) error {
	m, err := filepath.Abs(mnt)
	if err != nil {
		return err
	}
	for _, d := range append(append([]string{}, s.dirs...), rm.Targets()...) {
		a, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		if m == a || strings.HasPrefix(a, m+string(filepath.Separator)) || strings.HasPrefix(m, a+string(filepath.Separator)) {
			return fmt.Errorf("mountpoint %s overlaps %s, which the catalog reads; choose a mountpoint outside it", mnt, d)
		}
	}
	return nil
}

// multi joins catalogs, for a source with both msgpack and JSONL files.
type multi []catalog.Catalog

func (m multi) Runs(ctx context.Context) ([]*catalog.Start, error) {
	var all []*catalog.Start
	for _, c := range m {
		s, err := c.Runs(ctx)
		if err != nil {
			return nil, err
		}
		all = append(all, s...)
	}
	return all, nil
}

func (m multi) Run(ctx context.Context, uid string) (catalog.Run, error) {
	for _, c := range m {
		r, err := c.Run(ctx, uid)
		if err == nil || !errors.Is(err, catalog.ErrNotFound) {
			return r, err
		}
	}
	return nil, fmt.Errorf("run %s: %w", uid, catalog.ErrNotFound)
}

func (m multi) Close() error {
	var errs []error
	for _, c := range m {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
