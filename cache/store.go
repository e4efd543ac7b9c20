package cache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite" // the index's database/sql driver
)

const (
	indexName    = "index.sqlite"
	entriesDir   = "entries"
	sparseDir    = "sparse"
	tmpDir       = "tmp"
	trashDir     = "trash"
	lockSuffix   = ".lock"
	indexVersion = 1
	busyTimeout  = 30 * time.Second
	// touchEvery coalesces the access times Lookup records: LRU order is kept to this granularity,
	// and accesses reach the index (in the background) within it.
	touchEvery = time.Second
	noFollow   = unix.O_NOFOLLOW
)

const (
	kindEntry  = 0
	kindSparse = 1
)

// Options configure a Store.
type Options struct {
	Dir       string        // created (0700) if missing; with Temporary and no Dir, a new temp dir
	MaxBytes  int64         // the most bytes of entry files (data + manifests) on disk at any moment; 0 means no cap
	TTL       time.Duration // entries older than TTL (since they were committed) are misses; 0: never
	Temporary bool          // Dir is private to this process and removed by Close (--no-cache)
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now

	// bootID overrides readBootID (tests: a restart of the machine is a new boot id).
	bootID func() ([bootLen]byte, bool)
	// holdSync: entries are never synced after their commit (tests: a Store that died first).
	holdSync bool
}

// Store is a cache directory shared by any number of Stores in any number of processes. Its methods
// are safe for concurrent use.
type Store struct {
	dir   string
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	owner string // "<pid>-<random>": names this Store's temp dirs, trash and reservations
	// durable: fsync what is committed. A Temporary Store skips it: its directory dies with it.
	durable bool
	// boot is the running kernel's boot id; zero when unknown, and then Commit syncs before
	// it renames (see durable.go).
	boot [bootLen]byte
	sync syncer   // entries committed but not yet synced
	lock *os.File // tmp/<owner>.lock, flock'd LOCK_EX for the Store's life: how others know it lives
	db   *sql.DB
	// wlock is index.lock, flock'd LOCK_EX around every write transaction. SQLite's own busy
	// wait polls with sleeps up to 100 ms and is not fair: under many short transactions
	// from several processes a waiter starved for seconds (a mount waited > 10 s to open
	// the index). A blocked flock is woken when the lock is released.
	wlock *os.File
	// newIndex: the index was created by this Store's open (first use, or a corrupt one
	// replaced), so the entries on disk must be reconciled with it.
	newIndex bool

	// txMu serialises this process's index write transactions (SQLite would, with busy waits).
	txMu sync.Mutex
	// bgMu is held (read) by background index writes; Close takes it to wait them out.
	bgMu sync.RWMutex

	mu       sync.Mutex
	closed   bool                  // guarded by mu
	pins     map[string]int        // sparse hash → open Sparse count; guarded by mu
	builders map[*Builder]struct{} // uncommitted builders; guarded by mu
	sparses  map[*Sparse]struct{}  // open Sparse handles; guarded by mu
	touched  map[string]touch      // hash → last access noted; guarded by mu
	pending  map[string]touch      // accesses not yet in the index; guarded by mu
	// touchTimer will write pending; guarded by mu
	touchTimer *time.Timer
	// manifests holds parsed manifests by entry hash; guarded by mu
	manifests map[string]cachedManifest

	nextID                           atomic.Int64
	hits, misses, evictions, written atomic.Int64
}

// maxCachedManifests bounds Store.manifests (and Store.touched): past it, they start over.
const maxCachedManifests = 1 << 14

type cachedManifest struct {
	st manifestStat
	m  *manifest
}

type touch struct {
	gen string
	at  int64
}

// Stats describe the cache. Entries, Bytes and Reserved are of the whole directory (all processes);
// Hits, Misses, Evictions and BytesWritten count what this Store did since Open.
type Stats struct {
	Entries      int64 // committed entries and sparse files
	Bytes        int64 // bytes of entry files on disk (data + manifests; sparse: header + filled units)
	Reserved     int64 // bytes reserved by builders not yet committed
	MaxBytes     int64 // this Store's cap; 0: none
	Hits         int64
	Misses       int64
	Evictions    int64
	BytesWritten int64 // bytes committed into entries and filled into sparse files
}

