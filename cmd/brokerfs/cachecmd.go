package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/nodes"
	"github.com/brokerfs/brokerfs/table"
)

const cacheUsage = `Usage:
  brokerfs cache stat [--cache-dir DIR] [-v]       entries, bytes and the cap; -v lists entries
  brokerfs cache clear [--cache-dir DIR]           remove every entry no running brokerfs has open
  brokerfs cache prefetch [flags] SOURCE           decode every finished run (and, unless
                                                   --no-external, read its external frames) into
                                                   the cache, as the first reads of a mount would
`

func cmdCache(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, cacheUsage)
		if len(args) == 0 {
			return usageError{"want stat, clear or prefetch"}
		}
		return nil
	}
	switch args[0] {
	case "stat", "clear":
		return cacheStatClear(args[0], args[1:], stdout, stderr)
	case "prefetch":
		return cachePrefetch(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, cacheUsage)
	return usageError{fmt.Sprintf("unknown cache command %q", args[0])}
}

func cacheStatClear(cmd string, args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("cache "+cmd, stderr)
	dir := fl.String("cache-dir", defaultCacheDir(), "the cache directory")
	verbose := fl.BoolP("verbose", "v", false, "list the entries")
	unused := func() error { return nil }
	if cmd == "clear" {
		unused = rejectUnused(fl, "cache clear", "verbose")
	}
	fl.Usage = func() { fmt.Fprintf(stderr, "%s\nFlags:\n%s", cacheUsage, fl.FlagUsages()) }
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := unused(); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return usageError{"cache " + cmd + " takes no arguments"}
	}
	st, err := cache.Open(cache.Options{Dir: *dir})
	if err != nil {
		return fmt.Errorf("cache %s: %w", *dir, err)
	}
	defer st.Close()
	if cmd == "clear" {
		before := st.Stats()
		if err := st.Clear(); err != nil {
			return err
		}
		after := st.Stats()
		fmt.Fprintf(stdout, "%s: removed %d entries (%s); %d left in use by running mounts\n",
			*dir, before.Entries-after.Entries, humanBytes(before.Bytes-after.Bytes), after.Entries)
		return nil
	}
	s := st.Stats()
	fmt.Fprintf(stdout, "cache directory  %s\nentries          %d\non disk          %s\n", *dir, s.Entries, humanBytes(s.Bytes))
	if *verbose {
		es, err := st.Entries()
		if err != nil {
			return err
		}
		sort.Slice(es, func(i, j int) bool { return es[i].LastAccess.After(es[j].LastAccess) })
		fmt.Fprintf(stdout, "\n%-10s  %-19s  %s\n", "size", "last access", "entry")
		for _, e := range es {
			fmt.Fprintf(stdout, "%-10s  %-19s  %s\n", humanBytes(e.Size), e.LastAccess.Local().Format("2006-01-02 15:04:05"), describeKey(e.Key))
		}
	}
	return nil
}

// describeKey renders a cache key (NUL-separated parts, names from documents) as one safe line.
func describeKey(k string) string {
	parts := strings.Split(k, "\x00")
	for i, p := range parts {
		parts[i] = fmt.Sprintf("%q", p)
		parts[i] = parts[i][1 : len(parts[i])-1]
	}
	return strings.Join(parts, " | ")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), 0
	for f >= unit && u < 4 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[u-1])
}

func cachePrefetch(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("cache prefetch", stderr)
	var cf catalogFlags
	cf.register(fl)
	var ff fillerFlags
	ff.register(fl)
	var tf transformFlags
	tf.register(fl)
	noExternal := fl.Bool("no-external", false, "decode the events only; leave external frames to be read on demand")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs cache prefetch [flags] SOURCE\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return usageError{"want SOURCE"}
	}
	if cf.noCache {
		return usageError{"--no-cache: prefetch fills the cache; there would be nothing to fill"}
	}
	log := cf.logger(stderr)
	rm, err := handlers.ParseRootMap(ff.rootMap)
	if err != nil {
		return usageError{err.Error()}
	}
	include, err := cf.fieldFilter()
	if err != nil {
		return err
	}
	if err := tf.parse(); err != nil {
		return err
	}
	ctx := context.Background()
	src, err := cf.open(ctx, fl.Arg(0), log)
	if err != nil {
		return err
	}
	if err := tf.apply(ctx, src, log); err != nil {
		src.cat.Close()
		return err
	}
	defer src.cat.Close()
	filler, err := ff.filler(src, mergeRootMaps(src.rootMap, rm), log)
	if err != nil {
		return err
	}
	defer filler.Close()
	store, closeStore, err := cf.openCache(log)
	if err != nil {
		return err
	}
	defer closeStore()
	if store == nil {
		return fmt.Errorf("cache directory %s cannot be used (see the log above)", cf.cacheDir)
	}
	starts, err := src.cat.Runs(ctx)
	if err != nil {
		return err
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Time < starts[j].Time })
	cfg := nodes.Config{Catalog: src.cat, Logger: log, Filler: filler, Cache: store, IncludeField: include, TableStats: &table.Stats{}}
	t0 := time.Now()
	var runs, live, failed int
	var frames int64
	for _, s := range starts {
		res, err := nodes.Prefetch(ctx, cfg, s.UID, !*noExternal)
		frames += res.Frames
		switch {
		case err != nil:
			failed++
			log.Error("prefetch failed", "run", s.UID, "err", err)
		case res.Skipped:
			live++
		default:
			runs++
		}
	}
	ts := cfg.TableStats
	fmt.Fprintf(stdout, "prefetched %d runs in %v: %d streams decoded, %d already cached, %d external frames read; %d live runs skipped, %d failed\n",
		runs, time.Since(t0).Round(time.Millisecond), ts.Scans.Load(), ts.CacheHits.Load(), frames, live, failed)
	if failed > 0 {
		return fmt.Errorf("%d runs failed", failed)
	}
	return nil
}
