// Package filestore is what the file-backed catalogs (msgpack and JSONL run files) share:
// finding the run files (directories, globs, files), reading and caching their start
// documents, the one rule for two files that hold the same run, the listing index that lets a
// remount list by stat alone, and version keys for the persistent cache.
//
// You are under the concrete backends: catalog/msgpack and catalog/jsonl each describe their
// file format as a Format (how to read a start document, how to open a run); a Catalog lists
// the files of any mix of formats and hands a run to its format. cmd/brokerfs opens one Catalog
// per source with every format, so that a directory holding a.msgpack and a.jsonl of one run
// lists it once.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// ErrIncomplete is wrapped by a Format's ReadHead when the file does not hold a complete start
// document yet (a writer is creating it): the file is left out of the listing silently and
// read again when it changes.
var ErrIncomplete = errors.New("incomplete start document")

// Format is one kind of run file.
type Format struct {
	// Name names the format in log lines and in the listing index ("msgpack", "jsonl").
	Name string
	// Ext is the file name suffix (".msgpack") that picks the format's files in a directory
	// and decides a file's format when a Catalog has several.
	Ext string
	// ReadHead reads the start document at the beginning of r, the file name of size bytes
	// (read with ReadAt: pread on an open file). It returns the start and the bytes it was
	// parsed from, as stored in the file: the listing index keeps them and a later mount
	// parses them again with ParseHead instead of reading the file. The start may be a
	// summary (UID, Time, ScanID, HasScan and PlanName; Doc nil) when ParseHead of head
	// gives the whole document with the same fields, or the same error: the Catalog then
	// parses head when a run needs the document.
	ReadHead func(r io.ReaderAt, name string, size int64) (start *catalog.Start, head []byte, err error)
	// ParseHead parses bytes that ReadHead returned. raw, when not nil, is the Raw JSON of
	// the start it parsed them into before, so that it need not be made again.
	ParseHead func(head, raw []byte) (*catalog.Start, error)
	// HeadJSON, when not nil, is the start document of head (bytes ReadHead returned) as
	// JSON, as ParseHead would make Raw: the listing index stores it for a start that
	// ReadHead returned as a summary. Without it, ParseHead is used.
	HeadJSON func(head []byte) ([]byte, error)
	// Open opens the run that f held when it was listed. When the file changed since, the
	// run's start may differ from f.Start or the error may wrap fs.ErrNotExist: the Catalog
	// then lists again and retries once.
	Open func(ctx context.Context, f *File) (catalog.Run, error)
}

// headJSON is HeadJSON, or the Raw of ParseHead.
func (ft *Format) headJSON(head []byte) ([]byte, error) {
	if ft.HeadJSON != nil {
		return ft.HeadJSON(head)
	}
	s, err := ft.ParseHead(head, nil)
	if err != nil {
		return nil, err
	}
	return s.Raw, nil
}

// File is one run file as a listing saw it. It is immutable (a changed file gets a new File),
// except that the start document of a file listed from the listing index is read when it is
// first needed: a File that Catalog.Lookup returns or Format.Open receives has it.
type File struct {
	Path    string
	Format  *Format
	Size    int64
	ModTime time.Time
	Ino     uint64
	Dev     uint64
	Start   *catalog.Start // nil when the start cannot be read
	Head    []byte         // the start document as stored in the file (what ReadHead returned)

	sum      *catalog.Start // what a listing shows of Start: UID, Time, ScanID, HasScan, PlanName
	err      string         // why the start cannot be read ("" for ErrIncomplete)
	fromIx   bool           // the start came from the listing index: nothing to write back
	lazy     bool           // Start (and Head, unless fromHead) are to be read by load
	fromHead bool           // lazy, and load parses Head, read from the file with the summary
	statFD   bool           // not stat'ed yet: readHead takes the stat from the open file
	gone     bool           // readHead found no regular file at Path
	dino     uint64         // the inode number of its directory entry, when not stat'ed: the order of head reads
	loadMu   sync.Mutex     // serializes load
	loaded   atomic.Bool    // load set Start and Head
	stopped  atomic.Bool
}

