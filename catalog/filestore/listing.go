package filestore

// The listing index: what a listing learned of each run file (its stat, its start document
// and, once a run was opened, a stop summary), kept in an SQLite database in the cache
// directory so that a remount lists by stat alone. It is an optimisation only: every row is
// checked against the file's stat (path, size, mtime, inode, device) before it is believed, a
// start that no longer parses is read from the file again, and any failure of the database
// (read-only or full cache directory, corruption) leaves the catalog working without it after
// one log line.
//
// Users may open it with sqlite3; the schema is in README.md. Several brokerfs processes
// share it: WAL journal, a busy timeout, and rows written in one transaction per listing.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
	sqlite3 "modernc.org/sqlite/lib"
)

// schemaVersion is kept in PRAGMA user_version. A database of another version is emptied and
// rebuilt: it is a cache.
const schemaVersion = 3

// The start documents are in a table of their own: a listing reads only files (about 150
// bytes a row), and a document is read when a run is opened or --query needs it.
const schema = `
CREATE TABLE IF NOT EXISTS files (
	path        TEXT PRIMARY KEY,  -- the run file, as the source names it
	format      TEXT NOT NULL,     -- msgpack or jsonl
	size        INTEGER NOT NULL,  -- bytes
	mtime_ns    INTEGER NOT NULL,  -- modification time, ns since the Unix epoch
	inode       INTEGER NOT NULL,
	dev         INTEGER NOT NULL,
	uid         TEXT,              -- start uid; NULL when the start cannot be read
	scan_id     INTEGER,
	plan_name   TEXT,
	time        REAL,              -- start time, s since the Unix epoch
	error       TEXT,              -- why the start cannot be read
	exit_status TEXT,              -- from the stop document, once the run was opened
	stop_time   REAL,
	num_events  TEXT               -- JSON {stream: events}
);
CREATE INDEX IF NOT EXISTS files_uid ON files(uid);
CREATE INDEX IF NOT EXISTS files_scan_id ON files(scan_id);
CREATE INDEX IF NOT EXISTS files_time ON files(time);
CREATE INDEX IF NOT EXISTS files_plan_name ON files(plan_name);
CREATE TABLE IF NOT EXISTS starts (
	path     TEXT PRIMARY KEY,     -- the file's row in files
	size     INTEGER NOT NULL,     -- the file version, as in files
	mtime_ns INTEGER NOT NULL,
	inode    INTEGER NOT NULL,
	dev      INTEGER NOT NULL,
	start    TEXT,                 -- the start document as JSON
	head     BLOB                  -- the start document as stored in the file
);
CREATE TABLE IF NOT EXISTS dirs (
	path     TEXT PRIMARY KEY,     -- a directory a listing read
	mtime_ns INTEGER NOT NULL      -- its mtime then: unchanged, no file was added or removed
);
`

// row is a file as the index knows it.
type row struct {
	format   string
	size     int64
	mtimeNS  int64
	ino, dev uint64
	sum      *catalog.Start // what a listing shows of the start (no Doc, no Raw); nil when none
	parse    bool           // the start is readable but its summary is not in the row: parse the head
	err      string
	hasStop  bool
}

func (r *row) matches(f *File) bool {
	return r.format == f.Format.Name && r.size == f.Size && r.mtimeNS == f.ModTime.UnixNano() &&
		r.ino == f.Ino && r.dev == f.Dev
}

// listing is an open listing index. Writes go through one goroutine in order, so that a
// listing never waits for the disk and an older row never overwrites a newer one.
type listing struct {
	path string
	db   *sql.DB
	log  *slog.Logger

	mu      sync.Mutex
	closed  bool // guarded by mu; writes is closed
	writes  chan func(*sql.DB) error
	done    chan struct{}
	closing chan struct{} // closed by close: queued writes go ahead at once
	failed  bool          // a write failed and was logged: no more writes; owned by the writer goroutine
}

