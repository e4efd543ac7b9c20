package cache

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is a committed, validated entry: a directory of named files and the caller's meta blob.
type Entry struct {
	Key  string
	Meta []byte

	s         *Store
	hash, gen string
	dir       string
	files     []fileRec
	size      int64
	committed time.Time
}

// Files returns the names of the entry's files, in the order they were created.
func (e *Entry) Files() []string {
	names := make([]string, len(e.files))
	for i, f := range e.files {
		names[i] = f.Name
	}
	return names
}

// Committed returns when the entry was committed.
func (e *Entry) Committed() time.Time { return e.committed }

// Size returns the entry's bytes on disk: its files and its manifest.
func (e *Entry) Size() int64 { return e.size }

// Open opens one file of the entry for reading. It re-checks the file's size, ctime, inode and the
// CRC32C of its first and last 4 KiB against the manifest; on a mismatch (a file truncated,
// rewritten or deleted under the Store) it removes the entry and returns ErrMiss.
func (e *Entry) Open(name string) (*os.File, error) {
	var rec *fileRec
	for i := range e.files {
		if e.files[i].Name == name {
			rec = &e.files[i]
		}
	}
	if rec == nil {
		return nil, fmt.Errorf("open cache file %q: %w", name, fs.ErrNotExist)
	}
	f, err := os.OpenFile(filepath.Join(e.dir, name), os.O_RDONLY|noFollow, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP) {
			return nil, e.invalid(name, "file gone")
		}
		return nil, wrapErr("open cache file", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, wrapErr("stat cache file", err)
	}
	if why := recMismatch(rec, &st); why != "" {
		f.Close()
		return nil, e.invalid(name, why)
	}
	head, tail, err := checksums(f, rec.Size)
	if err != nil {
		f.Close()
		return nil, wrapErr("read cache file", err)
	}
	if head != rec.Head || tail != rec.Tail {
		f.Close()
		return nil, e.invalid(name, "checksum")
	}
	return f, nil
}

func (e *Entry) invalid(name, why string) error {
	e.s.misses.Add(1)
	level := slog.LevelInfo
	if why == "file gone" {
		level = slog.LevelDebug // evicted or removed, most likely: nothing to report
	}
	e.s.log.Log(context.Background(), level, "cache: entry changed, removed", "key", e.Key, "file", name, "why", why)
	e.s.removeInvalid(e.hash, e.gen)
	return fmt.Errorf("open cache file %s (%s): %w", name, why, ErrMiss)
}

// recMismatch says how the file st differs from what the manifest recorded; "" when it does not.
func recMismatch(rec *fileRec, st *unix.Stat_t) string {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "not a regular file"
	case st.Size != rec.Size:
		return "size"
	case st.Ctim.Nano() != rec.Ctime:
		return "ctime"
	case st.Ino != rec.Ino:
		return "inode"
	}
	return ""
}

// check reads and validates the committed entry h of key: manifest, key, TTL, and every file's
// type, size, ctime and inode. On failure it returns the manifest's gen when the manifest parsed;
// an error wrapping fs.ErrNotExist means there is no entry.
func (s *Store) check(h, key string) (*Entry, string, error) {
	dir := s.entryPath(h)
	mpath := filepath.Join(dir, manifestName)
	var st unix.Stat_t
	if err := unix.Lstat(mpath, &st); err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return nil, "", errCorrupt
		}
		return nil, "", &fs.PathError{Op: "lstat", Path: mpath, Err: err}
	}
	// A manifest already parsed, unchanged since (same inode, ctime and size), is not re-read.
	s.mu.Lock()
	cm, ok := s.manifests[h]
	s.mu.Unlock()
	m, mst := cm.m, cm.st
	if !ok || cm.st != statOf(&st) {
		var err error
		if m, mst, err = readManifest(mpath); err != nil {
			return nil, "", err
		}
		s.mu.Lock()
		if len(s.manifests) >= maxCachedManifests {
			clear(s.manifests)
		}
		s.manifests[h] = cachedManifest{st: mst, m: m}
		s.mu.Unlock()
	}
	msize := mst.size
	if string(m.Key) != key {
		return nil, m.Gen, errors.New("key differs")
	}
	if m.Boot != ([bootLen]byte{}) && m.Boot != s.boot {
		// Committed before its files were synced, by a kernel that has since stopped: the
		// files may have lost any part of what was written.
		return nil, m.Gen, errors.New("not synced before the machine restarted")
	}
	committed := time.Unix(0, m.Committed)
	if s.opts.TTL > 0 && s.now().Sub(committed) > s.opts.TTL {
		return nil, m.Gen, errors.New("expired")
	}
	size := msize
	for i := range m.Files {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, m.Files[i].Name), &st); err != nil {
			return nil, m.Gen, fmt.Errorf("stat %s: %w", m.Files[i].Name, errCorrupt)
		}
		if why := recMismatch(&m.Files[i], &st); why != "" {
			return nil, m.Gen, fmt.Errorf("%s: %s changed", m.Files[i].Name, why)
		}
		size += m.Files[i].Size
	}
	if m.Boot != ([bootLen]byte{}) && s.lazySync() {
		s.queueSync(h, m.Gen) // left unsynced by a Store that closed or died first
	}
	return &Entry{Key: key, Meta: bytes.Clone(m.Meta), s: s, hash: h, gen: m.Gen, dir: dir, files: m.Files,
		size: size, committed: committed}, m.Gen, nil
}