// summary is what a listing keeps of a start document.
func summary(s *catalog.Start) *catalog.Start {
	if s == nil {
		return nil
	}
	return &catalog.Start{UID: s.UID, Time: s.Time, ScanID: s.ScanID, HasScan: s.HasScan, PlanName: s.PlanName}
}

// load reads the start document of a file listed from the listing index: from the index
// (d, when the caller fetched it already, else a query), else from the file itself while it is
// still the version listed. A file that changed gives an error wrapping fs.ErrNotExist; a
// failure is not remembered (the next use tries again).
func (c *Catalog) load(f *File, d *doc) error {
	if !f.lazy || f.loaded.Load() {
		return nil
	}
	f.loadMu.Lock()
	defer f.loadMu.Unlock()
	if f.loaded.Load() {
		return nil
	}
	if f.fromHead {
		// The listing read the file and kept the document's bytes: parse them (the same
		// bytes parse the same way every time, so a failure is final).
		s, err := f.Format.ParseHead(f.Head, nil)
		switch {
		case err != nil:
			return fmt.Errorf("%s: start document: %w", f.Path, err)
		case s.UID != f.sum.UID:
			return fmt.Errorf("%s: start document: uid %q, listed as %q", f.Path, s.UID, f.sum.UID)
		}
		f.Start = s
		f.loaded.Store(true)
		return nil
	}
	if d == nil && c.ix != nil {
		if x, ok := c.ix.startOf(f); ok {
			d = &x
		}
	}
	if d != nil {
		s, err := f.Format.ParseHead(d.head, d.raw)
		if err == nil && (f.sum == nil || s.UID == f.sum.UID) {
			f.Start, f.Head = s, d.head
			f.loaded.Store(true)
			return nil
		}
	}
	// Not in the index (another process replaced the row, or a head of another brokerfs
	// version no longer parses): the file, if it is still the version listed.
	g := &File{Path: f.Path, Format: f.Format, statFD: true}
	readHead(g)
	switch {
	case g.gone || g.Size != f.Size || !g.ModTime.Equal(f.ModTime) || g.Ino != f.Ino || g.Dev != f.Dev:
		return fmt.Errorf("%s changed since it was listed: %w", f.Path, fs.ErrNotExist)
	case g.sum == nil:
		return fmt.Errorf("%s: start document: %s", f.Path, g.err)
	case f.sum != nil && g.sum.UID != f.sum.UID:
		return fmt.Errorf("%s changed since it was listed: %w", f.Path, fs.ErrNotExist)
	}
	if err := c.load(g, nil); err != nil {
		return err
	}
	f.Start, f.Head = g.Start, g.Head
	f.loaded.Store(true)
	return nil
}

// loadAll loads the start documents of files, those the index holds in one query, parsing on
// every core.
func (c *Catalog) loadAll(files []*File) {
	want := map[string]*File{}
	lazy := false
	for _, f := range files {
		if f.lazy && !f.loaded.Load() {
			lazy = true
			if !f.fromHead {
				want[f.Path] = f
			}
		}
	}
	if !lazy {
		return
	}
	var docs map[string]doc
	if c.ix != nil && len(want) > 0 {
		docs = c.ix.starts(want)
	}
	parallel(len(files), func(i int) {
		f := files[i]
		if d, ok := docs[f.Path]; ok {
			c.load(f, &d)
		} else {
			c.load(f, nil)
		}
	})
}

// Version returns the file's version key (see VersionKey).
func (f *File) Version() string { return VersionKey(f.Path, f.Size, f.ModTime, f.Ino, f.Dev) }

// VersionKey names one state of a run file: its path, size, mtime (ns), inode and device. A
// rewrite (even to the same size), truncation, append or replacement by another file changes
// it, so it keys what the persistent cache decoded from the file (catalog.Versioner).
func VersionKey(path string, size int64, mtime time.Time, ino, dev uint64) string {
	b := make([]byte, 0, len(path)+64)
	b = append(b, "file:"...)
	b = strconv.AppendQuote(b, path)
	b = append(b, ':')
	b = strconv.AppendInt(b, size, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, mtime.UnixNano(), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, ino, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, dev, 10)
	return string(b)
}

