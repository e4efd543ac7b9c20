package cache

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// sparseFlushEvery is how long a filled unit may wait before its mark is made durable.
	sparseFlushEvery = 2 * time.Second
	maxSparseUnits   = 1 << 27 // a 16 MiB bitmap
	maxSparseHeader  = 1 << 20
)

// errSparseGone is returned when a Sparse's file was removed from the index under it.
var errSparseGone = fmt.Errorf("sparse entry removed: %w", ErrMiss)

// Sparse is one file of fixed logical size, header then units × unitBytes, filled unit by unit,
// with a persistent bitmap of filled units. A unit's mark is persisted only after an fdatasync of
// the file, so a crash loses marks, never marks a unit whose data is not on disk. While a Sparse is
// open its file holds LOCK_SH: no Store of any process evicts, resets or removes it.
type Sparse struct {
	s              *Store
	key, hash, gen string
	f              *os.File
	hdr, unitBytes int64
	units          int
	total          int64

	flushMu sync.Mutex // serialises flushes and Close

	mu     sync.Mutex
	filled []byte // a bit per unit, in this process (some marks not yet durable); guarded by mu
	// reserved has a bit per unit whose bytes this handle added to the accounting and has not yet
	// made durable: if another handle makes it durable first, both counted it; guarded by mu
	reserved []byte
	nfilled  int         // guarded by mu
	dirty    bool        // marks not yet persisted; guarded by mu
	timer    *time.Timer // the pending flush; guarded by mu
	closed   bool        // guarded by mu
}