// openListing opens (creating or rebuilding) the index at path. It returns nil, after one
// log line, when the index cannot be used.
func openListing(path string, log *slog.Logger) *listing {
	db, err := openDB(path)
	if corrupt(err) {
		// Corrupt, or not a database: it is a cache, so start afresh.
		log.Warn("listing index unreadable, rebuilding it", "file", path, "err", err)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
		db, err = openDB(path)
	}
	if err != nil {
		log.Warn("listing without the listing index", "file", path, "err", err)
		return nil
	}
	l := &listing{path: path, db: db, log: log, writes: make(chan func(*sql.DB) error, 64), done: make(chan struct{}), closing: make(chan struct{})}
	go l.writer()
	return l
}

// corrupt reports whether err says the file is not a usable database (as opposed to a full
// disk, a lock held too long or a read-only directory, which a rebuild cannot fix).
func corrupt(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_FORMAT:
		return true
	}
	return false
}

// errUnusable marks failures that a rebuild cannot fix (a read-only or missing cache
// directory, a full disk).
var errUnusable = errors.New("cache directory unusable")

func openDB(path string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", errUnusable, err)
	}
	// A probe: SQLite opens a database in a read-only directory read-only without saying so
	// until the first write, and a WAL database needs its directory writable.
	probe, err := os.CreateTemp(filepath.Dir(path), ".listing-probe-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnusable, err)
	}
	probe.Close()
	os.Remove(probe.Name())

	// Switching to WAL and creating the schema take locks that SQLite does not wait for with
	// its busy handler, so a second process opening the index at the same moment retries.
	deadline := time.Now().Add(busyWait)
	for {
		db, err := tryOpenDB(path)
		if err == nil || !busy(err) || time.Now().After(deadline) {
			return db, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// busyWait bounds how long opening the index waits for another process.
const busyWait = 10 * time.Second

func tryOpenDB(path string) (*sql.DB, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	if err := migrate(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// busy reports whether err is SQLite's "database is locked".
func busy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

// migrate creates the schema, emptying a database of another version, and switches the
// database to WAL (persistent: later connections use it too).
func migrate(db *sql.DB) error {
	ctx := context.Background()
	conn, err := db.Conn(ctx) // the pragmas below hold for one connection
	if err != nil {
		return fmt.Errorf("open listing index: %w", err)
	}
	defer conn.Close()
	var pages int
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return fmt.Errorf("read listing index: %w", err)
	}
	if pages == 0 {
		// A new database. 16 KiB pages: a row of starts (a start document of 1-2 KiB, twice)
		// would fill a 4 KiB page by half. The size is fixed by the first write, and a WAL
		// database cannot change it later, so it is set before anything else.
		if _, err := conn.ExecContext(ctx, "PRAGMA page_size = 16384"); err != nil {
			return fmt.Errorf("create listing index: %w", err)
		}
	}
	if err := createSchema(ctx, conn); err != nil {
		return err
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("open listing index: %w", err)
	}
	return nil
}

// createSchema creates the table, emptying one of another version.
func createSchema(ctx context.Context, db *sql.Conn) error {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read listing index version: %w", err)
	}
	if v == schemaVersion {
		// Touch the table: a database whose pages are garbage fails here, not later.
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM files WHERE path = ''").Scan(&n); err != nil {
			return fmt.Errorf("check listing index: %w", err)
		}
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create listing index: %w", err)
	}
	defer tx.Rollback()
	if v != 0 {
		if _, err := tx.Exec("DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS starts; DROP TABLE IF EXISTS dirs"); err != nil {
			return fmt.Errorf("rebuild listing index of version %d: %w", v, err)
		}
	}
	if _, err := tx.Exec(schema); err != nil {
		return fmt.Errorf("create listing index: %w", err)
	}
	if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("create listing index: %w", err)
	}
	return tx.Commit()
}