// StatIDs returns the inode and device numbers of a stat (zero where the system has none).
func StatIDs(fi os.FileInfo) (ino, dev uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino), uint64(st.Dev) //nolint:unconvert // widths differ by platform
	}
	return 0, 0
}

// sameFile reports whether f is what the stat fi describes.
func (f *File) sameStat(fi os.FileInfo) bool {
	ino, dev := StatIDs(fi)
	return f.Size == fi.Size() && f.ModTime.Equal(fi.ModTime()) && f.Ino == ino && f.Dev == dev
}

// newer reports whether a wins over b when both hold the same run: the newer mtime, then the
// lexically smaller path (so the choice is stable across mounts and formats).
func newer(a, b *File) bool {
	if !a.ModTime.Equal(b.ModTime) {
		return a.ModTime.After(b.ModTime)
	}
	return a.Path < b.Path
}

// Options configure a Catalog.
type Options struct {
	// Logger receives one line per unreadable file, per duplicated run and per listing index
	// problem; nil means slog.Default().
	Logger *slog.Logger
	// Index is the path of the listing index (<cache dir>/listing.sqlite); "" means none.
	Index string
}

// checkDelay is how long after a listing from the index its check against the files begins.
const checkDelay = 500 * time.Millisecond

// headWorkers read start documents at once on a cold listing: reads of small heads are
// latency bound (disk queue, network file systems), so more of them than cores overlap.
const headWorkers = 32

// Catalog is a catalog of run files of one or more formats. It is safe for concurrent use.
type Catalog struct {
	patterns []string
	clean    []string // the patterns, filepath.Clean'ed
	formats  []*Format
	exts     []string
	log      *slog.Logger
	ix       *listing // nil without a listing index; set before ixLoaded is closed

	refreshMu sync.Mutex             // serializes refreshes
	files     map[string]*File       // by path; guarded by refreshMu
	dirs      map[string]*dirListing // directory listings; guarded by refreshMu
	dupLogged map[string]string      // loser path -> winner path already logged; guarded by refreshMu
	errLogged map[string]string      // path -> head error already logged; guarded by refreshMu
	ixLoaded  chan struct{}          // closed when ixRows and ixDirs are read from the index (nil without one)
	ixRows    map[string]*row        // the listing index, until the first refresh used it; guarded by refreshMu
	ixDirs    map[string]int64       // directory -> mtime (ns) as the index last listed it; guarded by refreshMu
	listed    bool                   // a listing was made; guarded by refreshMu
	bg        sync.WaitGroup         // the check of a listing made from the index
	closing   chan struct{}          // closed by Close
	closeOnce sync.Once

	warmMu  sync.Mutex
	warm    chan struct{} // the listing Warm started; closed when it is done; guarded by warmMu
	warmAt  time.Time     // when it was done; guarded by warmMu
	warmErr error         // its result; read after warm is closed

	mu    sync.RWMutex
	byUID map[string]*File // guarded by mu
	sums  []*catalog.Start // summaries of the runs of byUID, by uid; guarded by mu
}

var _ catalog.Catalog = (*Catalog)(nil)

