package cache

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Commit does not wait for the disk. It writes the manifest with the boot id of the running
// kernel (manifest.Boot) and renames the entry into place without one fsync; the entry is served
// at once. A background worker then makes it durable: it fsyncs the entry's files and the
// directory it was renamed into, writes the same manifest with a zero boot id in tmp/, fsyncs
// it, renames it over MANIFEST (in a write transaction of the index, as every change under
// entries/) and fsyncs the entry's directory.
//
// Why this never serves a torn entry:
//   - A manifest is written only after every file of the entry is complete (closed by its
//     builder), so while the kernel runs, the page cache holds the files whole, whatever
//     happens to the process: a kill -9 loses nothing the page cache holds.
//   - A kernel crash or power loss may lose any unsynced data, but it also changes the boot id:
//     an entry whose manifest names another boot is a miss, and is removed, whatever its state.
//   - A manifest with a zero boot id is written only after the files and the directory holding
//     them were synced, so it is never on disk without them.
//   - A sync that fails (EIO from writeback) removes the entry: its pages may be gone.
//
// An entry left not durable by a Store that closed or died before syncing it is synced by the
// next Store that looks it up during the same boot.

// bootIDFile holds the running kernel's boot id, a random UUID drawn at boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// syncDelay is how long a committed entry waits before it is synced: its fsyncs then do not
// compete with the reads that usually follow a commit (the first reply of a mount).
const syncDelay = 200 * time.Millisecond

// closeSyncWait bounds how long Close goes on syncing entries still queued: past it, they
// stay not durable (served during this boot, rebuilt after a restart).
const closeSyncWait = 5 * time.Second

// readBootID returns the boot id of the running kernel, or false when it cannot be read: the
// Store then syncs every entry before committing it.
func readBootID() ([bootLen]byte, bool) {
	var id [bootLen]byte
	raw, err := os.ReadFile(bootIDFile)
	if err != nil {
		return id, false
	}
	h := strings.ReplaceAll(strings.TrimSpace(string(raw)), "-", "")
	if len(h) != 2*bootLen {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil || id == ([bootLen]byte{}) {
		return id, false
	}
	return id, true
}

// syncJob is an entry to make durable, or (put != nil) one to store (PutLater).
type syncJob struct {
	hash, gen string
	put       *putJob
	due       time.Time
}

type putJob struct {
	key  string
	meta []byte
}

// maxQueuedPuts bounds the PutLater calls waiting: past it, PutLater stores at once.
const maxQueuedPuts = 256

// syncer is a Store's queue of entries to make durable, run by one goroutine at a time.
type syncer struct {
	mu      sync.Mutex
	queued  map[string]string // hash → gen queued or done (or failed) by this Store
	jobs    []syncJob
	puts    map[string]*putJob // the put jobs queued or running, by key
	running bool
	closing chan struct{} // closed by Close: no more waiting for due times
	stopAt  time.Time     // set by Close: jobs not started by then are dropped
	wg      sync.WaitGroup
}

// lazySync reports whether commits leave syncing to the background (see manifest.Boot).
func (s *Store) lazySync() bool { return s.durable && s.boot != ([bootLen]byte{}) }

// queueSync queues entry h of generation gen to be made durable, once per Store.
func (s *Store) queueSync(h, gen string) {
	q := &s.sync
	q.mu.Lock()
	defer q.mu.Unlock()
	// While Close waits (stopAt set), the worker goes on queueing the syncs of what it puts;
	// past stopAt, the worker drops what is queued.
	if q.queued[h] == gen {
		return
	}
	if len(q.queued) >= maxCachedManifests && len(q.jobs) == 0 {
		clear(q.queued)
	}
	q.queued[h] = gen
	if s.opts.holdSync {
		return
	}
	q.jobs = append(q.jobs, syncJob{hash: h, gen: gen, due: time.Now().Add(syncDelay)})
	s.startWorkerLocked()
}

// queuePut queues a PutLater; false when the queue is full or closing.
func (s *Store) queuePut(key string, meta []byte) bool {
	q := &s.sync
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopAt.IsZero() || len(q.puts) >= maxQueuedPuts {
		return false
	}
	if q.puts == nil {
		q.puts = map[string]*putJob{}
	}
	p := &putJob{key: key, meta: meta}
	q.puts[key] = p
	q.jobs = append(q.jobs, syncJob{put: p, due: time.Now().Add(syncDelay)})
	s.startWorkerLocked()
	return true
}

// dropPuts forgets the queued put of key, or every queued put when key is "".
func (s *Store) dropPuts(key string) {
	q := &s.sync
	q.mu.Lock()
	defer q.mu.Unlock()
	if key == "" {
		clear(q.puts)
	} else {
		delete(q.puts, key)
	}
}

// queuedPut returns the meta of a put of key still queued.
func (s *Store) queuedPut(key string) ([]byte, bool) {
	q := &s.sync
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.puts[key]
	if !ok {
		return nil, false
	}
	return p.meta, true
}

// startWorkerLocked starts the worker unless it runs. Called with sync.mu held.
func (s *Store) startWorkerLocked() {
	q := &s.sync
	if !q.running {
		q.running = true
		q.wg.Add(1)
		go s.syncWorker()
	}
}

func (s *Store) syncWorker() {
	q := &s.sync
	defer q.wg.Done()
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 || (!q.stopAt.IsZero() && time.Now().After(q.stopAt)) {
			if n := len(q.jobs); n > 0 {
				s.log.Info("cache: closed with entries not yet synced or stored", "entries", n)
			}
			q.jobs, q.puts, q.running = nil, nil, false
			q.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		if wait := time.Until(j.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-q.closing:
				t.Stop()
			}
		}
		if j.put != nil {
			q.mu.Lock()
			current := q.puts[j.put.key] == j.put
			q.mu.Unlock()
			if !current {
				continue // removed, or put again since: the later job stores it
			}
			if err := s.put(j.put.key, j.put.meta); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Debug("cache: store entry", "err", err)
			}
			q.mu.Lock()
			if q.puts[j.put.key] == j.put {
				delete(q.puts, j.put.key) // committed (or failed): Lookup finds it on disk now
			}
			q.mu.Unlock()
			continue
		}
		if err := s.makeDurable(j.hash, j.gen); err != nil {
			s.log.Warn("cache: cannot sync an entry; removed", "err", err)
			s.removeInvalid(j.hash, j.gen)
		}
	}
}

