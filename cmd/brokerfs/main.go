// Command brokerfs mounts a catalog of Bluesky runs as a read-only file system.
//
//	brokerfs mount [flags] SOURCE MOUNTPOINT
//	brokerfs ls [flags] SOURCE [NAME...]
//	brokerfs demo [MOUNTPOINT]
//
// This file holds the subcommands and their flags; commands.go the table of commands that
// help, completion.go and manpage.go are made from; ls.go lists runs; source.go opens
// catalogs, demo.go writes the demo catalog.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	mongoevent "go.mongodb.org/mongo-driver/v2/event"

	"github.com/brokerfs/brokerfs/catalog"
	bfs "github.com/brokerfs/brokerfs/fs"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/builtin"
	"github.com/brokerfs/brokerfs/nodes"
	"github.com/brokerfs/brokerfs/table"
)

const usage = `brokerfs mounts a catalog of Bluesky runs as a read-only file system.

Usage:
  brokerfs mount [flags] SOURCE MOUNTPOINT   mount in the foreground; Ctrl-C or umount to stop
  brokerfs ls [flags] SOURCE [NAME...]       list the runs (or those NAMEs name) without mounting
  brokerfs catalogs                          the catalogs of your intake / databroker configs
  brokerfs sentinel install|check URI        databroker's version sentinel of a MongoDB asset database
  brokerfs copy [flags] SOURCE DEST          copy runs (and, on request, their files) to another store
  brokerfs cache stat|clear                  what the cache of decoded columns holds; empty it
  brokerfs cache prefetch [flags] SOURCE     decode runs (and read their external frames) into the cache
  brokerfs demo [MOUNTPOINT]                 write a demo catalog and mount it
  brokerfs install [PREFIX]                  copy brokerfs to PREFIX/bin (default /usr/local) and
                                             link /sbin/mount.fuse.brokerfs to it
  brokerfs install-helper [DIR]              link DIR/mount.fuse.brokerfs (default /sbin) for
                                             mount -t fuse.brokerfs and fstab
  brokerfs version                           version, commit and Go version (also --version)
  brokerfs completion bash|zsh|fish          a shell completion script
  brokerfs man                               the manual page (roff): brokerfs man | man -l -
  brokerfs help [COMMAND]                    flags of a command

SOURCE is a directory, a glob or a file of suitcase msgpack (*.msgpack) or JSONL (*.jsonl)
run files (several joined with commas), a mongodb:// URI of a metadata database, an
http(s)://HOST/api/v1[/PATH] URL of a tiled server (key from TILED_API_KEY or --api-key-file),
(--asset-db for a separate asset database, --layout embedded for the embedded layout), a
databroker-pack directory, or the NAME of a catalog in your intake or databroker configuration.

A run NAME (ls, and in the mount's root) is resolved as databroker's catalog[NAME]: digits are
a scan_id (the newest run with it), -1 the newest run, -2 the one before, anything else a uid
or a unique uid prefix of at least 5 characters.
`