// Open returns a catalog of the run files that patterns name, each a directory (its files
// ending in one of the formats' Ext), a glob or a file. Patterns are matched afresh by every
// Runs call, so files that appear, change or go away are noticed. With several formats, a
// file's format is the one whose Ext ends its name (others are left out); with one, every
// file matched is of that format.
func Open(patterns []string, formats []*Format, opts Options) (*Catalog, error) {
	if len(formats) == 0 {
		return nil, errors.New("open file catalog: no formats")
	}
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("open file catalog: pattern %q: %w", p, err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Catalog{
		patterns:  slices.Clone(patterns),
		formats:   formats,
		log:       log,
		files:     map[string]*File{},
		dirs:      map[string]*dirListing{},
		dupLogged: map[string]string{},
		errLogged: map[string]string{},
		byUID:     map[string]*File{},
		closing:   make(chan struct{}),
	}
	for _, f := range formats {
		c.exts = append(c.exts, f.Ext)
	}
	for _, p := range patterns {
		c.clean = append(c.clean, filepath.Clean(p))
	}
	if opts.Index != "" {
		// Opened and read in the background: the caller goes on to mount meanwhile, and the
		// first listing (which every use of c begins with) waits for it.
		c.ixLoaded = make(chan struct{})
		go func() {
			defer close(c.ixLoaded)
			if c.ix = openListing(opts.Index, log); c.ix != nil {
				c.ixRows, c.ixDirs = c.ix.load()
			}
		}()
	}
	return c, nil
}

// warmFresh is how long after it was made the listing that Warm started serves the first
// caller that did not wait for it.
var warmFresh = time.Second

// Warm starts the first listing now, in the background, so that it overlaps what the caller
// does before it needs the runs (brokerfs mount: mounting). The listing calls made while it
// runs wait for it and use it, and so does the first one within warmFresh after it, instead of
// listing again. Only the first call does anything.
func (c *Catalog) Warm() {
	c.warmMu.Lock()
	defer c.warmMu.Unlock()
	if c.warm != nil {
		return
	}
	w := make(chan struct{})
	c.warm = w
	c.bg.Go(func() {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-c.closing: // Close does not wait for a whole listing
				cancel()
			case <-ctx.Done():
			}
		}()
		err := c.refreshNow(ctx)
		cancel()
		c.warmMu.Lock()
		c.warmErr, c.warmAt = err, time.Now()
		c.warmMu.Unlock()
		close(w)
	})
}

// refresh lists the files again (refreshNow), unless the listing Warm started is running or
// was just made: then it is the listing.
func (c *Catalog) refresh(ctx context.Context) error {
	c.warmMu.Lock()
	w := c.warm
	if w != nil {
		select {
		case <-w:
			if time.Since(c.warmAt) > warmFresh {
				w = nil
			}
			c.warmAt = time.Time{} // used once after it was done
		default:
		}
	}
	c.warmMu.Unlock()
	if w == nil {
		return c.refreshNow(ctx)
	}
	select {
	case <-w:
		return c.warmErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Runs implements catalog.Catalog. After a remount it reads every start document from the
// listing index; RunSummaries does not.
func (c *Catalog) Runs(ctx context.Context) ([]*catalog.Start, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	files := make([]*File, 0, len(c.byUID))
	for _, f := range c.byUID {
		files = append(files, f)
	}
	c.mu.RUnlock()
	c.loadAll(files)
	starts := make([]*catalog.Start, 0, len(files))
	for _, f := range files {
		if !f.lazy || f.loaded.Load() { // else its file changed or cannot be read: left out
			starts = append(starts, f.Start)
		}
	}
	slices.SortFunc(starts, func(a, b *catalog.Start) int { return strings.Compare(a.UID, b.UID) })
	return starts, nil
}

// RunSummaries is Runs without the documents: each start has UID, Time, ScanID, HasScan and
// PlanName only (Doc and Raw are nil), as the listing index holds them, so that a remount
// lists its runs without decoding a start document. The starts are shared: do not modify them.
func (c *Catalog) RunSummaries(ctx context.Context) ([]*catalog.Start, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.sums), nil
}

// Lookup returns the file that holds run uid as last listed, listing again when the uid is
// unknown. It returns an error wrapping catalog.ErrNotFound when no file holds it, or one
// wrapping fs.ErrNotExist when its file changed since it was listed.
func (c *Catalog) Lookup(ctx context.Context, uid string) (*File, error) {
	f, err := c.lookup(ctx, uid)
	if err != nil {
		return nil, err
	}
	if err := c.load(f, nil); err != nil {
		return nil, err
	}
	return f, nil
}

// lookup is Lookup without the start document.
func (c *Catalog) lookup(ctx context.Context, uid string) (*File, error) {
	c.mu.RLock()
	f := c.byUID[uid]
	c.mu.RUnlock()
	if f != nil {
		return f, nil
	}
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	f = c.byUID[uid]
	c.mu.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("run %s: %w", uid, catalog.ErrNotFound)
	}
	return f, nil
}