// Lookup returns the committed entry of key after validating it, and records the access for LRU.
// Anything not servable (absent, torn, another format version, expired, modified) is ErrMiss; all
// but absent entries are removed.
func (s *Store) Lookup(key string) (*Entry, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	h := hashKey(key)
	if meta, ok := s.queuedPut(key); ok {
		// Queued by PutLater and not yet committed: this Store sees it at once.
		s.hits.Add(1)
		return &Entry{Key: key, Meta: bytes.Clone(meta), s: s, hash: h, committed: s.now()}, nil
	}
	e, gen, err := s.check(h, key)
	if err != nil {
		s.misses.Add(1)
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Lstat(s.entryPath(h)); errors.Is(err, fs.ErrNotExist) {
				// A row without files (the entry deleted under the Store) would hold its
				// bytes: looked for in the background, as accesses are recorded.
				s.noteMiss(h)
				return nil, fmt.Errorf("lookup: %w", ErrMiss)
			}
			err = errors.New("no manifest") // deleted under the Store: the rest goes too
		}
		s.log.Info("cache: invalid entry removed", "key", key, "why", err)
		s.removeInvalid(h, gen)
		return nil, fmt.Errorf("lookup (%v): %w", err, ErrMiss)
	}
	s.noteAccess(h, e.gen)
	s.hits.Add(1)
	return e, nil
}

// noteAccess records an access to entry h of generation gen in memory, at most once per touchEvery
// per entry; applyAccesses writes it to the index within touchEvery, or before this Store next
// evicts. So Lookup never waits for the index, which another process may hold.
func (s *Store) noteAccess(h, gen string) {
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.touched[h]; ok && t.gen == gen && now >= t.at && now-t.at < int64(touchEvery) {
		return
	}
	if len(s.touched) >= maxCachedManifests {
		clear(s.touched)
	}
	s.touched[h] = touch{gen: gen, at: now}
	s.pending[h] = touch{gen: gen, at: now}
	if s.touchTimer == nil && !s.closed {
		s.touchTimer = time.AfterFunc(touchEvery, s.flushAccesses)
	}
}

// missCheck is a pending touch's time for a Lookup that found no entry directory.
const missCheck = -1

// noteMiss has the next write of accesses delete the row of entry h if it has no directory.
func (s *Store) noteMiss(h string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= maxCachedManifests {
		return // the rows left are found by the next Open that reconciles, or Commit
	}
	delete(s.touched, h)
	s.pending[h] = touch{at: missCheck}
	if s.touchTimer == nil && !s.closed {
		s.touchTimer = time.AfterFunc(touchEvery, s.flushAccesses)
	}
}

// applyMisses writes the pending accesses now if a Lookup missed since they were last written,
// so that what the index reports does not count rows without files.
func (s *Store) applyMisses() {
	s.mu.Lock()
	missed := false
	for _, t := range s.pending {
		if t.at == missCheck {
			missed = true
			break
		}
	}
	s.mu.Unlock()
	if missed {
		if err := s.writeTx(s.applyAccesses); err != nil {
			s.log.Warn("cache: record accesses", "err", err)
		}
	}
}

// flushAccesses writes the pending accesses; errors are logged (they cost LRU order only).
func (s *Store) flushAccesses() {
	s.bgMu.RLock() // Close waits for this to end before it closes the index
	defer s.bgMu.RUnlock()
	s.mu.Lock()
	s.touchTimer = nil
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	if err := s.writeTx(s.applyAccesses); err != nil {
		s.log.Warn("cache: record accesses", "err", err)
	}
}