// load reads every row of files and dirs: what a listing shows, not the start documents
// (startOf and starts read those). A failure leaves the index empty (files are read instead).
func (l *listing) load() (map[string]*row, map[string]int64) {
	rows, err := l.db.Query(`SELECT path, format, size, mtime_ns, inode, dev, uid, scan_id, coalesce(plan_name, ''), time,
		coalesce(error, ''), exit_status IS NOT NULL FROM files`)
	if err != nil {
		l.log.Warn("listing index unreadable, reading the files", "file", l.path, "err", err)
		return nil, nil
	}
	defer rows.Close()
	out := map[string]*row{}
	for rows.Next() {
		var (
			path     string
			r        row
			ino, dev int64
			uid      sql.NullString
			scan     sql.NullInt64
			plan     string
			t        sql.NullFloat64
		)
		if err := rows.Scan(&path, &r.format, &r.size, &r.mtimeNS, &ino, &dev, &uid, &scan, &plan, &t, &r.err, &r.hasStop); err != nil {
			l.log.Warn("listing index unreadable, reading the files", "file", l.path, "err", err)
			return nil, nil
		}
		r.ino, r.dev = uint64(ino), uint64(dev)
		switch {
		case !uid.Valid:
		case t.Valid:
			r.sum = &catalog.Start{UID: uid.String, Time: t.Float64, ScanID: scan.Int64, HasScan: scan.Valid, PlanName: plan}
		default:
			r.parse = true // a time SQLite cannot hold (NaN is stored as NULL)
		}
		out[path] = &r
	}
	if err := rows.Err(); err != nil {
		l.log.Warn("listing index unreadable, reading the files", "file", l.path, "err", err)
		return nil, nil
	}
	dirs := map[string]int64{}
	drows, err := l.db.Query(`SELECT path, mtime_ns FROM dirs`)
	if err != nil {
		return out, nil
	}
	defer drows.Close()
	for drows.Next() {
		var path string
		var mtime int64
		if drows.Scan(&path, &mtime) != nil {
			return out, nil
		}
		dirs[path] = mtime
	}
	if drows.Err() != nil {
		return out, nil
	}
	return out, dirs
}

// doc is a start document as the index holds it.
type doc struct {
	head []byte // as stored in the file
	raw  []byte // as JSON
}

// startOf reads the start document of f, if the index holds it for the file version f is.
func (l *listing) startOf(f *File) (doc, bool) {
	var d doc
	err := l.db.QueryRow(`SELECT head, CAST(start AS BLOB) FROM starts
		WHERE path = ? AND size = ? AND mtime_ns = ? AND inode = ? AND dev = ?`,
		f.Path, f.Size, f.ModTime.UnixNano(), int64(f.Ino), int64(f.Dev)).Scan(&d.head, &d.raw)
	return d, err == nil && d.head != nil
}