// Run implements catalog.Catalog: the run as its file is now.
func (c *Catalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	for attempt := 0; attempt < 2; attempt++ {
		c.mu.RLock()
		f := c.byUID[uid]
		c.mu.RUnlock()
		if f != nil {
			err := c.load(f, nil)
			var r catalog.Run
			if err == nil {
				r, err = f.Format.Open(ctx, f)
			}
			switch {
			case err == nil && r.Start().UID == uid:
				c.noteStop(ctx, f, r)
				return r, nil
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Errorf("run %s: %w", uid, err)
			}
			// The file is gone or now holds another run: look again.
		}
		if attempt == 0 {
			if err := c.refresh(ctx); err != nil {
				return nil, err
			}
		}
	}
	return nil, fmt.Errorf("run %s: %w", uid, catalog.ErrNotFound)
}

// noteStop records the stop summary of a run in the listing index, once per file version:
// opening a run has read (or can cheaply read) its stop, and sqlite3 users and brokerfs ls
// want exit status and event counts without opening every file.
func (c *Catalog) noteStop(ctx context.Context, f *File, r catalog.Run) {
	if c.ix == nil || f.stopped.Swap(true) {
		return
	}
	s, err := r.Stop(ctx)
	if err != nil {
		return // live, or unreadable: the run's own reads report it
	}
	c.ix.putStop(f, s)
}

// Close implements catalog.Catalog: it waits for the listing index to be written.
func (c *Catalog) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	if c.ixLoaded != nil {
		<-c.ixLoaded
	}
	c.bg.Wait()
	if c.ix != nil {
		c.ix.close()
	}
	return nil
}

// format returns the format of a file at path, nil when none fits.
func (c *Catalog) format(path string) *Format {
	if len(c.formats) == 1 {
		return c.formats[0]
	}
	for _, f := range c.formats {
		if strings.HasSuffix(path, f.Ext) {
			return f
		}
	}
	return nil
}

// covers reports whether the catalog's patterns match path as a listing would: a file named
// by a pattern, a file of one of the formats in a directory named by one, or a glob match
// (dot files only when named).
func (c *Catalog) covers(path string) bool {
	base, dir := filepath.Base(path), filepath.Dir(path)
	for _, p := range c.clean {
		switch {
		case path == p:
			return true
		case base[0] == '.':
		case dir == p:
			for _, e := range c.exts {
				if strings.HasSuffix(base, e) {
					return true
				}
			}
		case hasMeta(p):
			if ok, _ := filepath.Match(p, path); ok {
				return true
			}
		}
	}
	return false
}

// fromIndex lists the files that the listing index holds for the catalog's patterns, as the
// index last saw them, without a stat. It returns nil when the index knows none.
func (c *Catalog) fromIndex() map[string]*File {
	files := map[string]*File{}
	for path, r := range c.ixRows {
		ft := c.format(path)
		if ft == nil || ft.Name != r.format || !c.covers(path) {
			continue
		}
		f := &File{Path: path, Format: ft, Size: r.size, ModTime: time.Unix(0, r.mtimeNS), Ino: r.ino, Dev: r.dev}
		f.fromRow(r)
		files[path] = f
	}
	if len(files) == 0 {
		return nil
	}
	return files
}

// fromRow takes f's start from its row of the listing index: the summary, the document
// itself on first use.
func (f *File) fromRow(r *row) {
	f.sum, f.err, f.fromIx = r.sum, r.err, true
	f.lazy = r.sum != nil || r.parse
	f.stopped.Store(r.hasStop)
}

// indexComplete reports whether the listing index lists every file the patterns match now:
// each directory they read has the mtime it had when the index listed it (so no file was
// added, removed or renamed in it since), and each file they name has a row. It costs a stat
// per pattern.
func (c *Catalog) indexComplete() bool {
	for _, p := range c.patterns {
		fi, err := os.Stat(p)
		dir := p
		switch {
		case err == nil && fi.IsDir():
		case err == nil:
			if c.ixRows[p] == nil {
				return false
			}
			continue
		case !hasMeta(p):
			continue // matches nothing
		default:
			d, _ := filepath.Split(p)
			if dir = filepath.Clean(d); hasMeta(dir) {
				return false // a glob over directories: only a listing tells
			}
			if fi, err = os.Stat(dir); err != nil || !fi.IsDir() {
				continue // matches nothing
			}
		}
		mtime, ok := c.ixDirs[filepath.Clean(dir)]
		if !ok || mtime != fi.ModTime().UnixNano() || time.Since(fi.ModTime()) < racyWindow {
			return false
		}
	}
	return true
}

