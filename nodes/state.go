// Package nodes turns a catalog.Catalog into a go-fuse node tree: one unexported type per kind
// of node (root, run directory, stream directory, document file, field file, symlink), inode
// numbers hashed from paths, and the errno mapping. It caches what it reads from the catalog:
// the list of runs for ListTTL, a finished run for good (bounded by MaxRuns), a live run for
// LiveTTL.
//
// The layout it serves is ../shared/docs/DESIGN.md's:
//
//	<uid>/start.json stop.json <stream>/{descriptors.json, time.npy, time.csv, <field>.npy,
//	<field>.csv, timestamps/<field>.npy, config/<object>.json}; by-scan-id/<n>; latest
package nodes

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/table"
)

// Config is what the node tree needs. Catalog is required; the rest have defaults.
type Config struct {
	Catalog catalog.Catalog
	Logger  *slog.Logger
	Clock   catalog.Clock
	// Filter keeps only the runs whose start document it accepts (nil: all).
	Filter func(*catalog.Start) bool
	// IncludeField keeps only the data keys it accepts (nil: all).
	IncludeField func(name string) bool
	// ListTTL is how long a listing of the runs is reused before the catalog is asked again.
	ListTTL time.Duration
	// LiveTTL is how long a live run (no stop document) is reused, and the kernel cache
	// timeout of its entries.
	LiveTTL time.Duration
	// FinishedTTL is the kernel cache timeout for entries of finished runs (default ListTTL).
	FinishedTTL time.Duration
	// MaxRuns bounds how many opened runs are kept in memory.
	MaxRuns int
	// Filler reads external data through the handler registry (nil: an empty registry, so
	// external fields fail with EIO naming their spec).
	Filler *handlers.Filler
	// Cache keeps decoded columns of finished runs between reads and mounts (nil: memory
	// only, with larger columns re-read from the catalog per read).
	Cache *cache.Store
	// TableStats, if set, counts the table layer's work (scans, cache hits, frames filled).
	TableStats *table.Stats
	// Observe, if set, is told of every FUSE operation served: its name ("lookup",
	// "readdir", "open", "read", "getattr"), how long it took and its errno.
	Observe func(op string, took time.Duration, errno syscall.Errno)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = catalog.SystemClock{}
	}
	if c.Filter == nil {
		c.Filter = func(*catalog.Start) bool { return true }
	}
	if c.IncludeField == nil {
		c.IncludeField = func(string) bool { return true }
	}
	if c.ListTTL == 0 {
		c.ListTTL = 2 * time.Second
	}
	if c.LiveTTL == 0 {
		c.LiveTTL = time.Second
	}
	if c.FinishedTTL == 0 {
		// The kernel asks again after ListTTL: a run file changed or deleted under the mount
		// shows within about twice ListTTL (its version is checked once per ListTTL). The data
		// pages stay cached (KEEP_CACHE) or are read by the kernel itself (passthrough).
		c.FinishedTTL = c.ListTTL
	}
	if c.MaxRuns == 0 {
		c.MaxRuns = 256
	}
	if c.Filler == nil {
		c.Filler = handlers.NewFiller(handlers.FillerOptions{Logger: c.Logger, Clock: c.Clock})
	}
}

// state is shared by every node of one mount.
type state struct {
	cfg    Config
	log    *slog.Logger
	tables *table.Config
	group  singleflight.Group
	sums   summarizer // the catalog, when it lists without start documents and no Filter needs them

	mu       sync.Mutex
	list     *listing             // guarded by mu
	listedAt time.Time            // guarded by mu
	runs     map[string]*runState // guarded by mu
	logged   map[string]time.Time // failures logged recently, by path and error; guarded by mu
	outage   bool                 // listing is failing; guarded by mu
}

// listing is the set of runs at one moment, indexed for the root directory's lookups.
type listing struct {
	uids   []string // sorted
	starts map[string]*catalog.Start
	names  *catalog.RunNames // scan_ids, -N, uid prefixes
	latest string            // uid of the newest run
	file   map[string]string // uid -> its directory's name (names.go)
	byFile map[string]string // directory name -> uid
}