// starts reads the start documents of every file the index holds as the files are in want,
// in one query (a per-file query costs more than the document).
func (l *listing) starts(want map[string]*File) map[string]doc {
	rows, err := l.db.Query(`SELECT path, size, mtime_ns, inode, dev, head, CAST(start AS BLOB) FROM starts`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := make(map[string]doc, len(want))
	// The documents are copied into large shared buffers: one allocation per MiB rather than
	// two per row.
	var slab []byte
	keep := func(b sql.RawBytes) []byte {
		if b == nil {
			return nil // NULL
		}
		if len(b) > cap(slab)-len(slab) {
			slab = make([]byte, 0, max(1<<20, len(b)))
		}
		slab = append(slab, b...)
		return slab[len(slab)-len(b) : len(slab) : len(slab)]
	}
	for rows.Next() {
		var (
			path        string
			size, mtime int64
			ino, dev    int64
			head, raw   sql.RawBytes
		)
		if rows.Scan(&path, &size, &mtime, &ino, &dev, &head, &raw) != nil {
			return out
		}
		f := want[path]
		if f == nil || head == nil || size != f.Size || mtime != f.ModTime.UnixNano() ||
			uint64(ino) != f.Ino || uint64(dev) != f.Dev {
			continue
		}
		out[path] = doc{head: keep(head), raw: keep(raw)}
	}
	return out
}

// put records files read from disk, forgets files that went away and records directories'
// mtimes, in one transaction. The rows are made by the writer, not the caller: a first
// listing is served without waiting for them. files must not change after the call (the
// fields put reads of a File do not: a file read from disk is never loaded lazily from the
// index).
func (l *listing) put(files []*File, gone []string, dirs map[string]int64) {
	type rec struct {
		f        *File
		scan     any
		plan, js any
		time     any
		uid      any
		err      any
	}
	gone = append([]string(nil), gone...)
	l.send(func(db *sql.DB) error {
		recs := make([]rec, 0, len(files))
		for _, f := range files {
			if f.fromIx {
				continue
			}
			r := rec{f: f}
			if s := f.sum; s != nil {
				r.uid, r.time = s.UID, s.Time
				if s.HasScan {
					r.scan = s.ScanID
				}
				if s.PlanName != "" {
					r.plan = s.PlanName
				}
				if !f.fromHead {
					r.js = string(f.Start.Raw)
				}
			}
			if f.err != "" {
				r.err = f.err
			}
			recs = append(recs, r)
		}
		if len(recs) >= bigPut {
			// A first listing of a large catalog: its files and documents (about 50 µs of
			// CPU a file) are written after the listing was served, not while it is.
			select {
			case <-time.After(bigPutDelay):
			case <-l.closing:
			}
		}
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		// All rows of files first, then their documents: the listing's rows stay together
		// in the file, which a cold remount reads.
		ins, err := tx.Prepare(`INSERT OR REPLACE INTO files (path, format, size, mtime_ns, inode, dev, uid, scan_id, plan_name, time, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		for _, r := range recs {
			f := r.f
			if _, err := ins.Exec(f.Path, f.Format.Name, f.Size, f.ModTime.UnixNano(), int64(f.Ino), int64(f.Dev),
				r.uid, r.scan, r.plan, r.time, r.err); err != nil {
				return err
			}
		}
		insDoc, err := tx.Prepare(`INSERT OR REPLACE INTO starts (path, size, mtime_ns, inode, dev, start, head) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		for _, r := range recs {
			f := r.f
			if f.fromHead {
				// Read with its summary only: the JSON is made here, after the listing.
				r.js = nil
				if js, err := f.Format.headJSON(f.Head); err == nil {
					r.js = string(js)
				}
			}
			if _, err := insDoc.Exec(f.Path, f.Size, f.ModTime.UnixNano(), int64(f.Ino), int64(f.Dev), r.js, f.Head); err != nil {
				return err
			}
		}
		for _, p := range gone {
			if _, err := tx.Exec(`DELETE FROM files WHERE path = ?`, p); err != nil {
				return err
			}
			if _, err := tx.Exec(`DELETE FROM starts WHERE path = ?`, p); err != nil {
				return err
			}
		}
		for p, mtime := range dirs {
			if _, err := tx.Exec(`INSERT OR REPLACE INTO dirs (path, mtime_ns) VALUES (?, ?)`, p, mtime); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
}

// bigPut is the number of files from which put waits bigPutDelay before it writes.
const (
	bigPut      = 1000
	bigPutDelay = time.Second
)

// putStop records a run's stop summary, if the row still describes the same file version.
func (l *listing) putStop(f *File, s *catalog.Stop) {
	var ne any
	if s.NumEvents != nil {
		b, err := json.Marshal(s.NumEvents)
		if err == nil {
			ne = string(b)
		}
	}
	status, t := s.ExitStatus, s.Time
	path, size, mtime, ino, dev := f.Path, f.Size, f.ModTime.UnixNano(), int64(f.Ino), int64(f.Dev)
	l.send(func(db *sql.DB) error {
		_, err := db.Exec(`UPDATE files SET exit_status = ?, stop_time = ?, num_events = ?
			WHERE path = ? AND size = ? AND mtime_ns = ? AND inode = ? AND dev = ?`,
			status, t, ne, path, size, mtime, ino, dev)
		return err
	})
}

func (l *listing) send(w func(*sql.DB) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.writes <- w
	}
}

// writer applies writes in order. The first failure (a full disk, a read-only file) is
// logged and turns the index off for writing: the catalog works on without it.
func (l *listing) writer() {
	for w := range l.writes {
		if l.failed {
			continue
		}
		err := w(l.db)
		for try := 0; busy(err) && try < 3; try++ { // another process held the lock past the busy timeout
			time.Sleep(100 * time.Millisecond)
			err = w(l.db)
		}
		if err != nil {
			l.failed = true
			l.log.Warn("listing index not updated; listing goes on without it", "file", l.path, "err", err)
		}
	}
	l.db.Close()
	close(l.done)
}

// close writes what is queued and closes the database.
func (l *listing) close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.closing)
		close(l.writes)
	}
	l.mu.Unlock()
	<-l.done
}