// listedDirs returns the directories the last listing read whose listing is trustworthy (not
// changed within racyWindow), with their mtimes, where they differ from what the index holds.
func (c *Catalog) listedDirs() map[string]int64 {
	out := map[string]int64{}
	for key, l := range c.dirs {
		dir, _, _ := strings.Cut(key, "\x00")
		dir = filepath.Clean(dir)
		if time.Since(l.mtime) < racyWindow || c.ixDirs[dir] == l.mtime.UnixNano() {
			continue
		}
		out[dir] = l.mtime.UnixNano()
	}
	return out
}

// listIndexed publishes the first listing from the listing index alone and checks it against
// the files in the background: on a remount, the first ls does not wait for a stat of every
// file (cold, about 40 µs each), and what changed since the index was written shows up as
// soon as that check is done, well within --list-ttl. Runs are opened from the file as it
// is, whatever the listing said. It reports false, and the listing stats every file, when a
// directory changed since the index listed it (a file was added or removed) or the index
// knows none of the files.
func (c *Catalog) listIndexed() bool {
	if !c.indexComplete() {
		return false
	}
	files := c.fromIndex()
	if files == nil {
		return false
	}
	c.parseRows(files)
	for _, f := range files {
		if f.err != "" && c.errLogged[f.Path] != f.err {
			c.errLogged[f.Path] = f.err
			c.log.Warn(f.Format.Name+": skipping run file", "file", f.Path, "err", f.err)
		}
	}
	c.files = files
	c.publish()
	c.bg.Go(func() {
		// After a pause: the listing is served first, and the stat of every file would compete
		// with it for the disk and the cores.
		select {
		case <-time.After(checkDelay):
		case <-c.closing:
			return
		}
		if err := c.refreshNow(context.Background()); err != nil {
			c.log.Warn("list run files", "err", err)
		}
	})
	return true
}

// refreshNow matches the patterns, stats every file and reads the start of the new and changed
// ones (from the listing index where it knows the file as it is).
func (c *Catalog) refreshNow(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if !c.listed {
		c.listed = true
		if c.ixLoaded != nil {
			<-c.ixLoaded
		}
		if c.ixRows != nil && c.listIndexed() {
			return nil
		}
	}
	// A regular file that neither the last listing nor the index knows is not stat'ed
	// by path: reading its head takes the stat from the open file (one cold inode read,
	// overlapped with the others by the head workers, instead of two).
	known := func(path string) bool { return c.files[path] != nil || c.ixRows[path] != nil }
	found, err := find(c.patterns, c.exts, c.dirs, known)
	if err != nil {
		return err
	}
	files := make(map[string]*File, len(found))
	var todo, fromIx []*File
	for _, fd := range found {
		if fd.unstated {
			if files[fd.path] != nil {
				continue
			}
			if ft := c.format(fd.path); ft != nil {
				f := &File{Path: fd.path, Format: ft, statFD: true, dino: fd.ino}
				files[fd.path] = f
				todo = append(todo, f)
			}
			continue
		}
		if fd.fi == nil || !fd.fi.Mode().IsRegular() || files[fd.path] != nil {
			continue // gone, not a file, or matched by two patterns
		}
		if old := c.files[fd.path]; old != nil && old.sameStat(fd.fi) {
			files[fd.path] = old
			continue
		}
		ft := c.format(fd.path)
		if ft == nil {
			continue
		}
		ino, dev := StatIDs(fd.fi)
		f := &File{Path: fd.path, Format: ft, Size: fd.fi.Size(), ModTime: fd.fi.ModTime(), Ino: ino, Dev: dev}
		files[fd.path] = f
		if r := c.ixRows[fd.path]; r != nil && r.matches(f) {
			f.fromRow(r)
			fromIx = append(fromIx, f)
		} else {
			todo = append(todo, f)
		}
	}
	var gone []string
	for path := range c.ixRows {
		// A row of a file that is gone: forget it if it is ours (the index holds other
		// sources' files too).
		if files[path] == nil && c.covers(path) {
			if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
				gone = append(gone, path)
			}
		}
	}
	c.ixRows = nil // a file that changed later is read; the rows were needed once
	for path := range c.files {
		if files[path] == nil {
			gone = append(gone, path)
			delete(c.dupLogged, path)
			delete(c.errLogged, path)
		}
	}
	if len(fromIx) > 0 {
		m := make(map[string]*File, len(fromIx))
		for _, f := range fromIx {
			m[f.Path] = f
		}
		c.parseRows(m)
	}
	err = readHeads(ctx, todo)
	read := todo[:0:0]
	for _, f := range todo {
		switch {
		case f.gone || (err != nil && f.sum == nil && f.err == ""):
			delete(files, f.Path) // vanished or not a file; or not read: read it next time
		default:
			read = append(read, f)
		}
	}
	todo = read
	if err != nil {
		c.files = files
		c.publish()
		return err
	}
	for _, f := range append(fromIx, todo...) {
		switch {
		case f.err == "":
			delete(c.errLogged, f.Path)
		case c.errLogged[f.Path] != f.err:
			c.errLogged[f.Path] = f.err
			c.log.Warn(f.Format.Name+": skipping run file", "file", f.Path, "err", f.err)
		}
	}
	changed := len(todo) > 0 || len(fromIx) > 0 || len(gone) > 0
	c.files = files
	if changed {
		c.publish()
	}
	if c.ix != nil {
		dirs := c.listedDirs()
		if len(todo) > 0 || len(gone) > 0 || len(dirs) > 0 {
			c.ix.put(todo, gone, dirs)
			if c.ixDirs == nil {
				c.ixDirs = map[string]int64{}
			}
			maps.Copy(c.ixDirs, dirs)
		}
	}
	return nil
}