// EntryInfo describes one entry for listings (brokerfs cache stat).
type EntryInfo struct {
	Key        string
	Sparse     bool
	Size       int64
	LastAccess time.Time
	Committed  time.Time
}

// Open opens (creating if needed) the cache directory o.Dir. An error means the directory cannot be
// created or written; the caller logs it once and runs without a store.
func Open(o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("open cache: negative MaxBytes %d", o.MaxBytes)
	}
	if o.Dir == "" {
		if !o.Temporary {
			return nil, errors.New("open cache: no directory")
		}
		d, err := os.MkdirTemp("", "brokerfs-cache-")
		if err != nil {
			return nil, wrapErr("create cache dir", err)
		}
		o.Dir = d
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", o.Dir, err)
	}
	s := &Store{
		dir: dir, opts: o, log: o.Logger, now: o.Now, durable: !o.Temporary,
		pins: map[string]int{}, builders: map[*Builder]struct{}{}, sparses: map[*Sparse]struct{}{},
		touched: map[string]touch{}, pending: map[string]touch{}, manifests: map[string]cachedManifest{},
	}
	s.sync.queued, s.sync.closing = map[string]string{}, make(chan struct{})
	if s.durable {
		if o.bootID == nil {
			o.bootID = readBootID
		}
		if id, ok := o.bootID(); ok {
			s.boot = id
		}
	}
	if err := s.open(); err != nil {
		s.release()
		if o.Temporary {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	return s, nil
}

func (s *Store) open() error {
	for _, d := range []string{"", entriesDir, sparseDir, tmpDir, trashDir} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o700); err != nil {
			return wrapErr("create cache dir", err)
		}
	}
	if err := s.takeOwnerLock(); err != nil {
		return err
	}
	err := s.openIndex()
	if isCorruptIndex(err) {
		// The index is garbage: start a new one. Open then removes every entry, none having a row.
		s.log.Warn("cache: index corrupt, starting a new one", "dir", s.dir, "err", err)
		s.db.Close()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(filepath.Join(s.dir, indexName+suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return wrapErr("remove corrupt cache index", err)
			}
		}
		err = s.openIndex()
	}
	if err != nil {
		return err
	}
	return s.writeTx(func(c *sql.Conn) error {
		dead, err := s.sweepDead(c)
		if err != nil {
			return err
		}
		// Entry directories without a row (or rows without files) come from a process that
		// died inside a transaction, or from an index made anew: walking every entry under the
		// lock every other process needs is paid only then. (An entry whose files went away
		// otherwise is found when it is opened.)
		if dead == 0 && !s.newIndex {
			return nil
		}
		return s.reconcile(c)
	})
}

// isCorruptIndex reports whether err is SQLite's "not a database" or "corrupt".
func isCorruptIndex(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code()&0xff == sqliteNotADB || se.Code()&0xff == sqliteCorrupt)
}

// openIndex opens DIR/index.sqlite and creates its tables when new.
func (s *Store) openIndex() error {
	q := url.Values{}
	for _, p := range []string{
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"journal_mode(WAL)", "synchronous(NORMAL)", "wal_autocheckpoint(200)",
		"journal_size_limit(1048576)",
	} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + (&url.URL{Path: filepath.Join(s.dir, indexName)}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return wrapErr("open cache index", err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	s.db = db
	if s.wlock == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, writeLockName), os.O_RDWR|os.O_CREATE|noFollow, 0o600)
		if err != nil {
			return wrapErr("open cache index lock", err)
		}
		s.wlock = f
	}
	return s.writeTx(s.initSchema)
}

