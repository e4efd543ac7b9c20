package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/catalog/mongo"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
	"github.com/brokerfs/brokerfs/catalog/tiled"
	"github.com/brokerfs/brokerfs/config"
	"github.com/brokerfs/brokerfs/handlers"
)

// source is an opened SOURCE argument.
type source struct {
	cat    catalog.Catalog
	fsName string   // shown in /proc/mounts
	dirs   []string // directories the catalog reads, to refuse mounting inside them
	// From a catalog configuration: its root_map (flags win over it) and its handler
	// registry as spec -> built-in spec.
	rootMap  handlers.RootMap
	handlers map[string]string
	// transforms are the configuration's args.transforms: kind -> import path.
	transforms map[string]string
}

// openSource opens a directory, glob or file of suitcase run files, or a comma-separated list
// of them. A directory holds *.msgpack and/or *.jsonl files; a glob or file is chosen by its
// extension.
//
// SOURCE may also be a databroker-pack directory (holding catalog.yml) or the name of a
// catalog in the user's intake or databroker configuration (brokerfs catalogs lists them).
func openSource(ctx context.Context, arg string, cf *catalogFlags, log *slog.Logger) (*source, error) {
	if isMongoURI(arg) {
		return openMongo(ctx, arg, cf.assetDB, cf, log)
	}
	if tiled.IsURL(arg) {
		return openTiled(ctx, arg, cf, log)
	}
	if cf.assetDB != "" || cf.layout != "normalized" {
		return nil, usageError{"--asset-db and --layout apply to mongodb:// sources only"}
	}
	if fi, err := os.Stat(filepath.Join(arg, "catalog.yml")); err == nil && !fi.IsDir() {
		s, err := config.LoadPack(arg)
		if err != nil {
			return nil, err
		}
		return openConfigured(ctx, s, cf, log)
	}
	if _, err := os.Stat(arg); errors.Is(err, os.ErrNotExist) && !strings.ContainsAny(arg, "*?[,/") {
		s, err := config.Find(config.EnvFromOS(), arg)
		if err != nil {
			return nil, err
		}
		return openConfigured(ctx, s, cf, log)
	}
	var patterns []string
	src := &source{fsName: "brokerfs:" + arg}
	for _, p := range strings.Split(arg, ",") {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			src.dirs = append(src.dirs, p)
		case strings.HasSuffix(p, ".msgpack"), strings.HasSuffix(p, ".jsonl"):
			src.dirs = append(src.dirs, filepath.Dir(p))
		case err != nil && !strings.ContainsAny(p, "*?["):
			return nil, fmt.Errorf("source %s: %w", p, err)
		default:
			return nil, fmt.Errorf("source %s: not a directory and not a *.msgpack or *.jsonl glob or file", p)
		}
		patterns = append(patterns, p)
	}
	if len(patterns) == 0 {
		return nil, fmt.Errorf("source %q names no catalog", arg)
	}
	var err error
	src.cat, err = openFiles(patterns, []config.Kind{config.Msgpack, config.JSONL}, cf, log)
	return src, err
}

// openFiles opens run files of the given formats as one catalog (one listing, one duplicate
// rule across formats), with the listing index in the cache directory unless --no-cache.
func openFiles(patterns []string, kinds []config.Kind, cf *catalogFlags, log *slog.Logger) (catalog.Catalog, error) {
	var formats []*filestore.Format
	for _, k := range kinds {
		if k == config.Msgpack {
			formats = append(formats, msgpack.NewFormat(log))
		} else {
			formats = append(formats, jsonl.NewFormat(log))
		}
	}
	opts := filestore.Options{Logger: log}
	// An unusable cache directory is reported once, by the cache (openCache), not here too.
	if !cf.noCache && cf.cacheDir != "" && cacheDirUsable(cf.cacheDir) {
		opts.Index = filepath.Join(cf.cacheDir, "listing.sqlite")
	}
	return filestore.Open(patterns, formats, opts)
}