// runState is an opened run: its documents and its streams.
type runState struct {
	uid     string
	start   *catalog.Start
	stop    *catalog.Stop // nil while live
	descs   []*catalog.Descriptor
	streams map[string]*table.Stream
	names   []string // stream names, sorted
	ext     *table.Externals
	// hasResources: a data key is external, so the run has a files.txt. Decided from the
	// descriptors, so that opening a run costs no extra query.
	hasResources bool
	// version is the run's catalog.Versioner key ("" when it has none or is live): a finished
	// run is re-validated against the catalog's RunVersion at most once per ListTTL.
	version   string
	checkedAt time.Time // guarded by state.mu
	loadedAt  time.Time
	usedAt    time.Time // guarded by state.mu
}

func (r *runState) live() bool { return r.stop == nil }

func newState(cfg Config) *state {
	unfiltered := cfg.Filter == nil
	cfg.setDefaults()
	tables := &table.Config{Store: cfg.Cache, Filler: cfg.Filler, Logger: cfg.Logger, Stats: cfg.TableStats}
	st := &state{cfg: cfg, log: cfg.Logger, tables: tables, runs: map[string]*runState{}, logged: map[string]time.Time{}}
	if s, ok := cfg.Catalog.(summarizer); ok && unfiltered {
		st.sums = s
	}
	return st
}

// summarizer is a catalog that lists its runs without decoding their start documents
// (filestore, from its listing index): the root shows only uid, time and scan_id.
type summarizer interface {
	RunSummaries(ctx context.Context) ([]*catalog.Start, error)
}

// listing returns the runs, asking the catalog at most once per ListTTL. During an outage
// the last listing is returned at once and refreshed in the background, so that `ls` does not
// wait out the catalog's timeout again and again.
func (st *state) listing(ctx context.Context) (*listing, error) {
	st.mu.Lock()
	l, fresh := st.list, st.list != nil && st.cfg.Clock.Now().Sub(st.listedAt) < st.cfg.ListTTL
	stale := st.list != nil && st.outage
	st.mu.Unlock()
	switch {
	case fresh:
		return l, nil
	case stale:
		st.group.DoChan("\x00list", st.refreshListing)
		return l, nil
	}
	v, err, _ := st.group.Do("\x00list", st.refreshListing)
	if err != nil {
		return nil, err
	}
	return v.(*listing), nil
}

// refreshListing asks the catalog for the runs; shared by concurrent callers and detached
// from any one caller's cancellation.
func (st *state) refreshListing() (any, error) {
	list := st.cfg.Catalog.Runs
	if st.sums != nil {
		list = st.sums.RunSummaries
	}
	starts, err := list(context.Background())
	if err != nil {
		return st.listFailed(fmt.Errorf("list runs: %w", err))
	}
	l := st.newListing(starts)
	st.mu.Lock()
	if st.outage {
		st.log.Info("listing runs works again")
		st.outage = false
	}
	st.list, st.listedAt = l, st.cfg.Clock.Now()
	st.mu.Unlock()
	return l, nil
}

// listFailed serves the last listing while the catalog cannot list (a database that went
// away), logging once per outage and asking again only after ListTTL, so that a dead server
// does not make every `ls` wait for its timeout. With no listing yet, the error stands.
func (st *state) listFailed(err error) (*listing, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.outage {
		st.log.Error("listing runs failed; serving the last listing until it works again", "err", err)
		st.outage = true
	}
	if st.list == nil {
		return nil, err
	}
	st.listedAt = st.cfg.Clock.Now()
	return st.list, nil
}

// newListing indexes the runs the filter accepts. It keeps only what the root directory
// needs of each start document, so a listing of a large catalog holds no documents.
func (st *state) newListing(starts []*catalog.Start) *listing {
	l := &listing{starts: make(map[string]*catalog.Start, len(starts))}
	kept := make([]*catalog.Start, 0, len(starts))
	for _, full := range starts {
		if !st.cfg.Filter(full) {
			continue
		}
		s := full // a summary already (RunSummaries): shared, never modified
		if full.Doc != nil || full.Raw != nil {
			s = &catalog.Start{UID: full.UID, Time: full.Time, ScanID: full.ScanID, HasScan: full.HasScan, PlanName: full.PlanName}
		}
		l.starts[s.UID] = s
		l.uids = append(l.uids, s.UID)
		kept = append(kept, s)
	}
	if !slices.IsSorted(l.uids) { // catalogs list by uid
		slices.Sort(l.uids)
	}
	l.names = catalog.NewRunNames(kept)
	l.latest = l.names.Newest()
	l.file = fileNames(l.uids, rootReserved)
	l.byFile = make(map[string]string, len(l.file))
	for uid, f := range l.file {
		l.byFile[f] = uid
	}
	return l
}