// parseRows loads the start documents of the files whose index row lacks a summary (rare: a
// start time SQLite cannot hold); one that cannot be loaded is dropped from files, and the
// check behind the listing reads its file.
func (c *Catalog) parseRows(files map[string]*File) {
	var todo []*File
	for _, f := range files {
		if f.lazy && f.sum == nil {
			todo = append(todo, f)
		}
	}
	c.loadAll(todo)
	for _, f := range todo {
		if !f.loaded.Load() {
			delete(files, f.Path)
			continue
		}
		f.sum = summary(f.Start)
	}
}

// readHeads reads the start documents of files (a file not read because ctx ended has
// neither sum nor err): in batches through io_uring where the kernel offers it and there are
// enough files for it to pay, else with a bounded pool of workers calling pread.
func readHeads(ctx context.Context, todo []*File) error {
	if len(todo) == 0 {
		return nil
	}
	if len(todo) >= ringMin {
		if done, err := readHeadsRing(ctx, todo); done {
			return err
		}
	}
	return readHeadsPread(ctx, todo)
}

// readHeadsPread reads the heads of files with headWorkers goroutines calling pread.
func readHeadsPread(ctx context.Context, todo []*File) error {
	work := make(chan *File)
	var wg sync.WaitGroup
	for range min(max(headWorkers, runtime.GOMAXPROCS(0)), len(todo)) {
		wg.Go(func() {
			for f := range work {
				readHead(f)
			}
		})
	}
	var err error
	for _, f := range todo {
		if err = ctx.Err(); err != nil {
			break
		}
		work <- f
	}
	close(work)
	wg.Wait()
	return err
}

// readHead reads one file's start document into f: one open, one fstat (when f.statFD: its
// stat is taken from the open file), a pread of the head (more only for a large start) and a
// close. A file that is gone or not a regular file sets f.gone when f.statFD.
func readHead(f *File) {
	fd := openHead(f)
	if fd < 0 {
		return
	}
	finishHead(f, fd, fdReader(fd))
}

// openHead opens f for reading its head and, when f.statFD, takes its stat from the open
// file. It returns the descriptor, or -1 when f is done with: gone, not a regular file, or
// failed (f.err says why).
func openHead(f *File) int { return openHeadFlags(f, 0) }

