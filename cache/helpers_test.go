package cache

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// clock is a settable clock for TTL and LRU tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openStore(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// content returns deterministic bytes for key and file name, so any reader can check them.
func content(key, name string, n int) []byte {
	b := make([]byte, n)
	seed := uint32(2166136261)
	for _, c := range []byte(key + "/" + name) {
		seed = (seed ^ uint32(c)) * 16777619
	}
	for i := range b {
		seed = seed*1664525 + 1013904223
		b[i] = byte(seed >> 24)
	}
	return b
}

// build writes files (name → size) of deterministic content for key, reserving before each write
// in chunks, and commits with meta = key.
func build(s *Store, key string, files map[string]int) (*Entry, error) {
	b, err := s.Build(key)
	if err != nil {
		return nil, err
	}
	defer b.Abort()
	for name, n := range files {
		f, err := b.Create(name)
		if err != nil {
			return nil, err
		}
		data := content(key, name, n)
		for off := 0; off < n; off += 16 << 10 {
			chunk := data[off:min(off+16<<10, n)]
			if err := b.Reserve(int64(len(chunk))); err != nil {
				return nil, err
			}
			if _, err := f.Write(chunk); err != nil {
				return nil, err
			}
		}
	}
	return b.Commit([]byte("meta:" + key))
}

func mustBuild(t testing.TB, s *Store, key string, files map[string]int) *Entry {
	t.Helper()
	e, err := build(s, key, files)
	if err != nil {
		t.Fatalf("build %q: %v", key, err)
	}
	return e
}

// readEntryFile opens name of e and returns its bytes.
func readEntryFile(e *Entry, name string) ([]byte, error) {
	f, err := e.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// checkEntry asserts that e serves the deterministic content of files.
func checkEntry(t testing.TB, e *Entry, files map[string]int) {
	t.Helper()
	for name, n := range files {
		got, err := readEntryFile(e, name)
		if err != nil {
			t.Fatalf("read %q/%s: %v", e.Key, name, err)
		}
		if !bytes.Equal(got, content(e.Key, name, n)) {
			t.Fatalf("%q/%s: %d bytes, wrong content", e.Key, name, len(got))
		}
	}
	if string(e.Meta) != "meta:"+e.Key {
		t.Fatalf("%q: meta %q", e.Key, e.Meta)
	}
}

// diskUsage sums the sizes of the files the cap covers: everything under trash/, entries/, tmp/
// (but lock files) and the allocated bytes of sparse/. The walk order (trash, entries, tmp) follows
// the direction files move in (tmp → entries → trash), so a file moving during the walk is counted
// at most once.
func diskUsage(dir string) int64 {
	var total int64
	for _, sub := range []string{trashDir, entriesDir, tmpDir, sparseDir} {
		filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, lockSuffix) || strings.HasSuffix(p, ".newlock") {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			n := fi.Size()
			if sub == sparseDir {
				n = dataBytes(p)
			}
			total += n
			return nil
		})
	}
	return total
}

// watchCap samples diskUsage until stop is closed and reports the largest figure seen. Each sample
// is taken holding the index's write lock, as a Store of another process would: every rename,
// eviction and reservation happens under that lock, so a sample sees one moment; what may change
// meanwhile is only builders writing within granted reservations (growth the cap must allow) and
// aborts removing files. Without the lock, a walk could count bytes freed in a directory it had
// already walked and then taken by a builder in one it walks later.
func watchCap(t testing.TB, dir string, stop <-chan struct{}) <-chan int64 {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, indexName)+"?_pragma=busy_timeout(30000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	out := make(chan int64, 1)
	sample := func() int64 {
		ctx := context.Background()
		c, err := db.Conn(ctx)
		if err != nil {
			t.Error(err)
			return 0
		}
		defer c.Close()
		if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Error(err)
			return 0
		}
		defer c.ExecContext(ctx, "ROLLBACK")
		return diskUsage(dir)
	}
	go func() {
		defer db.Close()
		var peak int64
		for {
			peak = max(peak, sample())
			select {
			case <-stop:
				out <- max(peak, sample())
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return out
}

func isMiss(err error) bool { return errors.Is(err, ErrMiss) }

// listDir returns the names in dir/sub.
func listDir(t testing.TB, dir, sub string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// builderDirs returns the builder temp dirs in tmp/.
func builderDirs(t testing.TB, dir string) []string {
	var out []string
	for _, n := range listDir(t, dir, tmpDir) {
		if !strings.HasSuffix(n, lockSuffix) {
			out = append(out, n)
		}
	}
	return out
}

func lstat(p string) (os.FileInfo, error) { return os.Lstat(p) }

func truncate(t testing.TB, p string, n int64) {
	t.Helper()
	if err := os.Truncate(p, n); err != nil {
		t.Fatal(err)
	}
}

func remove(t testing.TB, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func isFull(err error) bool { return errors.Is(err, ErrFull) }

// dataBytes returns the bytes of p's data extents (SEEK_DATA / SEEK_HOLE): what a sparse file holds,
// without the filesystem's own metadata blocks that st_blocks would add.
func dataBytes(p string) int64 {
	f, err := os.Open(p)
	if err != nil {
		return 0
	}
	defer f.Close()
	fd := int(f.Fd())
	var total, off int64
	for {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			return total // ENXIO: no data past off
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return total
		}
		total += end - start
		off = end
	}
}