// resolve turns a name in the root directory into a uid: a run's file name, else a name as
// databroker resolves it (catalog.RunNames: a scan_id, -N, a unique uid prefix).
func (l *listing) resolve(name string) (string, error) {
	if uid, ok := l.byFile[name]; ok {
		return uid, nil
	}
	return l.names.Resolve(name)
}

// run returns the opened run uid, loading it when it is not cached or is live and older than
// LiveTTL. Concurrent loads of one run share one load.
func (st *state) run(ctx context.Context, uid string) (*runState, error) {
	now := st.cfg.Clock.Now()
	st.mu.Lock()
	if r, ok := st.runs[uid]; ok && (!r.live() || now.Sub(r.loadedAt) < st.cfg.LiveTTL) {
		r.usedAt = now
		recheck := !r.live() && r.version != "" && now.Sub(r.checkedAt) >= st.cfg.ListTTL && now.Sub(r.loadedAt) >= st.cfg.ListTTL
		if recheck {
			r.checkedAt = now
		}
		st.mu.Unlock()
		if !recheck || st.sameVersion(ctx, r) {
			return r, nil
		}
		st.mu.Lock()
		if st.runs[uid] == r {
			delete(st.runs, uid) // the run's file changed: open it again
		}
	}
	st.mu.Unlock()
	v, err, _ := st.group.Do(uid, func() (any, error) {
		r, err := st.load(context.WithoutCancel(ctx), uid)
		st.mu.Lock()
		defer st.mu.Unlock()
		if err != nil {
			// A live run that cannot be re-read (the database went away) is served as last
			// read, and asked again after LiveTTL.
			if old, ok := st.runs[uid]; ok && !isNotFound(err) {
				if st.shouldLogLocked(uid, err) {
					st.log.Error("re-reading a live run failed; serving it as last read", "run", uid, "err", err)
				}
				old.loadedAt = st.cfg.Clock.Now()
				return old, nil
			}
			return nil, err
		}
		st.runs[uid] = r
		st.evict()
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*runState), nil
}

func (st *state) load(ctx context.Context, uid string) (*runState, error) {
	now := st.cfg.Clock.Now()
	r := &runState{uid: uid, streams: map[string]*table.Stream{}, loadedAt: now, usedAt: now}
	// A finished run whose documents are in the cache opens without the catalog's run.
	if rv, ok := st.cfg.Catalog.(catalog.RunVersioner); ok && st.tables.Store != nil {
		if v, err := rv.RunVersion(ctx, uid); err == nil && v != "" {
			if start, stop, descs, ok := st.loadSkeleton(v); ok && start.UID == uid {
				r.start, r.stop, r.descs, r.version = start, stop, descs, v
				run := &lazyRun{cat: st.cfg.Catalog, uid: uid, version: v, start: start, stop: stop, descs: descs}
				st.buildStreams(r, run, v)
				return r, nil
			}
		}
	}
	openCtx := ctx
	var pre *prescan
	if st.tables.Store != nil {
		pre = &prescan{st: st, uid: uid, done: make(chan struct{})}
		defer pre.finish()
		openCtx = catalog.WithEarlyRun(ctx, pre.early)
	}
	run, err := st.cfg.Catalog.Run(openCtx, uid)
	if err != nil {
		return nil, fmt.Errorf("open run %s: %w", uid, err)
	}
	r.start = run.Start()
	if r.stop, err = run.Stop(ctx); err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("read stop of run %s: %w", uid, err)
		}
		r.stop = nil
	}
	if r.descs, err = run.Descriptors(ctx); err != nil {
		return nil, fmt.Errorf("read descriptors of run %s: %w", uid, err)
	}
	// A finished run's columns may be kept in the cache under its version; a live run's never.
	var version string
	if v, ok := run.(catalog.Versioner); ok && r.stop != nil && st.tables.Store != nil {
		if version, err = v.Version(ctx); err != nil {
			st.log.Warn("cannot version a run for the cache; decoding it into memory", "run", uid, "err", err)
			version = ""
		}
	}
	r.version = version
	st.buildStreams(r, run, version)
	st.saveSkeleton(version, r)
	if pre != nil {
		pre.r = r
	}
	return r, nil
}