// openConfigured opens a catalog found in a configuration file.
func openConfigured(ctx context.Context, s *config.Source, cf *catalogFlags, log *slog.Logger) (*source, error) {
	for _, w := range s.Warnings {
		log.Warn("catalog configuration", "catalog", s.Name, "file", s.File, "warning", w)
	}
	src := &source{fsName: "brokerfs:" + s.Name, rootMap: s.RootMap, handlers: s.Handlers, transforms: s.Transforms}
	var err error
	switch s.Kind {
	case config.Msgpack, config.JSONL:
		for _, p := range s.Paths {
			src.dirs = append(src.dirs, filepath.Dir(p))
		}
		src.cat, err = openFiles(s.Paths, []config.Kind{s.Kind}, cf, log)
	case config.MongoNormalized:
		var m *source
		m, err = openMongo(ctx, s.MetadataURI, s.AssetURI, &catalogFlags{layout: "normalized", timeout: cf.timeout}, log)
		if m != nil {
			src.cat = m.cat
		}
	case config.MongoEmbedded:
		var m *source
		m, err = openMongo(ctx, s.EmbeddedURI, "", &catalogFlags{layout: "embedded", timeout: cf.timeout}, log)
		if m != nil {
			src.cat = m.cat
		}
	default:
		err = fmt.Errorf("catalog %s: unsupported kind %v", s.Name, s.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog %s (%s): %w", s.Name, s.File, err)
	}
	return src, nil
}

// refuseMountInside refuses a mountpoint inside a directory the catalog or root_map reads
// (or one holding such a directory): the mount would hide its own data, or list itself. Both
// are compared as given and with symlinks resolved, so that a catalog reached through a
// symlink (or a mountpoint that is one) is caught too; a glob's directories are its fixed
// leading part (/data/*/runs is /data).
func (s *source) refuseMountInside(mnt string, rm handlers.RootMap) error {
	ms := resolvedForms(mnt)
	if len(ms) == 0 {
		return nil
	}
	for _, d := range append(append([]string{}, s.dirs...), rm.Targets()...) {
		for _, a := range resolvedForms(globRoot(d)) {
			for _, m := range ms {
				if m == a || strings.HasPrefix(a, m+string(filepath.Separator)) || strings.HasPrefix(m, a+string(filepath.Separator)) {
					return fmt.Errorf("mountpoint %s overlaps %s, which the catalog reads; choose a mountpoint outside it", mnt, d)
				}
			}
		}
	}
	return nil
}

// resolvedForms returns path made absolute, and also with its symlinks resolved when that
// differs (and it exists).
func resolvedForms(path string) []string {
	a, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	out := []string{a}
	if r, err := filepath.EvalSymlinks(a); err == nil && r != a {
		out = append(out, r)
	}
	return out
}

// globRoot returns the leading part of a path up to its first element with glob characters:
// every path the glob matches lies under it.
func globRoot(p string) string {
	if !strings.ContainsAny(p, "*?[") {
		return p
	}
	var keep []string
	for _, e := range strings.Split(filepath.ToSlash(p), "/") {
		if strings.ContainsAny(e, "*?[") {
			break
		}
		keep = append(keep, e)
	}
	root := strings.Join(keep, "/")
	if root == "" {
		if filepath.IsAbs(p) {
			return string(filepath.Separator)
		}
		return "."
	}
	return filepath.FromSlash(root)
}

func isMongoURI(s string) bool {
	return strings.HasPrefix(s, "mongodb://") || strings.HasPrefix(s, "mongodb+srv://")
}

// openMongo opens a MongoDB catalog: the normalized layout (with the asset database's
// version sentinel checked) or the embedded one.
func openMongo(ctx context.Context, uri, assetURI string, cf *catalogFlags, log *slog.Logger) (*source, error) {
	opts := mongo.Options{Logger: log, Timeout: cf.timeout, Monitor: cf.mongoMonitor}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout+time.Second)
	defer cancel()
	var (
		cat *mongo.Catalog
		err error
	)
	switch cf.layout {
	case "normalized":
		cat, err = mongo.OpenNormalized(ctx, uri, assetURI, opts)
	case "embedded":
		if assetURI != "" {
			return nil, usageError{"--asset-db: the embedded layout keeps resources and datums in its own database"}
		}
		cat, err = mongo.OpenEmbedded(ctx, uri, opts)
	default:
		return nil, usageError{fmt.Sprintf("--layout %q: want normalized or embedded", cf.layout)}
	}
	if err != nil {
		return nil, err
	}
	// The redacted URI: credentials never reach /proc/mounts or logs.
	return &source{cat: cat, fsName: "brokerfs:" + cat.String()}, nil
}

// finder is a catalog that runs --query on its server.
type finder interface {
	catalog.Catalog
	Find(ctx context.Context, query map[string]any) ([]*catalog.Start, error)
}

// queried lists only the runs a server-side query finds.
type queried struct {
	finder
	query map[string]any
}

func (q queried) Runs(ctx context.Context) ([]*catalog.Start, error) { return q.Find(ctx, q.query) }

// filtered lists only the runs whose start document matches a query evaluated here.
type filtered struct {
	catalog.Catalog
	query *catalog.Query
}

func (f filtered) Runs(ctx context.Context) ([]*catalog.Start, error) {
	all, err := f.Catalog.Runs(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, s := range all {
		if f.query.Match(s.Doc) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Run refuses runs the query excludes, so that a uid typed by hand cannot reach them.
func (f filtered) Run(ctx context.Context, uid string) (catalog.Run, error) {
	r, err := f.Catalog.Run(ctx, uid)
	if err != nil {
		return nil, err
	}
	if !f.query.Match(r.Start().Doc) {
		return nil, fmt.Errorf("run %s does not match --query: %w", uid, catalog.ErrNotFound)
	}
	return r, nil
}

// withRunVersion keeps inner's catalog.RunVersioner visible through w, a query wrapper of
// it (queried, filtered): without it a remount would open every finished run again instead
// of from what the cache kept of it.
func withRunVersion(w, inner catalog.Catalog) catalog.Catalog {
	if rv, ok := inner.(catalog.RunVersioner); ok {
		return runVersioned{w, rv}
	}
	return w
}

type runVersioned struct {
	catalog.Catalog
	rv catalog.RunVersioner
}

func (c runVersioned) RunVersion(ctx context.Context, uid string) (string, error) {
	return c.rv.RunVersion(ctx, uid)
}