// openHeadFlags is openHead with extra open flags: O_DIRECT, which is dropped where the file
// system refuses it.
func openHeadFlags(f *File, extra int) int {
	fd, err := func() (int, error) {
		// O_NONBLOCK: a FIFO that took the place of a run file does not block the open.
		flags := syscall.O_RDONLY | syscall.O_CLOEXEC | syscall.O_NONBLOCK | extra
		fd, err := openEINTR(f.Path, flags)
		if err == syscall.EINVAL && extra != 0 {
			fd, err = openEINTR(f.Path, flags&^extra)
		}
		if err != nil {
			if f.statFD {
				// Gone, or unreadable: then it is listed with its error, as a stat saw it.
				fi, serr := os.Stat(f.Path)
				if serr != nil || !fi.Mode().IsRegular() {
					f.gone = true
					return -1, nil
				}
				f.Size, f.ModTime = fi.Size(), fi.ModTime()
				f.Ino, f.Dev = StatIDs(fi)
			}
			return -1, &fs.PathError{Op: "open", Path: f.Path, Err: err}
		}
		if f.statFD {
			var st syscall.Stat_t
			if err := fstat(fd, &st); err != nil {
				syscall.Close(fd)
				return -1, &fs.PathError{Op: "stat", Path: f.Path, Err: err}
			}
			if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
				syscall.Close(fd)
				f.gone = true
				return -1, nil
			}
			f.Size = st.Size
			f.ModTime = time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)) //nolint:unconvert // widths differ by platform
			f.Ino, f.Dev = uint64(st.Ino), uint64(st.Dev)                  //nolint:unconvert // widths differ by platform
		}
		return fd, nil
	}()
	if err != nil {
		setHeadErr(f, err)
	}
	return fd
}

// openEINTR is syscall.Open, retried on EINTR.
func openEINTR(path string, flags int) (int, error) {
	for {
		fd, err := syscall.Open(path, flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// finishHead reads f's start document through r (reading the file open as fd) and closes fd.
func finishHead(f *File, fd int, r io.ReaderAt) {
	defer syscall.Close(fd)
	s, head, err := f.Format.ReadHead(r, f.Path, f.Size)
	if err != nil {
		setHeadErr(f, err)
		return
	}
	if s.Doc == nil {
		f.Start, f.Head, f.lazy, f.fromHead = nil, head, true, true
	} else {
		f.Start, f.Head = s, head
	}
	if s.Doc == nil && s.Raw == nil {
		f.sum = s // a summary already, and nothing else holds it
	} else {
		f.sum = summary(s)
	}
}

// setHeadErr records why f's start cannot be read (nothing for ErrIncomplete: the file is
// left out silently).
func setHeadErr(f *File, err error) {
	f.Start, f.Head, f.sum = nil, nil, nil
	if !errors.Is(err, ErrIncomplete) {
		f.err = err.Error()
	}
}

// fstat is syscall.Fstat, retried on EINTR.
func fstat(fd int, st *syscall.Stat_t) error {
	for {
		if err := syscall.Fstat(fd, st); err != syscall.EINTR {
			return err
		}
	}
}

// fdReader reads an open file descriptor with pread, without the os.File around it (whose
// poller registration and cleanup cost more than a small head's read).
type fdReader int

func (fd fdReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := syscall.Pread(int(fd), p[done:], off+int64(done))
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return done, err
		case n == 0:
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

// publish rebuilds the uid map from the files, applying the duplicate rule.
func (c *Catalog) publish() {
	byUID := make(map[string]*File, len(c.files))
	for _, f := range c.files {
		if f.sum == nil {
			continue
		}
		uid := f.sum.UID
		if old := byUID[uid]; old != nil {
			winner, loser := f, old
			if newer(old, f) {
				winner, loser = old, f
			}
			if c.dupLogged[loser.Path] != winner.Path {
				c.dupLogged[loser.Path] = winner.Path
				c.log.Warn("two files hold one run, using the newer", "uid", uid, "file", winner.Path, "ignored", loser.Path)
			}
			f = winner
		}
		byUID[uid] = f
	}
	sums := make([]*catalog.Start, 0, len(byUID))
	for _, f := range byUID {
		sums = append(sums, f.sum)
	}
	slices.SortFunc(sums, func(a, b *catalog.Start) int { return strings.Compare(a.UID, b.UID) })
	c.mu.Lock()
	c.byUID, c.sums = byUID, sums
	c.mu.Unlock()
}