// OpenSparse opens, creating or resetting it, the sparse file of key. Existing state (file and
// bitmap) is reused when key, header, units and unitBytes match and the file is intact; otherwise
// the file is reset, which a Sparse of it open elsewhere prevents (ErrBusy). Creating reserves
// len(header) bytes (ErrFull when they cannot fit).
func (s *Store) OpenSparse(key string, header []byte, units int, unitBytes int64) (*Sparse, error) {
	if units < 0 || units > maxSparseUnits || unitBytes <= 0 || len(header) > maxSparseHeader ||
		(units > 0 && unitBytes > (math.MaxInt64-int64(len(header)))/int64(units)) {
		return nil, fmt.Errorf("open sparse cache file: bad geometry: header %d, %d units of %d bytes",
			len(header), units, unitBytes)
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	sp := &Sparse{s: s, key: key, hash: hashSparse(key), hdr: int64(len(header)), units: units,
		unitBytes: unitBytes}
	sp.total = sp.hdr + int64(units)*unitBytes
	var created string
	err := s.writeTx(func(c *sql.Conn) error {
		ctx := context.Background()
		now := s.now().UnixNano()
		var (
			gen, oldHeader, bitmap []byte
			oldUnits, oldBytes     int64
			oldUnitBytes           int64
		)
		err := c.QueryRowContext(ctx, `SELECT gen, header, units, unit_bytes, bitmap, bytes FROM entries
			WHERE hash = ? AND kind = ?`, sp.hash, kindSparse).
			Scan(&gen, &oldHeader, &oldUnits, &oldUnitBytes, &bitmap, &oldBytes)
		switch {
		case err == nil:
			if bytes.Equal(oldHeader, header) && oldUnits == int64(units) && oldUnitBytes == unitBytes &&
				len(bitmap) == (units+7)/8 {
				if f := sp.reuse(string(gen), header); f != nil {
					if units%8 != 0 {
						bitmap[len(bitmap)-1] &= 1<<(units%8) - 1 // no marks past the last unit
					}
					sp.f, sp.gen, sp.filled = f, string(gen), bitmap
					sp.reserved = make([]byte, len(bitmap))
					for _, b := range bitmap {
						sp.nfilled += bits.OnesCount8(b)
					}
					_, err := c.ExecContext(ctx, "UPDATE entries SET access = ? WHERE hash = ?", now, sp.hash)
					return wrapErr("open sparse cache file", err)
				}
			}
			v := &victim{hash: sp.hash, gen: string(gen), kind: kindSparse, bytes: oldBytes}
			if !s.lockVictim(v) {
				return fmt.Errorf("reset sparse cache file: %w", ErrBusy)
			}
			if err := s.evict(c, v); err != nil {
				return err
			}
		case errors.Is(err, sql.ErrNoRows):
		default:
			return wrapErr("read cache index", err)
		}
		if err := s.makeRoom(c, sp.hdr); err != nil {
			return err
		}
		sp.gen = newGen()
		path := s.sparsePath(sp.hash, sp.gen)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
		if err != nil {
			return wrapErr("create sparse cache file", err)
		}
		sp.f, created = f, path
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
			return wrapErr("lock sparse cache file", err)
		}
		if _, err := f.WriteAt(header, 0); err != nil {
			return wrapErr("write sparse cache file", err)
		}
		if err := f.Truncate(sp.total); err != nil {
			return wrapErr("write sparse cache file", err)
		}
		// Not synced: its row has no marks yet, and a mark is persisted only after an
		// fdatasync of the file (Sync), which makes its size and header durable with the
		// unit. A file that a crash left without its name, size or header is reset by
		// reuse's check.
		sp.filled = make([]byte, (units+7)/8)
		sp.reserved = make([]byte, (units+7)/8)
		_, err = c.ExecContext(ctx, `INSERT INTO entries(hash, key, kind, bytes, committed, access, gen,
			header, units, unit_bytes, bitmap) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			sp.hash, []byte(key), kindSparse, sp.hdr, now, now, sp.gen, header, units, unitBytes, sp.filled)
		return wrapErr("create sparse cache file", err)
	})
	if err != nil {
		if sp.f != nil {
			sp.f.Close()
		}
		if created != "" {
			os.Remove(created)
		}
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sp.f.Close()
		return nil, ErrClosed
	}
	s.pins[sp.hash]++
	s.sparses[sp] = struct{}{}
	return sp, nil
}

// reuse opens the existing file of generation gen, locked LOCK_SH, if it is intact: a regular file
// of the full size starting with header. Otherwise it returns nil.
func (sp *Sparse) reuse(gen string, header []byte) *os.File {
	f, err := os.OpenFile(sp.s.sparsePath(sp.hash, gen), os.O_RDWR|noFollow, 0)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	ok := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil &&
		unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == sp.total
	if ok {
		got := make([]byte, len(header))
		_, err := f.ReadAt(got, 0)
		ok = err == nil && bytes.Equal(got, header)
	}
	if !ok {
		f.Close()
		return nil
	}
	return f
}

// Filled reports whether unit u has been filled (by this process, or durably by any).
func (sp *Sparse) Filled(u int) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return u >= 0 && u < sp.units && sp.filled[u>>3]&(1<<(u&7)) != 0
}

// Complete reports whether every unit is filled.
func (sp *Sparse) Complete() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.nfilled == sp.units
}

// File returns the file, for ReadAt and passthrough. Callers never write it, and read only filled
// units.
func (sp *Sparse) File() *os.File { return sp.f }

// Fill writes unit u (len(data) == unitBytes) at header + u × unitBytes and marks it filled. A unit
// already filled is left alone. It first reserves the unit's bytes (ErrFull when they cannot fit).
func (sp *Sparse) Fill(u int, data []byte) error {
	if u < 0 || u >= sp.units {
		return fmt.Errorf("fill sparse cache file: unit %d of %d", u, sp.units)
	}
	if int64(len(data)) != sp.unitBytes {
		return fmt.Errorf("fill sparse cache file: %d bytes, unit is %d", len(data), sp.unitBytes)
	}
	sp.mu.Lock()
	closed, done := sp.closed, sp.filled[u>>3]&(1<<(u&7)) != 0
	sp.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if done {
		return nil
	}
	s := sp.s
	full := false
	err := s.writeTx(func(c *sql.Conn) error {
		ctx := context.Background()
		var gen string
		var bm []byte
		var have int64
		err := c.QueryRowContext(ctx, "SELECT gen, bitmap, bytes FROM entries WHERE hash = ?", sp.hash).
			Scan(&gen, &bm, &have)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && gen != sp.gen) {
			return errSparseGone
		}
		if err != nil {
			return wrapErr("read cache index", err)
		}
		add := min(sp.unitBytes, sp.total-have)
		if u>>3 < len(bm) && bm[u>>3]&(1<<(u&7)) != 0 {
			add = 0 // filled and made durable by another process: rewriting allocates nothing
		}
		if add > 0 {
			if err := s.makeRoom(c, add); err != nil {
				return err
			}
		}
		full = add == sp.unitBytes
		_, err = c.ExecContext(ctx, "UPDATE entries SET bytes = bytes + ?, access = ? WHERE hash = ?",
			max(add, 0), s.now().UnixNano(), sp.hash)
		return wrapErr("reserve cache space", err)
	})
	if err != nil {
		return err
	}
	if full {
		sp.mu.Lock()
		sp.reserved[u>>3] |= 1 << (u & 7)
		sp.mu.Unlock()
	}
	if _, err := sp.f.WriteAt(data, sp.hdr+int64(u)*sp.unitBytes); err != nil {
		return wrapErr("fill sparse cache file", err)
	}
	s.written.Add(int64(len(data)))
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return ErrClosed
	}
	if sp.filled[u>>3]&(1<<(u&7)) == 0 {
		sp.filled[u>>3] |= 1 << (u & 7)
		sp.nfilled++
	}
	sp.dirty = true
	if sp.timer == nil {
		sp.timer = time.AfterFunc(sparseFlushEvery, sp.timedFlush)
	}
	return nil
}

func (sp *Sparse) timedFlush() {
	sp.mu.Lock()
	sp.timer = nil
	closed := sp.closed
	sp.mu.Unlock()
	if closed {
		return
	}
	if err := sp.Sync(); err != nil {
		sp.s.log.Warn("cache: persist sparse bitmap", "key", sp.key, "err", err)
	}
}

// Sync makes the marks of every unit filled so far durable: fdatasync of the file, then the
// bitmap into the index (merged with marks other processes made durable). Fill calls it within a
// few seconds; Close calls it.
func (sp *Sparse) Sync() error {
	sp.flushMu.Lock()
	defer sp.flushMu.Unlock()
	return sp.flushLocked()
}

func (sp *Sparse) flushLocked() error {
	sp.mu.Lock()
	if !sp.dirty {
		sp.mu.Unlock()
		return nil
	}
	snap := bytes.Clone(sp.filled) // units whose pwrite returned: the fdatasync below covers them
	sp.dirty = false
	sp.mu.Unlock()
	redirty := func() {
		sp.mu.Lock()
		sp.dirty = true
		sp.mu.Unlock()
	}
	if err := sp.s.datasync(sp.f); err != nil {
		redirty()
		return err
	}
	var merged, dup []byte
	err := sp.s.writeTx(func(c *sql.Conn) error {
		ctx := context.Background()
		var gen string
		var bm []byte
		err := c.QueryRowContext(ctx, "SELECT gen, bitmap FROM entries WHERE hash = ?", sp.hash).Scan(&gen, &bm)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && gen != sp.gen) {
			return errSparseGone
		}
		if err != nil {
			return wrapErr("read cache index", err)
		}
		// Units this handle reserved that another made durable first were counted twice.
		sp.mu.Lock()
		dup = bytes.Clone(sp.reserved)
		sp.mu.Unlock()
		merged = snap
		var twice, marked int64
		for i := range merged {
			if i < len(bm) {
				dup[i] &= bm[i]
				merged[i] |= bm[i]
			} else {
				dup[i] = 0
			}
			twice += int64(bits.OnesCount8(dup[i]))
			marked += int64(bits.OnesCount8(merged[i]))
		}
		// Never below what is durably on disk; other handles' reservations in flight stay counted.
		_, err = c.ExecContext(ctx, "UPDATE entries SET bitmap = ?, bytes = max(bytes - ?, ?) WHERE hash = ?",
			merged, twice*sp.unitBytes, sp.hdr+marked*sp.unitBytes, sp.hash)
		return wrapErr("persist sparse bitmap", err)
	})
	if err != nil {
		redirty()
		return err
	}
	sp.mu.Lock()
	n := 0
	for i := range sp.filled {
		sp.filled[i] |= merged[i]
		n += bits.OnesCount8(sp.filled[i])
		sp.reserved[i] &^= merged[i] // durable: counted once, by the first to make them durable
	}
	sp.nfilled = n
	sp.mu.Unlock()
	return nil
}

// Close persists the bitmap and closes the file, releasing its lock.
func (sp *Sparse) Close() error {
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return nil
	}
	sp.closed = true
	if sp.timer != nil {
		sp.timer.Stop()
		sp.timer = nil
	}
	sp.mu.Unlock()
	sp.flushMu.Lock()
	err := sp.flushLocked()
	cerr := sp.f.Close()
	sp.flushMu.Unlock()
	s := sp.s
	s.mu.Lock()
	if s.pins[sp.hash]--; s.pins[sp.hash] <= 0 {
		delete(s.pins, sp.hash)
	}
	delete(s.sparses, sp)
	s.mu.Unlock()
	return errors.Join(err, cerr)
}

// datasync is fdatasync, unless the Store is Temporary.
func (s *Store) datasync(f *os.File) error {
	if !s.durable {
		return nil
	}
	return wrapErr("sync sparse cache file", unix.Fdatasync(int(f.Fd())))
}