// prescan decodes the stream of a run's big events behind the run's index pass, while it runs
// (catalog.EarlyRun, table.Stream.Prescan): the first read of a big field then costs about
// one read of the run file, not the index pass and then the decode. What it decodes is
// committed only if the run, once open, has a stream of the same cache key.
type prescan struct {
	st   *state
	uid  string
	done chan struct{} // closed when load has ended
	r    *runState     // the run load made, nil when it failed; set before done is closed
}

// early is the catalog.EarlyRun of one load: it prescans the stream of desc, from the
// descriptors indexed so far.
func (p *prescan) early(run catalog.Run, desc string) {
	ctx := context.Background()
	v, ok := run.(catalog.Versioner)
	if !ok || run.Start() == nil || run.Start().UID != p.uid {
		return
	}
	version, err := v.Version(ctx)
	if err != nil || version == "" {
		return
	}
	descs, err := run.Descriptors(ctx)
	if err != nil {
		return
	}
	i := slices.IndexFunc(descs, func(d *catalog.Descriptor) bool { return d.UID == desc })
	if i < 0 {
		// Not indexed yet: the stream is not known (an unrelated one would be decoded for
		// nothing, its key then refused at the commit).
		return
	}
	name := descs[i].Name
	var mine []*catalog.Descriptor
	for _, d := range descs {
		if d.Name == name {
			mine = append(mine, d)
		}
	}
	s := table.NewStream(p.st.tables, run, nil, name, mine, p.st.cfg.IncludeField, version)
	s.Prescan(func() *table.Stream {
		<-p.done
		if p.r == nil || p.r.live() || p.r.version == "" {
			return nil
		}
		return p.r.streams[name]
	})
}

// finish ends the load: p.r is the run it made, nil when it failed.
func (p *prescan) finish() { close(p.done) }

// buildStreams groups a run's descriptors into streams.
func (st *state) buildStreams(r *runState, run catalog.Run, version string) {
	r.ext = table.NewExternals(run, st.cfg.Filler)
	for _, d := range r.descs {
		for _, dk := range d.DataKeys {
			r.hasResources = r.hasResources || dk.External
		}
	}
	byName := map[string][]*catalog.Descriptor{}
	for _, d := range r.descs {
		byName[d.Name] = append(byName[d.Name], d)
	}
	for name, descs := range byName {
		r.streams[name] = table.NewStream(st.tables, run, r.ext, name, descs, st.cfg.IncludeField, version)
		r.names = append(r.names, name)
	}
	sort.Strings(r.names)
}

// sameVersion reports whether a finished run is still what the catalog has; a catalog that
// cannot tell without opening the run, or fails to answer, keeps the run as it is.
func (st *state) sameVersion(ctx context.Context, r *runState) bool {
	rv, ok := st.cfg.Catalog.(catalog.RunVersioner)
	if !ok {
		return true
	}
	v, err := rv.RunVersion(ctx, r.uid)
	if err != nil && isNotFound(err) {
		return false
	}
	if err != nil || v == r.version {
		return true
	}
	st.log.Info("run changed in the catalog; reading it again", "run", r.uid)
	return false
}

// evict drops the least recently used finished runs beyond MaxRuns. Called with mu held.
func (st *state) evict() {
	for len(st.runs) > st.cfg.MaxRuns {
		var oldest *runState
		for _, r := range st.runs {
			if oldest == nil || r.usedAt.Before(oldest.usedAt) {
				oldest = r
			}
		}
		delete(st.runs, oldest.uid)
	}
}

// ttl is the kernel cache timeout for the entries of a run.
func (st *state) ttl(r *runState) time.Duration {
	if r.live() {
		return st.cfg.LiveTTL
	}
	return st.cfg.FinishedTTL
}

// observe reports an operation to Config.Observe; use as defer st.observe("read", time.Now(), &errno).
func (st *state) observe(op string, t0 time.Time, errno *syscall.Errno) {
	if st.cfg.Observe != nil {
		st.cfg.Observe(op, time.Since(t0), *errno)
	}
}