// applyAccesses writes the pending accesses into the index. An access to an entry the index does
// not have (a directory left by a crash between rename and index commit: complete, but not
// accounted) removes that directory. Called in writeTx.
func (s *Store) applyAccesses(c *sql.Conn) error {
	s.mu.Lock()
	p := s.pending
	s.pending = map[string]touch{}
	s.mu.Unlock()
	ctx := context.Background()
	for h, t := range p {
		if t.at == missCheck {
			// A Lookup found no directory: a row without files would hold its bytes. The
			// directory is looked at again under the lock, as a commit renames under it.
			if _, err := os.Lstat(s.entryPath(h)); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if _, err := c.ExecContext(ctx, "DELETE FROM entries WHERE hash = ? AND kind = ?", h, kindEntry); err != nil {
				return wrapErr("remove cache entry", err)
			}
			continue
		}
		res, err := c.ExecContext(ctx,
			"UPDATE entries SET access = max(access, ?) WHERE hash = ? AND gen = ? AND kind = ?",
			t.at, h, t.gen, kindEntry)
		if err != nil {
			return wrapErr("record cache access", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			continue
		}
		var rows int
		if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM entries WHERE hash = ?", h).Scan(&rows); err != nil {
			return wrapErr("read cache index", err)
		}
		if rows == 0 {
			if err := s.removeInvalidTx(c, h, t.gen); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeInvalid removes entry h if it is still generation gen, or if its manifest does not parse
// (gen ""), so an entry that another process committed meanwhile is never removed. Errors are logged.
func (s *Store) removeInvalid(h, gen string) {
	err := s.writeTx(func(c *sql.Conn) error { return s.removeInvalidTx(c, h, gen) })
	if err != nil {
		s.log.Warn("cache: remove invalid entry", "err", err)
	}
}

func (s *Store) removeInvalidTx(c *sql.Conn, h, gen string) error {
	dir := s.entryPath(h)
	m, _, err := readManifest(filepath.Join(dir, manifestName))
	if err == nil && m.Gen != gen {
		return nil
	}
	if err := s.trash(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wrapErr("remove cache entry", err)
	}
	_, err = c.ExecContext(context.Background(), "DELETE FROM entries WHERE hash = ? AND kind = ?", h, kindEntry)
	return wrapErr("remove cache entry", err)
}

// Builder builds one entry in a private temp directory. Its methods are safe for concurrent use, but
// the files it creates are the caller's to write, before Commit.
type Builder struct {
	s               *Store
	key, hash, dir  string
	id              int64
	mu              sync.Mutex
	files           []*os.File // guarded by mu
	names           []string   // guarded by mu
	reserved        int64      // guarded by mu; bytes reserved in the index
	asked           int64      // guarded by mu; bytes asked for by Reserve (≤ reserved)
	done, committed bool       // guarded by mu
}

// Build starts a new entry for key in a private temp directory (tmp/<owner>.b<n>).
func (s *Store) Build(key string) (*Builder, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	id := s.nextID.Add(1)
	dir := filepath.Join(s.dir, tmpDir, fmt.Sprintf("%s.b%d", s.owner, id))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, wrapErr("create cache entry", err)
	}
	b := &Builder{s: s, key: key, hash: hashKey(key), dir: dir, id: id}
	s.builders[b] = struct{}{}
	return b, nil
}

// Create creates a new file of the entry. name is [A-Za-z0-9._-]+ (not "MANIFEST", ".", "..").
// Commit closes the returned file if the caller has not.
func (b *Builder) Create(name string) (*os.File, error) {
	if !validName(name) {
		return nil, fmt.Errorf("create cache file: invalid name %q", name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return nil, ErrClosed
	}
	f, err := os.OpenFile(filepath.Join(b.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
	if err != nil {
		return nil, wrapErr("create cache file", err)
	}
	b.files = append(b.files, f)
	b.names = append(b.names, name)
	return f, nil
}

// Reserve must precede writing n more bytes into the entry's files. It evicts least recently used
// entries (never those of an uncommitted Builder nor a sparse file a Sparse has open) until the
// bytes fit under the cap, and returns ErrFull, evicting nothing, when they cannot.
func (b *Builder) Reserve(n int64) error {
	if n < 0 {
		return fmt.Errorf("reserve cache space: negative %d", n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return ErrClosed
	}
	if b.asked+n <= b.reserved {
		b.asked += n
		return nil
	}
	// Space is granted in growing slices (up to grantMax beyond what is asked for), so that
	// a build writing many small columns costs a few index transactions, not one per column:
	// the index's lock is shared by every process using the directory.
	extra := min(max(b.reserved, grantMin), grantMax)
	if err := b.reserveLocked(b.asked+n-b.reserved, extra); err != nil {
		return err
	}
	b.asked += n
	return nil
}

// grantMin and grantMax bound the space a Builder reserves beyond what it was asked for.
const (
	grantMin = 1 << 20
	grantMax = 64 << 20
)

// reserveLocked reserves n bytes, and extra more when they fit without evicting anything.
func (b *Builder) reserveLocked(n, extra int64) error {
	if n == 0 {
		return nil
	}
	var got int64
	err := b.s.writeTx(func(c *sql.Conn) error {
		got = n + extra
		if max := b.s.opts.MaxBytes; max > 0 && extra > 0 {
			u, err := used(c)
			if err != nil {
				return err
			}
			if u+got > max {
				got = n // the extra only where it fits without evicting
			}
		}
		if got == n {
			if err := b.s.makeRoom(c, n); err != nil {
				return err
			}
		}
		_, err := c.ExecContext(context.Background(),
			`INSERT INTO reservations(owner, id, bytes) VALUES(?, ?, ?)
			 ON CONFLICT(owner, id) DO UPDATE SET bytes = bytes + excluded.bytes`, b.s.owner, b.id, got)
		return wrapErr("reserve cache space", err)
	})
	if err == nil {
		b.reserved += got
	}
	return err
}

// Commit seals the entry: it closes its files, records each file's size, ctime, inode and
// head/tail CRC32C, writes the manifest last, and renames the directory into place. The syncs
// that make it durable come after, in the background (durable.go), unless the boot id is
// unknown: then they come first. When
// another Store committed the same key first and its entry is valid, that entry is returned and
// this one discarded. On any error the entry is aborted. Bytes beyond those reserved are
// reserved here (ErrFull when they cannot be).
func (b *Builder) Commit(meta []byte) (*Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return nil, ErrClosed
	}
	e, err := b.commitLocked(meta)
	if err != nil || !b.committed {
		b.abortLocked()
	}
	return e, err
}

func (b *Builder) commitLocked(meta []byte) (*Entry, error) {
	s := b.s
	for _, f := range b.files {
		f.Close()
	}
	b.files = nil
	// syncNow: sync before the rename, as without a boot id nothing else could tell an entry
	// torn by a crash of the machine.
	syncNow := s.durable && !s.lazySync()
	recs, err := sealAll(b.dir, b.names, syncNow)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, rec := range recs {
		total += rec.Size
	}
	now := s.now()
	m := &manifest{Key: []byte(b.key), Gen: newGen(), Committed: now.UnixNano(), Meta: meta, Files: recs}
	if s.lazySync() {
		m.Boot = s.boot
	}
	data, err := encodeManifest(m)
	if err != nil {
		return nil, err
	}
	total += int64(len(data))
	if total > b.reserved {
		if err := b.reserveLocked(total-b.reserved, 0); err != nil {
			return nil, err
		}
	}
	if err := writeSync(filepath.Join(b.dir, manifestName), data, syncNow); err != nil {
		return nil, err
	}
	if syncNow {
		if err := s.syncDir(b.dir); err != nil {
			return nil, err
		}
	}
	final := s.entryPath(b.hash)
	var e *Entry
	renamed := false
	err = s.writeTx(func(c *sql.Conn) error {
		ctx := context.Background()
		v := &victim{hash: b.hash, kind: kindEntry}
		err := c.QueryRowContext(ctx, "SELECT gen, bytes FROM entries WHERE hash = ?", b.hash).Scan(&v.gen, &v.bytes)
		switch {
		case err == nil:
			if ex, _, err := s.check(b.hash, b.key); err == nil {
				e = ex // another commit won; this one is discarded by the caller's abort
				return nil
			}
			if err := s.evict(c, v); err != nil {
				return err
			}
		case errors.Is(err, sql.ErrNoRows):
			if err := s.trash(final); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return wrapErr("replace cache entry", err)
			}
		default:
			return wrapErr("read cache index", err)
		}
		if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
			return wrapErr("commit cache entry", err)
		}
		if err := os.Rename(b.dir, final); err != nil {
			return wrapErr("commit cache entry", err)
		}
		renamed = true
		if syncNow {
			if err := s.syncDir(filepath.Dir(final)); err != nil {
				return err
			}
		}
		if _, err := c.ExecContext(ctx, `INSERT INTO entries(hash, key, kind, bytes, committed, access, gen)
			VALUES(?, ?, ?, ?, ?, ?, ?)`, b.hash, []byte(b.key), kindEntry, total, m.Committed,
			now.UnixNano(), m.Gen); err != nil {
			return wrapErr("commit cache entry", err)
		}
		if _, err := c.ExecContext(ctx, "DELETE FROM reservations WHERE owner = ? AND id = ?",
			s.owner, b.id); err != nil {
			return wrapErr("commit cache entry", err)
		}
		b.committed = true
		e = &Entry{Key: b.key, Meta: meta, s: s, hash: b.hash, gen: m.Gen, dir: final, files: recs,
			size: total, committed: time.Unix(0, m.Committed)}
		return nil
	})
	if err != nil {
		b.committed = false
		if renamed {
			s.removeInvalid(b.hash, m.Gen)
		}
		return nil, err
	}
	if b.committed {
		b.done = true
		b.reserved = 0
		s.forget(b)
		s.written.Add(total)
		s.mu.Lock()
		s.touched[b.hash] = touch{gen: m.Gen, at: now.UnixNano()}
		s.mu.Unlock()
		if m.Boot != ([bootLen]byte{}) {
			s.queueSync(b.hash, m.Gen)
		}
	}
	return e, nil
}

// Abort removes the temp directory and releases the reservation. It is a no-op after Commit.
func (b *Builder) Abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.abortLocked()
}

func (b *Builder) abortLocked() {
	if b.done {
		return
	}
	b.done = true
	for _, f := range b.files {
		f.Close()
	}
	b.files = nil
	// Files first, then the reservation: the bytes leave the disk before others may take them.
	if err := os.RemoveAll(b.dir); err != nil {
		b.s.log.Warn("cache: remove aborted entry", "dir", b.dir, "err", err)
	}
	if b.reserved > 0 {
		err := b.s.writeTx(func(c *sql.Conn) error {
			_, err := c.ExecContext(context.Background(),
				"DELETE FROM reservations WHERE owner = ? AND id = ?", b.s.owner, b.id)
			return wrapErr("release cache reservation", err)
		})
		if err != nil {
			b.s.log.Warn("cache: release reservation", "err", err)
		}
		b.reserved = 0
	}
	b.s.forget(b)
}

func (s *Store) forget(b *Builder) {
	s.mu.Lock()
	delete(s.builders, b)
	s.mu.Unlock()
}

// sealParallel bounds the files sealed at once. Their fsyncs overlap: the file system writes
// the files' blocks together and commits its journal once for several of them, where one after
// the other waits for a journal commit each (a stream's entry holds a few files per field).
const sealParallel = 8

// sealAll seals the files names of dir, in parallel, and returns their records in that order.
func sealAll(dir string, names []string, durable bool) ([]fileRec, error) {
	recs := make([]fileRec, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, sealParallel)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			recs[i], errs[i] = seal(filepath.Join(dir, name), durable)
			<-sem
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first: one line in the log, not one per file
		}
	}
	return recs, nil
}

// seal makes a written file read-only, syncs it (when durable) and records it.
func seal(path string, durable bool) (fileRec, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return fileRec{}, wrapErr("seal cache file", err)
	}
	defer f.Close()
	if err := f.Chmod(0o400); err != nil {
		return fileRec{}, wrapErr("seal cache file", err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fileRec{}, wrapErr("sync cache file", err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileRec{}, wrapErr("stat cache file", err)
	}
	rec := fileRec{Name: filepath.Base(path), Size: st.Size, Ctime: st.Ctim.Nano(), Ino: st.Ino}
	rec.Head, rec.Tail, err = checksums(f, st.Size)
	if err != nil {
		return fileRec{}, wrapErr("read cache file", err)
	}
	return rec, nil
}

// writeSync writes a new file and syncs it (when durable).
func writeSync(path string, data []byte, durable bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o400)
	if err != nil {
		return wrapErr("write cache manifest", err)
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return wrapErr("write cache manifest", err)
}

// syncDir makes a directory's entries durable, unless the Store is Temporary.
func (s *Store) syncDir(dir string) error {
	if !s.durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return wrapErr("sync cache dir", err)
	}
	err = d.Sync()
	d.Close()
	return wrapErr("sync cache dir", err)
}