// closeSync lets the queued puts and syncs run without their delay for up to closeSyncWait,
// and waits. Called by Close before it closes anything.
func (s *Store) closeSync() {
	q := &s.sync
	q.mu.Lock()
	if q.stopAt.IsZero() {
		q.stopAt = time.Now().Add(closeSyncWait)
		close(q.closing)
	}
	q.mu.Unlock()
	q.wg.Wait()
}

// errSyncGone is a makeDurable that found nothing to do: the entry went away or was replaced.
var errSyncGone = errors.New("entry gone")

// makeDurable syncs entry h if it is still generation gen and not yet durable. The files are
// synced through a descriptor of the entry's directory, without the index's lock. The durable
// manifest is written and synced in tmp/, then renamed over the entry's MANIFEST inside a write
// transaction of the index, where its row is checked to be this generation: entries are
// removed and replaced only inside one, so the rename never lands in another entry, nor in a
// directory being removed (whose removal it would make fail). A failed fsync is returned: the
// entry's pages may be lost.
func (s *Store) makeDurable(h, gen string) error {
	var held int64 // a reservation to release on return
	release := func(c *sql.Conn) error {
		_, err := c.ExecContext(context.Background(), "DELETE FROM reservations WHERE owner = ? AND id = ?", s.owner, held)
		return wrapErr("release cache reservation", err)
	}
	defer func() {
		if held != 0 {
			if err := s.writeTx(release); err != nil {
				s.log.Warn("cache: release reservation", "err", err)
			}
		}
	}()
	dir := s.entryPath(h)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // gone: nothing to sync
	}
	d := os.NewFile(uintptr(dfd), dir)
	defer d.Close()
	m, err := readManifestAt(dfd, dir)
	if err != nil || m.Gen != gen || m.Boot == ([bootLen]byte{}) || m.Boot != s.boot {
		// Replaced, damaged or another boot's (Lookup removes those), or already durable.
		return nil
	}
	if err := syncFilesAt(dfd, m.Files); err != nil {
		if errors.Is(err, errSyncGone) {
			return nil
		}
		return fmt.Errorf("sync cache entry %s: %w", dir, err)
	}
	// The entry's name in entries/xx: renamed there from tmp/ unsynced.
	if p, err := os.Open(filepath.Dir(dir)); err == nil {
		err = p.Sync()
		p.Close()
		if err != nil {
			return fmt.Errorf("sync cache dir: %w", err)
		}
	}
	m.Boot = [bootLen]byte{}
	data, err := encodeManifest(m)
	if err != nil {
		return err
	}
	// The new manifest is on disk beside the old one until the rename: its bytes are reserved
	// first, as a builder's, so the cap holds at every moment (evicting as a builder would).
	id := s.nextID.Add(1)
	err = s.writeTx(func(c *sql.Conn) error {
		if err := s.makeRoom(c, int64(len(data))); err != nil {
			return err
		}
		_, err := c.ExecContext(context.Background(), "INSERT INTO reservations(owner, id, bytes) VALUES(?, ?, ?)",
			s.owner, id, len(data))
		return wrapErr("reserve cache space", err)
	})
	if err != nil {
		s.log.Debug("cache: no room to sync an entry; it stays unsynced", "err", err)
		return nil // served during this boot, rebuilt after a restart
	}
	held = id
	tmp := filepath.Join(s.dir, tmpDir, fmt.Sprintf("%s.m%d", s.owner, held))
	if err := writeSync(tmp, data, true); err != nil {
		os.Remove(tmp)
		return err // the deferred release follows the removal
	}
	// The file leaves tmp/ (renamed or removed) before its reservation is released, in the
	// same transaction.
	renamed := false
	err = s.writeTx(func(c *sql.Conn) error {
		var cur string
		err := c.QueryRowContext(context.Background(), "SELECT gen FROM entries WHERE hash = ? AND kind = ?",
			h, kindEntry).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return wrapErr("read cache index", err)
		}
		current := err == nil && cur == gen // else removed or replaced
		if current {
			on, _, err := readManifest(filepath.Join(dir, manifestName))
			current = err == nil && on.Gen == gen
		}
		if !current {
			os.Remove(tmp)
			return release(c)
		}
		if err := os.Rename(tmp, filepath.Join(dir, manifestName)); err != nil {
			return wrapErr("write durable manifest", err)
		}
		renamed = true
		return release(c)
	})
	if err != nil {
		if !renamed {
			os.Remove(tmp)
		}
		return err // the deferred release: its transaction failed
	}
	held = 0
	if !renamed {
		return nil
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync cache entry dir %s: %w", dir, err)
	}
	return nil
}

// readManifestAt reads the manifest of the entry directory open as dfd.
func readManifestAt(dfd int, dir string) (*manifest, error) {
	fd, err := unix.Openat(dfd, manifestName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, manifestName))
	defer f.Close()
	m, _, err := readManifestFile(f)
	return m, err
}

// syncFilesAt fsyncs the files recs of the directory dfd, sealParallel at a time; a file whose
// inode differs from its record is errSyncGone.
func syncFilesAt(dfd int, recs []fileRec) error {
	errs := make([]error, len(recs))
	sem := make(chan struct{}, sealParallel)
	var wg sync.WaitGroup
	for i := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fd, err := unix.Openat(dfd, recs[i].Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				errs[i] = errSyncGone
				return
			}
			defer unix.Close(fd)
			var st unix.Stat_t
			if unix.Fstat(fd, &st) != nil || st.Ino != recs[i].Ino {
				errs[i] = errSyncGone
				return
			}
			errs[i] = unix.Fsync(fd)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if errors.Is(err, errSyncGone) {
			return err
		}
	}
	return errors.Join(errs...)
}