// takeOwnerLock creates tmp/<owner>.lock holding LOCK_EX. The file is locked under a temporary name
// and then renamed, so no other Store ever sees it unlocked while this one lives.
func (s *Store) takeOwnerLock() error {
	var rnd [4]byte
	rand.Read(rnd[:])
	s.owner = strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:])
	tmp := filepath.Join(s.dir, tmpDir, s.owner+".newlock")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
	if err != nil {
		return wrapErr("create cache lock", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(tmp)
		return wrapErr("lock cache", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, tmpDir, s.owner+lockSuffix)); err != nil {
		f.Close()
		os.Remove(tmp)
		return wrapErr("create cache lock", err)
	}
	s.lock = f
	return nil
}

func (s *Store) initSchema(c *sql.Conn) error {
	ctx := context.Background()
	var v int
	if err := c.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return wrapErr("read cache index", err)
	}
	switch v {
	case indexVersion:
		return nil
	case 0:
		s.newIndex = true
	default:
		return fmt.Errorf("open cache index: version %d, this brokerfs knows %d", v, indexVersion)
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS entries(
			hash TEXT PRIMARY KEY,
			key BLOB NOT NULL,
			kind INTEGER NOT NULL,
			bytes INTEGER NOT NULL,
			committed INTEGER NOT NULL,
			access INTEGER NOT NULL,
			gen TEXT NOT NULL,
			header BLOB, units INTEGER, unit_bytes INTEGER, bitmap BLOB)`,
		`CREATE INDEX IF NOT EXISTS entries_access ON entries(access)`,
		`CREATE TABLE IF NOT EXISTS reservations(
			owner TEXT NOT NULL, id INTEGER NOT NULL, bytes INTEGER NOT NULL,
			PRIMARY KEY(owner, id))`,
		fmt.Sprintf("PRAGMA user_version = %d", indexVersion),
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return wrapErr("create cache index", err)
		}
	}
	return nil
}

// writeTx runs fn in an IMMEDIATE transaction: the index's write lock, shared by every process,
// is held throughout, so the accounting fn reads is the accounting it changes. Every change of
// what is on disk under entries/ and sparse/ happens inside one.
func (s *Store) writeTx(fn func(c *sql.Conn) error) error {
	start := time.Now()
	s.txMu.Lock()
	defer s.txMu.Unlock()
	ctx := context.Background()
	c, err := s.db.Conn(ctx)
	if err != nil {
		return wrapErr("open cache index", err)
	}
	defer c.Close()
	if err := flockRetry(s.wlock, unix.LOCK_EX); err != nil {
		return wrapErr("lock cache index", err)
	}
	defer flockRetry(s.wlock, unix.LOCK_UN)
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return wrapErr("lock cache index", err)
	}
	locked := time.Now()
	defer func() {
		// The lock is shared by every process using the directory: a long wait or hold
		// stalls their reads too, and deserves a line saying who held it.
		if wait, hold := locked.Sub(start), time.Since(locked); wait > slowLock || hold > slowLock {
			s.log.Warn("cache: slow index transaction", "wait", wait.Round(time.Millisecond),
				"hold", hold.Round(time.Millisecond), "in", txCaller())
		}
	}()
	err = fn(c)
	var ca *commitAnyway
	if err != nil && !errors.As(err, &ca) {
		c.ExecContext(ctx, "ROLLBACK")
		return err
	}
	if _, cerr := c.ExecContext(ctx, "COMMIT"); cerr != nil {
		c.ExecContext(ctx, "ROLLBACK")
		return wrapErr("commit cache index", cerr)
	}
	if ca != nil {
		return ca.err
	}
	return nil
}

// writeLockName is the file flock'd around write transactions (see Store.wlock).
const writeLockName = "index.lock"

// flockRetry is flock(2), retried when a signal interrupts it.
func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// slowLock is how long a wait for the index lock or a hold of it may take before it is logged.
const slowLock = time.Second

// txCaller names the function that called writeTx, for the slow-transaction log line.
func txCaller() string {
	var pcs [1]uintptr
	if runtime.Callers(4, pcs[:]) == 0 {
		return "?"
	}
	f, _ := runtime.CallersFrames(pcs[:]).Next()
	return strings.TrimPrefix(f.Function, "github.com/brokerfs/brokerfs/")
}

// commitAnyway is returned by a writeTx function that failed after removing files: the rows of
// what it removed must go too, so the transaction commits, and writeTx returns err.
type commitAnyway struct{ err error }

func (e *commitAnyway) Error() string { return e.err.Error() }
func (e *commitAnyway) Unwrap() error { return e.err }

// Dir returns the cache directory.
func (s *Store) Dir() string { return s.dir }

// Close aborts this Store's uncommitted builders, closes its Sparse handles and releases the
// directory; with Temporary it removes the directory.
func (s *Store) Close() error {
	if s.isClosed() {
		return nil
	}
	s.closeSync()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.touchTimer != nil {
		s.touchTimer.Stop()
		s.touchTimer = nil
	}
	builders := make([]*Builder, 0, len(s.builders))
	for b := range s.builders {
		builders = append(builders, b)
	}
	sparses := make([]*Sparse, 0, len(s.sparses))
	for sp := range s.sparses {
		sparses = append(sparses, sp)
	}
	s.mu.Unlock()
	var errs []error
	for _, b := range builders {
		b.Abort()
	}
	for _, sp := range sparses {
		errs = append(errs, sp.Close())
	}
	errs = append(errs, s.writeTx(func(c *sql.Conn) error {
		if err := s.applyAccesses(c); err != nil {
			return err
		}
		_, err := c.ExecContext(context.Background(), "DELETE FROM reservations WHERE owner = ?", s.owner)
		return wrapErr("release reservations", err)
	}))
	s.bgMu.Lock()
	errs = append(errs, s.release())
	s.bgMu.Unlock()
	if s.opts.Temporary {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

// release closes the index and drops the owner lock.
func (s *Store) release() error {
	var err error
	if s.db != nil {
		err = s.db.Close()
	}
	if s.lock != nil {
		os.Remove(filepath.Join(s.dir, tmpDir, s.owner+lockSuffix))
		s.lock.Close()
	}
	if s.wlock != nil {
		s.wlock.Close()
	}
	return err
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// hashKey names an entry's directory: keys are untrusted strings.
func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// hashSparse names a sparse file; its own domain, so one key may name an entry and a sparse file.
func hashSparse(key string) string {
	h := sha256.Sum256([]byte("sparse\x00" + key))
	return hex.EncodeToString(h[:])
}

func (s *Store) entryPath(h string) string {
	return filepath.Join(s.dir, entriesDir, h[:2], h)
}

func (s *Store) sparsePath(h, gen string) string {
	return filepath.Join(s.dir, sparseDir, h+"-"+gen)
}

func newGen() string {
	var b [genHexLen / 2]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// used returns the bytes of all entries plus all reservations.
func used(c *sql.Conn) (int64, error) {
	var n int64
	err := c.QueryRowContext(context.Background(),
		`SELECT (SELECT COALESCE(SUM(bytes), 0) FROM entries) +
		        (SELECT COALESCE(SUM(bytes), 0) FROM reservations)`).Scan(&n)
	return n, wrapErr("read cache index", err)
}

// victim is an entry chosen for eviction; lock holds a sparse file's LOCK_EX until it is gone.
type victim struct {
	hash, gen string
	kind      int
	bytes     int64
	lock      *os.File
}

func (v *victim) release() {
	if v.lock != nil {
		v.lock.Close()
		v.lock = nil
	}
}

// makeRoom evicts least recently used entries until n more bytes fit under the cap. It evicts
// nothing when they cannot fit even after evicting everything evictable: ErrFull. Called in writeTx.
func (s *Store) makeRoom(c *sql.Conn, n int64) error {
	max := s.opts.MaxBytes
	if max == 0 {
		return nil
	}
	if n > max {
		return fmt.Errorf("reserve %d bytes (cap %d): %w", n, max, ErrFull)
	}
	// LRU order must include this Store's latest Lookups.
	if err := s.applyAccesses(c); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		u, err := used(c)
		if err != nil {
			return err
		}
		if u+n <= max {
			return nil
		}
		need := u + n - max
		vs, freed, err := s.pickVictims(c, need)
		if err != nil {
			return err
		}
		if freed >= need {
			for _, v := range vs {
				if err := s.evict(c, v); err != nil {
					for _, v := range vs {
						v.release()
					}
					return &commitAnyway{err}
				}
				s.evictions.Add(1)
			}
			continue // re-check: the index is the truth
		}
		for _, v := range vs {
			v.release()
		}
		if attempt > 0 {
			return fmt.Errorf("reserve %d bytes (cap %d, %d in use): %w", n, max, u, ErrFull)
		}
		// Reservations of processes that died may hold the space.
		if _, err := s.sweepDead(c); err != nil {
			return err
		}
	}
}

// pickVictims chooses entries in LRU order, skipping pinned ones, until need bytes are covered or
// none are left.
func (s *Store) pickVictims(c *sql.Conn, need int64) ([]*victim, int64, error) {
	rows, err := c.QueryContext(context.Background(),
		"SELECT hash, gen, kind, bytes FROM entries ORDER BY access, hash")
	if err != nil {
		return nil, 0, wrapErr("read cache index", err)
	}
	var all []*victim
	for rows.Next() {
		v := &victim{}
		if err := rows.Scan(&v.hash, &v.gen, &v.kind, &v.bytes); err != nil {
			rows.Close()
			return nil, 0, wrapErr("read cache index", err)
		}
		all = append(all, v)
	}
	if err := rows.Close(); err != nil {
		return nil, 0, wrapErr("read cache index", err)
	}
	var vs []*victim
	var freed int64
	for _, v := range all {
		if freed >= need {
			break
		}
		if !s.lockVictim(v) {
			continue
		}
		vs = append(vs, v)
		freed += v.bytes
	}
	return vs, freed, nil
}

// lockVictim reports whether v may be evicted: any entry, but a sparse file only when no Sparse of
// any process has it open (each holds LOCK_SH on it). It keeps the sparse file's LOCK_EX in v.
func (s *Store) lockVictim(v *victim) bool {
	if v.kind != kindSparse {
		return true
	}
	s.mu.Lock()
	pinned := s.pins[v.hash] > 0
	s.mu.Unlock()
	if pinned {
		return false
	}
	f, err := os.OpenFile(s.sparsePath(v.hash, v.gen), os.O_RDONLY|noFollow, 0)
	if err != nil {
		return true // no file: only the row is left
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	v.lock = f
	return true
}

// evict removes one entry's files and its row. Called in writeTx.
func (s *Store) evict(c *sql.Conn, v *victim) error {
	defer v.release()
	var err error
	if v.kind == kindSparse {
		err = os.Remove(s.sparsePath(v.hash, v.gen))
	} else {
		err = s.trash(s.entryPath(v.hash))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wrapErr("evict cache entry", err)
	}
	_, err = c.ExecContext(context.Background(), "DELETE FROM entries WHERE hash = ? AND gen = ?",
		v.hash, v.gen)
	return wrapErr("evict cache entry", err)
}

// trash removes an entry directory: renamed into trash/ first, so no reader ever sees part of an
// entry, then removed. A crash in between leaves trash/<owner>.<n>, which the next Open removes.
func (s *Store) trash(dir string) error {
	t := filepath.Join(s.dir, trashDir, fmt.Sprintf("%s.%d", s.owner, s.nextID.Add(1)))
	if err := os.Rename(dir, t); err != nil {
		return err
	}
	return os.RemoveAll(t)
}

// ownerOf returns the owner part of a name in tmp/ or trash/ ("<pid>-<rand>.<...>").
func ownerOf(name string) string {
	owner, _, _ := strings.Cut(name, ".")
	return owner
}

// alive reports whether the Store named owner still runs: it holds LOCK_EX on its lock file until
// it closes or dies, whatever its pid or pid namespace. For a dead owner it returns the lock file
// locked by the caller, to be removed after the owner's leftovers.
func (s *Store) alive(owner string) (bool, *os.File) {
	if owner == s.owner {
		return true, nil
	}
	f, err := os.OpenFile(filepath.Join(s.dir, tmpDir, owner+lockSuffix), os.O_RDWR|noFollow, 0)
	if err != nil {
		return false, nil
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return true, nil
	}
	return false, f
}

// sweepDead removes the temp dirs, trash and reservations of Stores that died without Close.
// Called in writeTx.
func (s *Store) sweepDead(c *sql.Conn) (int, error) {
	ctx := context.Background()
	owners := map[string]bool{}
	dead := 0
	rows, err := c.QueryContext(ctx, "SELECT DISTINCT owner FROM reservations")
	if err != nil {
		return 0, wrapErr("read cache index", err)
	}
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err == nil {
			owners[o] = true
		}
	}
	rows.Close()
	var leftovers []string
	for _, d := range []string{tmpDir, trashDir} {
		des, err := os.ReadDir(filepath.Join(s.dir, d))
		if err != nil {
			return 0, wrapErr("read cache dir", err)
		}
		for _, de := range des {
			name := de.Name()
			if strings.HasSuffix(name, ".newlock") {
				// A lock file between create and rename, or left by a crash there: tiny; removed
				// once old enough that no Open can still be on its way.
				if fi, err := de.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
					os.Remove(filepath.Join(s.dir, d, name))
				}
				continue
			}
			owners[ownerOf(name)] = true
			leftovers = append(leftovers, filepath.Join(s.dir, d, name))
		}
	}
	for o := range owners {
		live, lock := s.alive(o)
		if live {
			continue
		}
		for _, p := range leftovers {
			if ownerOf(filepath.Base(p)) == o && !strings.HasSuffix(p, lockSuffix) {
				if err := os.RemoveAll(p); err != nil {
					s.log.Warn("cache: remove leftover", "path", p, "err", err)
				}
			}
		}
		if _, err := c.ExecContext(ctx, "DELETE FROM reservations WHERE owner = ?", o); err != nil {
			if lock != nil {
				lock.Close()
			}
			return dead, wrapErr("release reservations", err)
		}
		if lock != nil {
			os.Remove(filepath.Join(s.dir, tmpDir, o+lockSuffix))
			lock.Close()
		}
		s.log.Debug("cache: swept a dead process's leftovers", "owner", o)
		dead++
	}
	return dead, nil
}

// reconcile makes the index and the directory agree after crashes: rows whose files are gone are
// deleted, entry dirs and sparse files without a row are removed. Called in writeTx.
func (s *Store) reconcile(c *sql.Conn) error {
	ctx := context.Background()
	rows, err := c.QueryContext(ctx, "SELECT hash, gen, kind FROM entries")
	if err != nil {
		return wrapErr("read cache index", err)
	}
	type row struct {
		hash, gen string
		kind      int
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.hash, &r.gen, &r.kind); err != nil {
			rows.Close()
			return wrapErr("read cache index", err)
		}
		all = append(all, r)
	}
	rows.Close()
	known := map[string]bool{}
	for _, r := range all {
		p, name := filepath.Join(s.entryPath(r.hash), manifestName), r.hash
		if r.kind == kindSparse {
			p = s.sparsePath(r.hash, r.gen)
			name = filepath.Base(p)
		}
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			if _, err := c.ExecContext(ctx, "DELETE FROM entries WHERE hash = ?", r.hash); err != nil {
				return wrapErr("reconcile cache index", err)
			}
			continue
		}
		known[name] = true
	}
	subs, err := os.ReadDir(filepath.Join(s.dir, entriesDir))
	if err != nil {
		return wrapErr("read cache dir", err)
	}
	for _, sub := range subs {
		des, err := os.ReadDir(filepath.Join(s.dir, entriesDir, sub.Name()))
		if err != nil {
			continue
		}
		for _, de := range des {
			if !known[de.Name()] {
				if err := s.trash(filepath.Join(s.dir, entriesDir, sub.Name(), de.Name())); err != nil {
					s.log.Warn("cache: remove unindexed entry", "entry", de.Name(), "err", err)
				}
			}
		}
	}
	des, err := os.ReadDir(filepath.Join(s.dir, sparseDir))
	if err != nil {
		return wrapErr("read cache dir", err)
	}
	for _, de := range des {
		if !known[de.Name()] {
			os.Remove(filepath.Join(s.dir, sparseDir, de.Name()))
		}
	}
	return nil
}

// Stats returns the directory's totals and this Store's counters. Index errors are logged and leave
// the totals zero.
func (s *Store) Stats() Stats {
	st := Stats{
		MaxBytes: s.opts.MaxBytes, Hits: s.hits.Load(), Misses: s.misses.Load(),
		Evictions: s.evictions.Load(), BytesWritten: s.written.Load(),
	}
	if s.isClosed() {
		return st
	}
	s.applyMisses()
	ctx := context.Background()
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(bytes), 0),
		(SELECT COALESCE(SUM(bytes), 0) FROM reservations) FROM entries`).
		Scan(&st.Entries, &st.Bytes, &st.Reserved)
	if err != nil {
		s.log.Warn("cache: read stats", "err", err)
	}
	return st
}