func main() {
	if filepath.Base(os.Args[0]) == helperName {
		if err := runHelper(os.Args[1:], os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", helperName, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "mount":
		err = cmdMount(args[1:], stdout, stderr)
	case "ls":
		err = cmdLs(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "copy":
		err = cmdCopy(args[1:], stdout, stderr)
	case "cache":
		err = cmdCache(args[1:], stdout, stderr)
	case "catalogs":
		err = cmdCatalogs(args[1:], stdout, stderr)
	case "sentinel":
		err = cmdSentinel(args[1:], stdout, stderr)
	case "install-helper":
		err = cmdInstallHelper(args[1:], stdout, stderr)
	case "install":
		err = cmdInstall(args[1:], stdout, stderr)
	case "version", "--version":
		err = cmdVersion(args[1:], stdout, stderr)
	case "completion":
		err = cmdCompletion(args[1:], stdout, stderr)
	case "man":
		err = cmdMan(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		err = cmdHelp(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "brokerfs: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "brokerfs %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "brokerfs %s: %v\n", args[0], err)
		return 1
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// catalogFlags are the flags that choose and filter runs, shared by mount and ls.
type catalogFlags struct {
	query   string
	include []string
	exclude []string
	debug   bool
	assetDB string
	layout  string
	timeout time.Duration

	// The persistent cache (decoded columns, the listing index): see cachedir.go.
	cacheDir string
	noCache  bool
	cacheMax string
	cacheTTL time.Duration

	// mongoMonitor, when set (--metrics), sees every MongoDB command: catalog round trips.
	mongoMonitor *mongoevent.CommandMonitor

	tiled tiledFlags // http(s):// sources: tiled.go
	times timeFlags  // --since, --until: timerange.go
}

func (c *catalogFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&c.query, "query", "", "only runs whose start document matches this Mongo-style JSON query, e.g. '{\"plan_name\": \"scan\"}'")
	fl.StringArrayVar(&c.include, "include", nil, "only fields matching this glob (repeatable)")
	fl.StringArrayVar(&c.exclude, "exclude", nil, "leave out fields matching this glob (repeatable)")
	fl.BoolVar(&c.debug, "debug", false, "log debugging detail")
	fl.StringVar(&c.assetDB, "asset-db", "", "MongoDB: URI of the asset registry (resource, datum, sentinel) when it is not the metadata database")
	fl.StringVar(&c.layout, "layout", "normalized", "MongoDB: the catalog's layout, normalized or embedded")
	fl.DurationVar(&c.timeout, "timeout", 10*time.Second, "MongoDB and tiled: server selection and per-operation (per-request) timeout")
	fl.StringVar(&c.cacheDir, "cache-dir", defaultCacheDir(), "where decoded columns and the listing index are kept between mounts")
	fl.BoolVar(&c.noCache, "no-cache", false, "keep nothing on disk between mounts (decoded data lives in memory and temporary files only)")
	fl.StringVar(&c.cacheMax, "cache-max", "10G", "most disk the cache may use (K, M, G, T suffixes); least recently used entries go first")
	fl.DurationVar(&c.cacheTTL, "cache-ttl", 0, "re-validate cache entries older than this against the source (0: entries of finished runs never expire)")
	c.tiled.register(fl)
	c.times.register(fl)
}

func (c *catalogFlags) logger(stderr io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if c.debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// parseQuery parses --query with --since and --until added (nil when there is none).
func (c *catalogFlags) parseQuery() (map[string]any, *catalog.Query, error) {
	var raw map[string]any
	if c.query != "" {
		var q map[string]any
		dec := json.NewDecoder(strings.NewReader(c.query))
		dec.UseNumber()
		if err := dec.Decode(&q); err != nil {
			return nil, nil, usageError{fmt.Sprintf("--query: not a JSON object: %v", err)}
		}
		raw = catalog.FromJSON(q).(map[string]any)
	}
	raw, err := c.times.restrict(raw)
	if err != nil || raw == nil {
		return nil, nil, err
	}
	query, err := catalog.ParseQuery(raw)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("--query: %v", err)}
	}
	return raw, query, nil
}

// open opens SOURCE with --query applied: on the server for MongoDB, in brokerfs otherwise.
func (c *catalogFlags) open(ctx context.Context, arg string, log *slog.Logger) (*source, error) {
	raw, query, err := c.parseQuery()
	if err != nil {
		return nil, err
	}
	src, err := openSource(ctx, arg, c, log)
	if err != nil {
		return nil, err
	}
	if query != nil {
		if f, ok := src.cat.(finder); ok {
			src.cat = withRunVersion(queried{finder: f, query: raw}, src.cat)
		} else {
			src.cat = withRunVersion(filtered{Catalog: src.cat, query: query}, src.cat)
		}
	}
	return src, nil
}

// fieldFilter builds the --include / --exclude test on field names.
func (c *catalogFlags) fieldFilter() (func(string) bool, error) {
	for _, p := range append(append([]string{}, c.include...), c.exclude...) {
		if _, err := path.Match(p, ""); err != nil {
			return nil, usageError{fmt.Sprintf("bad field glob %q: %v", p, err)}
		}
	}
	if len(c.include) == 0 && len(c.exclude) == 0 {
		return nil, nil
	}
	match := func(globs []string, name string) bool {
		for _, g := range globs {
			if ok, _ := path.Match(g, name); ok {
				return true
			}
		}
		return false
	}
	return func(name string) bool {
		if len(c.include) > 0 && !match(c.include, name) {
			return false
		}
		return !match(c.exclude, name)
	}, nil
}

// mountMemoryLimit is the mount's soft memory limit. What it keeps is bounded (64 MiB per stream
// not in the cache, 32 MiB of frames, the listing), but Go's collector lets the heap grow to
// twice what is live between collections; near the limit it collects sooner instead.
const mountMemoryLimit = 192 << 20

// setMemoryLimit sets mountMemoryLimit unless GOMEMLIMIT says otherwise.
func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(mountMemoryLimit)
	}
}

func cmdMount(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("mount", stderr)
	var cf catalogFlags
	cf.register(fl)
	var (
		ff          fillerFlags
		tf          transformFlags
		opts        []string
		allowOther  bool
		debugFuse   bool
		liveTTL     time.Duration
		listTTL     time.Duration
		metricsAddr string
	)
	ff.register(fl)
	tf.register(fl)
	fl.StringArrayVarP(&opts, "option", "o", nil, "FUSE mount option, e.g. -o allow_other (repeatable; comma lists accepted)")
	fl.BoolVar(&allowOther, "allow-other", false, "let other users read the mount (non-root: needs user_allow_other in /etc/fuse.conf)")
	fl.BoolVar(&debugFuse, "debug-fuse", false, "log every FUSE request")
	fl.StringVar(&metricsAddr, "metrics", "", "HOST:PORT: serve Prometheus metrics at http://HOST:PORT/metrics (cache, FUSE operations, catalog round trips, handler reads)")
	fl.DurationVar(&liveTTL, "live-ttl", time.Second, "how long a live run's state is cached before it is re-read")
	fl.DurationVar(&listTTL, "list-ttl", 2*time.Second, "how long the list of runs is cached before the store is asked again")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs mount [flags] SOURCE MOUNTPOINT\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 2 {
		fl.Usage()
		return usageError{"want SOURCE and MOUNTPOINT"}
	}
	source, mnt := fl.Arg(0), fl.Arg(1)
	setMemoryLimit()
	if swappedMountArgs(source, mnt) {
		return usageError{fmt.Sprintf("arguments swapped? %s looks like a catalog and %s like a mountpoint; usage: brokerfs mount [flags] SOURCE MOUNTPOINT", mnt, source)}
	}
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
	var extra []string
	for _, o := range opts {
		for _, p := range strings.Split(o, ",") {
			switch p {
			case "":
			case "allow_other":
				allowOther = true
			case "rw":
				return usageError{"-o rw: brokerfs mounts are read-only"}
			default:
				extra = append(extra, p)
			}
		}
	}
	log := cf.logger(stderr)
	if err := bfs.ClearStaleMount(mnt, log); err != nil {
		return err
	}
	if err := bfs.CheckMountpoint(mnt); err != nil {
		return err
	}
	var met *metrics
	if metricsAddr != "" {
		met = newMetrics()
		cf.mongoMonitor = met.mongoMonitor()
	}
	src, err := cf.open(context.Background(), source, log)
	if err != nil {
		return err
	}
	if w, ok := src.cat.(interface{ Warm() }); ok {
		// A file catalog lists its runs while the mount is set up: the first ls of a large
		// catalog does not wait for the mount and then for the listing.
		w.Warm()
	}
	if err := tf.apply(context.Background(), src, log); err != nil {
		src.cat.Close()
		return err
	}
	defer src.cat.Close()
	rm = mergeRootMaps(src.rootMap, rm)
	if err := src.refuseMountInside(mnt, rm); err != nil {
		return err
	}
	filler, err := ff.filler(src, rm, log)
	if err != nil {
		return err
	}
	defer filler.Close()
	store, closeStore, err := cf.openCache(log)
	if err != nil {
		return err
	}
	defer closeStore()
	ncfg := nodes.Config{
		Cache:        store,
		Filler:       filler,
		Catalog:      src.cat,
		Logger:       log,
		IncludeField: include,
		LiveTTL:      liveTTL,
		ListTTL:      listTTL,
		TableStats:   &table.Stats{},
	}
	// libhdf5 loads its filter plugins on the first open of an HDF5 file: 5-20 ms from a
	// cold disk on the way to the first frame of a fresh mount. Done now, in the background.
	go builtin.Warm()
	if met != nil {
		ncfg.Observe = met.observe
		stop, err := met.serve(metricsAddr, store, ncfg.TableStats, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	root := nodes.NewRoot(ncfg)
	// Signals are caught from before the mount exists: a SIGTERM while go-fuse finishes
	// mounting must unmount, not kill the server and leave a stale mount.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	srv, err := bfs.Mount(mnt, root, bfs.Options{
		FsName:     src.fsName,
		AllowOther: allowOther,
		Extra:      extra,
		Debug:      debugFuse,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	log.Info("mounted", "source", src.fsName, "mountpoint", mnt)
	// The code a first request runs was never run: after the mount, its pages come from
	// disk one major fault at a time (5-8 faults of about 1 ms each on a fresh mount's first
	// frame after drop_caches). Mapped in now, in the background.
	go func() {
		t := time.Now()
		n := populateCode()
		log.Debug("code pages mapped in", "bytes", n, "took", time.Since(t))
	}()
	return serve(srv, mnt, sig, log)
}

// serve waits until the mount goes away (umount) or a signal asks to unmount it.
func serve(srv *bfs.Server, mnt string, sig <-chan os.Signal, log *slog.Logger) error {
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("unmounted", "mountpoint", mnt)
		return nil
	case s := <-sig:
		log.Info("unmounting", "signal", s.String(), "mountpoint", mnt)
		detached, err := srv.Unmount()
		if err != nil {
			return err
		}
		if detached {
			// Open files kept the mount busy; it is detached from the tree and goes away
			// with this process. Waiting for those files to close could take forever.
			log.Warn("the mount was busy and has been detached; open files in it now fail", "mountpoint", mnt)
			return nil
		}
		<-done
		return nil
	}
}