// Entries lists the directory's entries, most recently used first.
func (s *Store) Entries() ([]EntryInfo, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	s.applyMisses()
	rows, err := s.db.QueryContext(context.Background(),
		"SELECT key, kind, bytes, access, committed FROM entries ORDER BY access DESC, hash")
	if err != nil {
		return nil, wrapErr("list cache entries", err)
	}
	defer rows.Close()
	var out []EntryInfo
	for rows.Next() {
		var key []byte
		var kind int
		var e EntryInfo
		var access, committed int64
		if err := rows.Scan(&key, &kind, &e.Size, &access, &committed); err != nil {
			return nil, wrapErr("list cache entries", err)
		}
		e.Key, e.Sparse = string(key), kind == kindSparse
		e.LastAccess, e.Committed = time.Unix(0, access), time.Unix(0, committed)
		out = append(out, e)
	}
	return out, wrapErr("list cache entries", rows.Err())
}

// Clear removes every entry that is not in use: all but the sparse files some Sparse (of this or
// another process) has open. Entries other processes have open are removed; their open files keep
// working.
func (s *Store) Clear() error {
	if s.isClosed() {
		return ErrClosed
	}
	s.dropPuts("")
	return s.writeTx(func(c *sql.Conn) error {
		if _, err := s.sweepDead(c); err != nil {
			return err
		}
		vs, _, err := s.pickVictims(c, 1<<62)
		if err != nil {
			return err
		}
		var errs []error
		for _, v := range vs {
			errs = append(errs, s.evict(c, v))
		}
		if err := errors.Join(errs...); err != nil {
			return &commitAnyway{err}
		}
		return nil
	})
}

// Remove removes the entry and the sparse file of key, if present. A sparse file that a Sparse has
// open is not removed: ErrBusy.
func (s *Store) Remove(key string) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.dropPuts(key)
	return s.writeTx(func(c *sql.Conn) error {
		// Both kinds are checked before anything is removed: a busy sparse file removes nothing.
		var vs []*victim
		defer func() {
			for _, v := range vs {
				v.release()
			}
		}()
		for _, h := range []string{hashKey(key), hashSparse(key)} {
			v := &victim{hash: h}
			err := c.QueryRowContext(context.Background(),
				"SELECT gen, kind, bytes FROM entries WHERE hash = ?", h).Scan(&v.gen, &v.kind, &v.bytes)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return wrapErr("read cache index", err)
			}
			if !s.lockVictim(v) {
				return fmt.Errorf("remove cache entry: %w", ErrBusy)
			}
			vs = append(vs, v)
		}
		// An entry dir without a row (a crash between rename and index commit) goes too.
		if err := s.trash(s.entryPath(hashKey(key))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return wrapErr("remove cache entry", err)
		}
		for _, v := range vs {
			if err := s.evict(c, v); err != nil {
				return &commitAnyway{err}
			}
		}
		return nil
	})
}
