package filestore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/filestore"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
)

type m = map[string]any

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func testLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, nil)), lb
}

// counted wraps a format so that a test sees how many file heads it read.
func counted(f *filestore.Format, n *atomic.Int64) *filestore.Format {
	g := *f
	g.ReadHead = func(r io.ReaderAt, name string, size int64) (*catalog.Start, []byte, error) {
		n.Add(1)
		return f.ReadHead(r, name, size)
	}
	return &g
}

// run returns a small finished run with the given uid and scan_id and n events.
func run(uid string, scanID int64, n int) []catalog.Document {
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1700000000.5 + float64(scanID), "scan_id": scanID, "plan_name": "count"}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d", "run_start": uid, "time": 1700000001.0, "name": "primary",
			"data_keys": m{"x": m{"dtype": "number", "shape": []any{}, "source": "sim"}}}},
	}
	for i := range n {
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"uid": fmt.Sprintf("%s-e%d", uid, i), "descriptor": uid + "-d",
			"time": 1700000002.0 + float64(i), "seq_num": int64(i + 1), "data": m{"x": float64(i)}, "timestamps": m{"x": 1.0}, "filled": m{}}})
	}
	docs = append(docs, catalog.Document{Name: "stop", Doc: m{"uid": uid + "-s", "run_start": uid, "time": 1700000100.0,
		"exit_status": "success", "num_events": m{"primary": int64(n)}}})
	return docs
}

func setMtime(t testing.TB, path string, tm time.Time) {
	t.Helper()
	if err := os.Chtimes(path, tm, tm); err != nil {
		t.Fatal(err)
	}
}

func uids(t *testing.T, c catalog.Catalog) []string {
	t.Helper()
	starts, err := c.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range starts {
		out = append(out, s.UID)
	}
	slices.Sort(out)
	return out
}

func events(t *testing.T, r catalog.Run) int {
	t.Helper()
	n := 0
	descs, err := r.Descriptors(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		err := r.EventPages(context.Background(), d.UID, 0, -1, []string{}, func(p *catalog.EventPage) error { n += p.Len(); return nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func openBoth(t *testing.T, patterns []string, index string, log *slog.Logger, reads *atomic.Int64) *filestore.Catalog {
	t.Helper()
	if reads == nil {
		reads = new(atomic.Int64)
	}
	c, err := filestore.Open(patterns, []*filestore.Format{counted(msgpack.NewFormat(log), reads), counted(jsonl.NewFormat(log), reads)},
		filestore.Options{Logger: log, Index: index})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDuplicateAcrossFormats: one run in a.msgpack and a.jsonl lists once; the newer file
// serves it, ties go to the smaller path; one log line names both files.
func TestDuplicateAcrossFormats(t *testing.T) {
	dir := t.TempDir()
	mp, jl := filepath.Join(dir, "a.msgpack"), filepath.Join(dir, "a.jsonl")
	if err := msgpack.WriteRun(mp, run("same", 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := jsonl.WriteRun(jl, run("same", 1, 5)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	setMtime(t, mp, now.Add(-time.Hour))
	setMtime(t, jl, now)
	log, lb := testLogger()
	c := openBoth(t, []string{dir}, "", log, nil)
	ctx := context.Background()
	for range 2 {
		if got := uids(t, c); !slices.Equal(got, []string{"same"}) {
			t.Fatalf("Runs = %v, want [same]", got)
		}
	}
	r, err := c.Run(ctx, "same")
	if err != nil {
		t.Fatal(err)
	}
	if n := events(t, r); n != 5 {
		t.Errorf("%d events: not the newer a.jsonl's 5", n)
	}
	if lines := lb.lines(); len(lines) != 1 || !strings.Contains(lines[0], "ignored="+mp) || !strings.Contains(lines[0], "file="+jl) {
		t.Errorf("log: %q, want one line naming the winner %s and the ignored %s", lines, jl, mp)
	}

	// The msgpack file becomes the newer one: it wins from the next listing on.
	setMtime(t, mp, now.Add(time.Hour))
	uids(t, c)
	if r, err = c.Run(ctx, "same"); err != nil || events(t, r) != 2 {
		t.Errorf("after touching a.msgpack: Run = %v; want its 2 events", err)
	}
	// A tie: the smaller path (a.jsonl < a.msgpack) wins.
	setMtime(t, jl, now.Add(time.Hour))
	uids(t, c)
	if r, err = c.Run(ctx, "same"); err != nil || events(t, r) != 5 {
		t.Errorf("equal mtimes: Run = %v; want a.jsonl's 5 events", err)
	}
}

// TestMixedPatterns: directories, globs and files of both formats; a file's format comes from
// its extension; other files are left out.
func TestMixedPatterns(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(msgpack.WriteRun(filepath.Join(dir, "m1.msgpack"), run("m1", 1, 1)))
	must(jsonl.WriteRun(filepath.Join(dir, "j1.jsonl"), run("j1", 2, 1)))
	must(jsonl.WriteRun(filepath.Join(sub, "j2.jsonl"), run("j2", 3, 1)))
	must(msgpack.WriteRun(filepath.Join(sub, "m2.msgpack"), run("m2", 4, 1)))
	must(os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a run\n"), 0o644))
	log, lb := testLogger()
	c := openBoth(t, []string{dir, filepath.Join(sub, "*.jsonl"), filepath.Join(sub, "m2.msgpack")}, "", log, nil)
	if got := uids(t, c); !slices.Equal(got, []string{"j1", "j2", "m1", "m2"}) {
		t.Errorf("Runs = %v", got)
	}
	for _, uid := range []string{"j1", "j2", "m1", "m2"} {
		r, err := c.Run(context.Background(), uid)
		if err != nil || events(t, r) != 1 {
			t.Errorf("Run(%s): %v", uid, err)
		}
	}
	if lines := lb.lines(); len(lines) != 0 {
		t.Errorf("log: %q", lines)
	}
}

func writeMany(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		var err error
		if i%2 == 0 {
			err = msgpack.WriteRun(filepath.Join(dir, fmt.Sprintf("r%03d.msgpack", i)), run(fmt.Sprintf("r%03d", i), int64(i), 1))
		} else {
			err = jsonl.WriteRun(filepath.Join(dir, fmt.Sprintf("r%03d.jsonl", i)), run(fmt.Sprintf("r%03d", i), int64(i), 1))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestListingIndex: a second catalog on the same index lists by stat alone, with the same
// start documents; a changed, new or removed file is noticed; stop summaries are recorded.
func TestListingIndex(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	ixPath := filepath.Join(cache, "listing.sqlite")
	writeMany(t, dir, 20)
	bad := filepath.Join(dir, "bad.msgpack")
	if err := os.WriteFile(bad, []byte{0xc1, 1, 2, 3}, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	log, lb := testLogger()
	var reads1 atomic.Int64
	c1 := openBoth(t, []string{dir}, ixPath, log, &reads1)
	starts1, err := c1.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if reads1.Load() != 21 || len(starts1) != 20 {
		t.Fatalf("first listing: %d heads read, %d runs; want 21 and 20", reads1.Load(), len(starts1))
	}
	for _, uid := range []string{"r000", "r001"} { // one of each format: their stops go to the index
		if _, err := c1.Run(ctx, uid); err != nil {
			t.Fatal(err)
		}
	}
	c1.Close()
	if lines := lb.lines(); len(lines) != 1 || !strings.Contains(lines[0], "bad.msgpack") {
		t.Fatalf("log: %q, want one line about bad.msgpack", lines)
	}

	// A remount: no head is read, the starts are the same, the bad file is logged again.
	log2, lb2 := testLogger()
	var reads2 atomic.Int64
	c2 := openBoth(t, []string{dir}, ixPath, log2, &reads2)
	starts2, err := c2.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2.WaitChecked() // the check of the listing from the index: nothing changed
	if reads2.Load() != 0 {
		t.Errorf("remount read %d file heads, want 0", reads2.Load())
	}
	key := func(ss []*catalog.Start) []string {
		var out []string
		for _, s := range ss {
			out = append(out, fmt.Sprintf("%s %v %d %v %s %s %v", s.UID, s.Time, s.ScanID, s.HasScan, s.PlanName, s.Raw, s.Doc))
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(key(starts1), key(starts2)) {
		t.Errorf("starts from the index differ:\n%q\n%q", key(starts1), key(starts2))
	}
	if lines := lb2.lines(); len(lines) != 1 || !strings.Contains(lines[0], "bad.msgpack") {
		t.Errorf("remount log: %q, want the bad file named once", lines)
	}
	r, err := c2.Run(ctx, "r004")
	if err != nil || events(t, r) != 1 {
		t.Fatalf("Run from an indexed listing: %v", err)
	}

	// Rewritten to the same size with a new mtime, removed, added: each noticed.
	p3 := filepath.Join(dir, "r003.jsonl")
	b, _ := os.ReadFile(p3)
	b = bytes.Replace(b, []byte(`"r003"`), []byte(`"x003"`), 1)
	if err := os.WriteFile(p3, b, 0o644); err != nil {
		t.Fatal(err)
	}
	setMtime(t, p3, time.Now().Add(time.Minute))
	os.Remove(filepath.Join(dir, "r005.jsonl"))
	c2.Close()

	// The first listing comes from the index; the check behind it finds the changes.
	var reads3 atomic.Int64
	c3 := openBoth(t, []string{dir}, ixPath, log2, &reads3)
	uids(t, c3)
	if _, err := c3.Run(ctx, "r005"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Run of a run whose file went away: %v, want ErrNotFound", err)
	}
	c3.WaitChecked()
	got := uids(t, c3)
	if reads3.Load() != 1 || slices.Contains(got, "r003") || !slices.Contains(got, "x003") || slices.Contains(got, "r005") || len(got) != 19 {
		t.Errorf("after a rewrite and a removal: %d heads read, runs %v", reads3.Load(), got)
	}
	c3.Close()

	db, err := sql.Open("sqlite", ixPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM files WHERE path = ?`, filepath.Join(dir, "r005.jsonl")).Scan(&n); err != nil || n != 0 {
		t.Errorf("the removed file's row: %d, %v", n, err)
	}
	for _, uid := range []string{"r000", "r001"} {
		var status, ne string
		var stopTime float64
		var scan int64
		err := db.QueryRow(`SELECT exit_status, stop_time, num_events, scan_id FROM files WHERE uid = ?`, uid).Scan(&status, &stopTime, &ne, &scan)
		if err != nil || status != "success" || stopTime != 1700000100.0 || ne != `{"primary":1}` || fmt.Sprintf("r%03d", scan) != uid {
			t.Errorf("row of %s: %q %v %q %d, %v", uid, status, stopTime, ne, scan, err)
		}
	}
	var plan, js string
	if err := db.QueryRow(`SELECT plan_name, json_extract(start, '$.uid') FROM files JOIN starts USING (path) WHERE uid = 'r007'`).Scan(&plan, &js); err != nil || plan != "count" || js != "r007" {
		t.Errorf("plan_name, start.uid of r007: %q %q %v", plan, js, err)
	}
}

// TestIndexFirstListing: a remount takes its first listing from the index alone while the
// catalog's directory is as the index saw it, and lists the files (a stat each) when the
// directory changed since.
func TestIndexFirstListing(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	index := filepath.Join(cache, "listing.sqlite")
	writeMany(t, dir, 6)
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	setMtime(t, dir, past) // an old directory: its listing is trustworthy
	c := openBoth(t, []string{dir}, index, slog.New(slog.DiscardHandler), nil)
	uids(t, c)
	c.Close()

	// A file vanishes behind the directory's back (its mtime put back): the first listing,
	// from the index, still has it; the check behind it drops it.
	os.Remove(filepath.Join(dir, "r001.jsonl"))
	setMtime(t, dir, past)
	c = openBoth(t, []string{dir}, index, slog.New(slog.DiscardHandler), nil)
	if got := uids(t, c); len(got) != 6 {
		t.Errorf("first listing: %v, want the 6 runs the index holds", got)
	}
	c.WaitChecked()
	if got := uids(t, c); len(got) != 5 || slices.Contains(got, "r001") {
		t.Errorf("after the check: %v, want 5 runs without r001", got)
	}
	c.Close()

	// A file added: the directory's mtime moved, so the first listing stats the files.
	if err := msgpack.WriteRun(filepath.Join(dir, "new.msgpack"), run("new", 9, 1)); err != nil {
		t.Fatal(err)
	}
	c = openBoth(t, []string{dir}, index, slog.New(slog.DiscardHandler), nil)
	if got := uids(t, c); len(got) != 6 || !slices.Contains(got, "new") {
		t.Errorf("first listing after a new file: %v, want 6 runs with new", got)
	}
}

// TestIndexBroken: a corrupt database, one of another version, and a cache directory that
// cannot hold one: the catalog lists all runs, with one log line.
func TestIndexBroken(t *testing.T) {
	dir := t.TempDir()
	writeMany(t, dir, 4)
	want := []string{"r000", "r001", "r002", "r003"}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, path string)
		logWant string // "" : no log line
		reused  bool   // a second catalog reads no heads
	}{
		{"garbage", func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("not a database "), 1000), 0o644)
		}, "rebuilding", true},
		{"truncated", func(t *testing.T, path string) {
			// A valid index, cut short.
			c := openBoth(t, []string{dir}, path, slog.New(slog.DiscardHandler), nil)
			uids(t, c)
			c.Close()
			b, _ := os.ReadFile(path)
			os.WriteFile(path, b[:len(b)/2], 0o644)
			os.Remove(path + "-wal")
		}, "", true},
		{"other version", func(t *testing.T, path string) {
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{`CREATE TABLE files (path TEXT, whatever BLOB)`, `INSERT INTO files VALUES ('x', 'y')`, `PRAGMA user_version = 99`} {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
		}, "", true},
		{"not a directory", func(t *testing.T, path string) {
			os.WriteFile(filepath.Dir(path), []byte("a file where the cache dir should be"), 0o644)
		}, "listing without the listing index", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			os.Mkdir(cache, 0o755)
			path := filepath.Join(cache, "listing.sqlite")
			if tc.name == "not a directory" {
				os.Remove(cache)
			}
			tc.prepare(t, path)
			log, lb := testLogger()
			var reads atomic.Int64
			c := openBoth(t, []string{dir}, path, log, &reads)
			if got := uids(t, c); !slices.Equal(got, want) {
				t.Errorf("Runs = %v", got)
			}
			c.Close()
			lines := lb.lines()
			switch {
			case tc.logWant == "" && len(lines) > 1:
				t.Errorf("log: %q, want at most one line", lines)
			case tc.logWant != "" && (len(lines) != 1 || !strings.Contains(lines[0], tc.logWant)):
				t.Errorf("log: %q, want one line about %q", lines, tc.logWant)
			}
			reads.Store(0)
			c2 := openBoth(t, []string{dir}, path, slog.New(slog.DiscardHandler), &reads)
			uids(t, c2)
			c2.WaitChecked()
			if got := uids(t, c2); !slices.Equal(got, want) {
				t.Errorf("second Runs = %v", got)
			}
			if tc.reused && reads.Load() != 0 {
				t.Errorf("the rebuilt index was not used: %d heads read", reads.Load())
			}
		})
	}
}

// TestIndexFullDisk: a cache directory on a full file system (a tiny tmpfs): the catalog lists
// every run and logs one line. Needs root to mount.
func TestIndexFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	cache := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", cache).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", cache).Run() })
	// Fill it.
	f, err := os.Create(filepath.Join(cache, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	dir := t.TempDir()
	writeMany(t, dir, 50)
	log, lb := testLogger()
	c := openBoth(t, []string{dir}, filepath.Join(cache, "listing.sqlite"), log, nil)
	if got := uids(t, c); len(got) != 50 {
		t.Errorf("Runs: %d runs, want 50", len(got))
	}
	c.Close()
	if lines := lb.lines(); len(lines) != 1 || !strings.Contains(lines[0], "listing") {
		t.Errorf("log: %q, want one line about the listing index", lines)
	}
}

// TestIndexShared: two catalogs (two database connections, as two brokerfs processes have)
// list and write one index at once while files change.
func TestIndexShared(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	writeMany(t, dir, 40)
	path := filepath.Join(cache, "listing.sqlite")
	log, lb := testLogger()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 5 {
				c, err := filestore.Open([]string{dir}, []*filestore.Format{msgpack.NewFormat(log), jsonl.NewFormat(log)}, filestore.Options{Logger: log, Index: path})
				if err != nil {
					t.Error(err)
					return
				}
				starts, err := c.Runs(context.Background())
				if err != nil || len(starts) < 40 {
					t.Errorf("worker %d: %d runs, %v", w, len(starts), err)
				}
				for _, s := range starts {
					if _, err := c.Run(context.Background(), s.UID); err != nil {
						t.Error(err)
					}
				}
				c.Close()
				// Written aside and renamed: the other worker must not see a half-written file.
				p := filepath.Join(dir, fmt.Sprintf("w%d-%d.msgpack", w, i))
				if err := msgpack.WriteRun(p+".tmp", run(fmt.Sprintf("w%d-%d", w, i), 1, 1)); err != nil {
					t.Error(err)
				}
				if err := os.Rename(p+".tmp", p); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if lines := lb.lines(); len(lines) != 0 {
		t.Errorf("log: %q", lines)
	}
	var reads atomic.Int64
	c := openBoth(t, []string{dir}, path, slog.New(slog.DiscardHandler), &reads)
	uids(t, c)
	c.WaitChecked()
	if got := uids(t, c); len(got) != 50 {
		t.Errorf("%d runs, want 50", len(got))
	}
	if reads.Load() > 2 { // the last file each worker wrote after its last listing
		t.Errorf("%d heads read after the shared listings, want at most 2", reads.Load())
	}
}

// TestIndexTwoProcesses: two processes (this test binary, run twice at once) list and open
// the same catalog three times each through one new index; both list every run and log
// nothing, and the index they wrote serves a third catalog without reading a file.
func TestIndexTwoProcesses(t *testing.T) {
	if spec := os.Getenv("FILESTORE_CHILD"); spec != "" {
		dir, index, _ := strings.Cut(spec, string(os.PathListSeparator))
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		for range 3 {
			c, err := filestore.Open([]string{dir}, []*filestore.Format{msgpack.NewFormat(log), jsonl.NewFormat(log)}, filestore.Options{Logger: log, Index: index})
			if err != nil {
				t.Fatal(err)
			}
			starts, err := c.Runs(context.Background())
			if err != nil || len(starts) != 60 {
				t.Fatalf("child: %d runs, %v", len(starts), err)
			}
			for _, s := range starts {
				if _, err := c.Run(context.Background(), s.UID); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
		}
		return
	}
	dir, cache := t.TempDir(), t.TempDir()
	writeMany(t, dir, 60)
	index := filepath.Join(cache, "listing.sqlite")
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestIndexTwoProcesses$", "-test.v")
			cmd.Env = append(os.Environ(), "FILESTORE_CHILD="+dir+string(os.PathListSeparator)+index)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err != nil || strings.Contains(out.String(), "level=") {
				t.Errorf("process %d: %v\n%s", i, err, out.String())
			}
		})
	}
	wg.Wait()
	var reads atomic.Int64
	c := openBoth(t, []string{dir}, index, slog.New(slog.DiscardHandler), &reads)
	uids(t, c)
	c.WaitChecked()
	if got := uids(t, c); len(got) != 60 || reads.Load() != 0 {
		t.Errorf("after the processes: %d runs, %d heads read; want 60 and 0", len(got), reads.Load())
	}
}

// TestVersion: the version key of a run changes with every change of its file and only then.
func TestVersion(t *testing.T) {
	ctx := context.Background()
	for _, ext := range []string{".msgpack", ".jsonl"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "v"+ext)
			write := func(docs []catalog.Document) {
				t.Helper()
				var err error
				if ext == ".msgpack" {
					err = msgpack.WriteRun(path, docs)
				} else {
					err = jsonl.WriteRun(path, docs)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			docs := run("v", 1, 3)
			write(docs)
			base := time.Now().Add(-time.Hour).Truncate(time.Second)
			setMtime(t, path, base)
			c := openBoth(t, []string{dir}, "", slog.New(slog.DiscardHandler), nil)
			version := func() string {
				t.Helper()
				r, err := c.Run(ctx, "v")
				if err != nil {
					t.Fatal(err)
				}
				v, err := r.(catalog.Versioner).Version(ctx)
				if err != nil || v == "" {
					t.Fatalf("Version = %q, %v", v, err)
				}
				return v
			}
			seen := map[string]string{}
			check := func(what string, wantNew bool) {
				t.Helper()
				v := version()
				prev, dup := seen[v]
				if wantNew && dup {
					t.Errorf("%s: version %q unchanged (seen at %s)", what, v, prev)
				}
				if !wantNew && !dup {
					t.Errorf("%s: version changed to %q", what, v)
				}
				seen[v] = what
			}
			check("first", true)
			check("unchanged", false)
			b, _ := os.ReadFile(path)
			setMtime(t, path, base.Add(time.Second)) // same bytes, new mtime
			check("touched", true)
			b2 := bytes.Replace(b, []byte("count"), []byte("Count"), 1) // same size, new content
			os.WriteFile(path, b2, 0o644)
			setMtime(t, path, base.Add(2*time.Second))
			check("rewritten", true)
			os.WriteFile(path, b2[:len(b2)-3], 0o644)
			setMtime(t, path, base.Add(2*time.Second)) // truncated, mtime put back
			check("truncated", true)
			os.WriteFile(path, append(b2, b2[len(b2)-10:]...), 0o644)
			setMtime(t, path, base.Add(2*time.Second)) // appended, mtime put back
			check("appended", true)
			tmp := path + ".tmp"
			os.WriteFile(tmp, append(b2, b2[len(b2)-10:]...), 0o644)
			setMtime(t, tmp, base.Add(2*time.Second))
			os.Rename(tmp, path) // replaced: the same size and mtime, another inode
			check("replaced", true)
		})
	}
}

// TestContract: a catalog of both formats passes the contract suite (msgpack and JSONL
// files alternating).
func TestContract(t *testing.T) {
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		dir := t.TempDir()
		for i, docs := range runs {
			var err error
			if i%2 == 0 {
				err = msgpack.WriteRun(filepath.Join(dir, fmt.Sprintf("run-%d.msgpack", i)), docs)
			} else {
				err = jsonl.WriteRun(filepath.Join(dir, fmt.Sprintf("run-%d.jsonl", i)), docs)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		log, _ := testLogger()
		c, err := filestore.Open([]string{dir}, []*filestore.Format{msgpack.NewFormat(log), jsonl.NewFormat(log)},
			filestore.Options{Logger: log, Index: filepath.Join(t.TempDir(), "listing.sqlite")})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestOpenErrors(t *testing.T) {
	if _, err := filestore.Open([]string{"[bad"}, []*filestore.Format{msgpack.NewFormat(nil)}, filestore.Options{}); err == nil {
		t.Error("Open with a malformed glob succeeded")
	}
	if _, err := filestore.Open([]string{"x"}, nil, filestore.Options{}); err == nil {
		t.Error("Open without formats succeeded")
	}
	c, err := filestore.Open([]string{t.TempDir()}, []*filestore.Format{msgpack.NewFormat(nil)}, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Run(nope) = %v, want ErrNotFound", err)
	}
	if _, err := c.Lookup(context.Background(), "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Lookup(nope) = %v, want ErrNotFound", err)
	}
}

// TestLookup: the file that serves a run, found without opening it, listing on demand.
func TestLookup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.jsonl")
	if err := jsonl.WriteRun(path, run("x", 3, 1)); err != nil {
		t.Fatal(err)
	}
	c := openBoth(t, []string{dir}, "", slog.New(slog.DiscardHandler), nil)
	f, err := c.Lookup(context.Background(), "x") // not listed yet: Lookup lists
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	ino, dev := filestore.StatIDs(fi)
	if f.Path != path || f.Format.Name != "jsonl" || f.Start.UID != "x" || f.Version() != filestore.VersionKey(path, fi.Size(), fi.ModTime(), ino, dev) {
		t.Errorf("Lookup(x) = %s %s %s %s", f.Path, f.Format.Name, f.Start.UID, f.Version())
	}
}

// parsedCounted wraps a format so that a test sees how many start documents it parsed from
// the listing index.
func parsedCounted(f *filestore.Format, n *atomic.Int64) *filestore.Format {
	g := *f
	g.ParseHead = func(head, raw []byte) (*catalog.Start, error) {
		n.Add(1)
		return f.ParseHead(head, raw)
	}
	return &g
}

// TestIndexSummaries: a remount lists (RunSummaries) from the listing index without reading a
// file or parsing a start document; the summaries agree with the documents; a run's document
// is parsed when the run is opened, and read from its file when the index lost it.
func TestIndexSummaries(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	ixPath := filepath.Join(cache, "listing.sqlite")
	writeMany(t, dir, 10)
	ctx := context.Background()
	c := openBoth(t, []string{dir}, ixPath, slog.New(slog.DiscardHandler), nil)
	full, err := c.Runs(ctx)
	if err != nil || len(full) != 10 {
		t.Fatalf("Runs: %d runs, %v", len(full), err)
	}
	c.Close()

	open := func() (*filestore.Catalog, *atomic.Int64, *atomic.Int64) {
		var reads, parsed atomic.Int64
		c, err := filestore.Open([]string{dir}, []*filestore.Format{
			parsedCounted(counted(msgpack.NewFormat(nil), &reads), &parsed),
			parsedCounted(counted(jsonl.NewFormat(nil), &reads), &parsed)},
			filestore.Options{Logger: slog.New(slog.DiscardHandler), Index: ixPath})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, &reads, &parsed
	}
	c, reads, parsed := open()
	sums, err := c.RunSummaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if reads.Load() != 0 || parsed.Load() != 0 {
		t.Errorf("a listing from the index read %d heads and parsed %d documents, want 0 and 0", reads.Load(), parsed.Load())
	}
	if len(sums) != len(full) {
		t.Fatalf("RunSummaries: %d runs, want %d", len(sums), len(full))
	}
	for i, s := range sums {
		f := full[i]
		if s.UID != f.UID || s.Time != f.Time || s.ScanID != f.ScanID || s.HasScan != f.HasScan || s.PlanName != f.PlanName || s.Doc != nil || s.Raw != nil {
			t.Errorf("summary %+v, want the fields of %+v without Doc and Raw", s, f)
		}
	}
	r, err := c.Run(ctx, "r003")
	if err != nil || r.Start().UID != "r003" || events(t, r) != 1 {
		t.Fatalf("Run(r003) from a listing of summaries: %v", err)
	}
	if parsed.Load() != 1 || reads.Load() != 0 {
		t.Errorf("opening one run parsed %d documents and read %d heads, want 1 and 0", parsed.Load(), reads.Load())
	}
	f, err := c.Lookup(ctx, "r004")
	if err != nil || f.Start == nil || f.Start.UID != "r004" || f.Start.Doc["plan_name"] != "count" || len(f.Head) == 0 {
		t.Fatalf("Lookup(r004): %+v, %v", f, err)
	}
	c.Close()

	// The index lost the documents (another brokerfs, an older row): they come from the files.
	db, err := sql.Open("sqlite", ixPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM starts`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	c, reads, _ = open()
	again, err := c.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if reads.Load() != 10 || len(again) != 10 {
		t.Errorf("Runs without documents in the index: %d heads read, %d runs; want 10 and 10", reads.Load(), len(again))
	}
	for i := range again {
		if a, b := again[i], full[i]; a.UID != b.UID || !bytes.Equal(a.Raw, b.Raw) || fmt.Sprint(a.Doc) != fmt.Sprint(b.Doc) {
			t.Errorf("start read from the file %s %s, want %s %s", a.UID, a.Raw, b.UID, b.Raw)
		}
	}
	c.Close()

	// A file rewritten with another run after the listing (from the index, the directory's
	// mtime put back) whose document the index does not hold: opening the listed run finds the
	// file changed and lists again; the new run is served, the old one is gone.
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	setMtime(t, dir, past)
	c, _, _ = open()
	if _, err := c.RunSummaries(ctx); err != nil {
		t.Fatal(err)
	}
	db, err = sql.Open("sqlite", "file:"+ixPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM starts`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := msgpack.WriteRun(filepath.Join(dir, "r006.msgpack"), run("x006", 6, 2)); err != nil {
		t.Fatal(err)
	}
	setMtime(t, dir, past)
	if _, err := c.Run(ctx, "r006"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Run of a run whose file now holds another: %v, want ErrNotFound", err)
	}
	if r, err := c.Run(ctx, "x006"); err != nil || events(t, r) != 2 {
		t.Errorf("Run of the run the file holds now: %v", err)
	}
	if got := uids(t, c); slices.Contains(got, "r006") || !slices.Contains(got, "x006") || len(got) != 10 {
		t.Errorf("Runs after the rewrite: %v", got)
	}
}

// BenchmarkIndexListing: the first listing of a remount of 2000 small runs (start documents of
// 34 keys, as the bench's) from the listing index (open, read the index, list), with summaries
// only (what the mount's root does) and with every start document (Runs: --query, brokerfs ls).
func BenchmarkIndexListing(b *testing.B) {
	dir, cache := b.TempDir(), b.TempDir()
	ixPath := filepath.Join(cache, "listing.sqlite")
	for i := range 2000 {
		docs := run(fmt.Sprintf("r%04d", i), int64(i), 1)
		for k := range 30 {
			docs[0].Doc[fmt.Sprintf("key%02d", k)] = fmt.Sprintf("value %d of run %d", k, i)
		}
		if err := msgpack.WriteRun(filepath.Join(dir, fmt.Sprintf("r%04d.msgpack", i)), docs); err != nil {
			b.Fatal(err)
		}
	}
	setMtime(b, dir, time.Now().Add(-time.Hour)) // a directory the index may trust
	log := slog.New(slog.DiscardHandler)
	open := func() *filestore.Catalog {
		c, err := filestore.Open([]string{dir}, []*filestore.Format{msgpack.NewFormat(log)}, filestore.Options{Logger: log, Index: ixPath})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	c := open()
	if _, err := c.Runs(context.Background()); err != nil {
		b.Fatal(err)
	}
	c.Close()
	for _, bc := range []struct {
		name string
		list func(*filestore.Catalog) ([]*catalog.Start, error)
	}{
		{"summaries", func(c *filestore.Catalog) ([]*catalog.Start, error) { return c.RunSummaries(context.Background()) }},
		{"documents", func(c *filestore.Catalog) ([]*catalog.Start, error) { return c.Runs(context.Background()) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				c := open()
				starts, err := bc.list(c)
				if err != nil || len(starts) != 2000 {
					b.Fatalf("%d runs, %v", len(starts), err)
				}
				c.Close()
			}
		})
	}
}

// writeOddEntries puts into dir what is named like a run file but is not one, or not there:
// a FIFO fifo.msgpack, a directory sub.msgpack, and link.msgpack, a symlink to a run (uid
// "linked", scan_id scanID) in other.
func writeOddEntries(t *testing.T, dir, other string, scanID int64) {
	t.Helper()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.msgpack"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.msgpack"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(other, "target.msgpack")
	if err := msgpack.WriteRun(target, run("linked", scanID, 2)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link.msgpack")); err != nil {
		t.Fatal(err)
	}
}

// TestFirstListingFromOpenFiles: a first listing reads each regular file once (open, fstat,
// pread) without a stat by path: the versions are those of the files; a FIFO named like a run
// file does not block the listing, a directory is not a run, a symlink to a run file is; a
// msgpack run is listed from its summary and its whole document parsed once when the run is
// opened, not by the listing.
func TestFirstListingFromOpenFiles(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	writeMany(t, dir, 4)
	writeOddEntries(t, dir, other, 9)
	var parsed atomic.Int64
	log := slog.New(slog.DiscardHandler)
	c, err := filestore.Open([]string{dir}, []*filestore.Format{parsedCounted(msgpack.NewFormat(log), &parsed), jsonl.NewFormat(log)},
		filestore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	sums, err := c.RunSummaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sums {
		got = append(got, fmt.Sprintf("%s %d %s", s.UID, s.ScanID, s.PlanName))
	}
	want := []string{"linked 9 count", "r000 0 count", "r001 1 count", "r002 2 count", "r003 3 count"}
	if !slices.Equal(got, want) {
		t.Errorf("summaries %q, want %q", got, want)
	}
	if parsed.Load() != 0 {
		t.Errorf("the listing parsed %d msgpack start documents whole, want 0", parsed.Load())
	}
	for _, uid := range []string{"r000", "r001", "linked"} {
		f, err := c.Lookup(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		ino, dev := filestore.StatIDs(fi)
		if f.Version() != filestore.VersionKey(f.Path, fi.Size(), fi.ModTime(), ino, dev) {
			t.Errorf("%s: version %s, the file's stat says %s", uid, f.Version(), filestore.VersionKey(f.Path, fi.Size(), fi.ModTime(), ino, dev))
		}
		if f.Start == nil || f.Start.UID != uid || f.Start.Doc["plan_name"] != "count" || len(f.Start.Raw) == 0 {
			t.Errorf("%s: start after Lookup: %+v", uid, f.Start)
		}
	}
	if parsed.Load() != 2 { // r000 and linked; r001 is JSONL, parsed whole by its listing
		t.Errorf("%d msgpack start documents parsed whole after two lookups, want 2", parsed.Load())
	}
	r, err := c.Run(ctx, "linked")
	if err != nil || events(t, r) != 2 || parsed.Load() != 2 {
		t.Errorf("Run(linked): %v, %d parses", err, parsed.Load())
	}
}

// BenchmarkFirstListing: a first listing (no listing index) of 2000 msgpack runs whose starts
// have 34 keys, page cache warm: what reading and decoding the heads costs beside the reads.
func BenchmarkFirstListing(b *testing.B) {
	dir := b.TempDir()
	for i := range 2000 {
		docs := run(fmt.Sprintf("r%04d", i), int64(i), 1)
		for k := range 30 {
			docs[0].Doc[fmt.Sprintf("key%02d", k)] = fmt.Sprintf("value %d of run %d", k, i)
		}
		if err := msgpack.WriteRun(filepath.Join(dir, fmt.Sprintf("r%04d.msgpack", i)), docs); err != nil {
			b.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		c, err := filestore.Open([]string{dir}, []*filestore.Format{msgpack.NewFormat(log)}, filestore.Options{Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		starts, err := c.RunSummaries(context.Background())
		if err != nil || len(starts) != 2000 {
			b.Fatalf("%d runs, %v", len(starts), err)
		}
		c.Close()
	}
}

// TestFirstListingRing: a first listing large enough to read heads in batches (io_uring)
// lists what the one-file-at-a-time reads list, with the same errors, whatever the files are:
// heads longer than the batch reads them (msgpack and JSONL), empty and garbled files, a JSONL
// file whose first line is not complete yet, a FIFO, a directory, a symlink. The expected
// values are the ones the test wrote.
func TestFirstListingRing(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	const n = 300
	var want []string
	for i := range n {
		uid := fmt.Sprintf("r%03d", i)
		docs := run(uid, int64(i), 1)
		if i%7 == 0 {
			// A start document of about 10 KB: more than the 4 KiB read in the batch.
			docs[0].Doc["notes"] = strings.Repeat(fmt.Sprintf("note %d ", i), 1200)
		}
		var err error
		if i%3 == 0 {
			err = jsonl.WriteRun(filepath.Join(dir, uid+".jsonl"), docs)
		} else {
			err = msgpack.WriteRun(filepath.Join(dir, uid+".msgpack"), docs)
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s %d count", uid, i))
	}
	for name, b := range map[string][]byte{
		"empty.msgpack":   nil,
		"garbled.msgpack": {0xc1, 1, 2, 3},
		"half.jsonl":      []byte(`{"name": "start", "doc": {"uid": "half"`), // no newline yet: left out silently
		"garbled.jsonl":   []byte("not json\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeOddEntries(t, dir, other, 999)
	want = append(want, "linked 999 count")
	slices.Sort(want)

	list := func(ring bool) (sums, logged []string) {
		defer filestore.ReadHeadsWithRing(ring)()
		filestore.RingUsed()
		log, lb := testLogger()
		c := openBoth(t, []string{dir}, "", log, nil)
		defer c.Close()
		ctx := context.Background()
		ss, err := c.RunSummaries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if used := filestore.RingUsed(); ring && !used {
			t.Skip("io_uring is not available here: the listing read heads with pread")
		} else if !ring && used {
			t.Error("the listing used io_uring when told not to")
		}
		for _, s := range ss {
			sums = append(sums, fmt.Sprintf("%s %d %s", s.UID, s.ScanID, s.PlanName))
		}
		// The long starts are read whole: their documents are intact.
		for _, i := range []int{0, 7, 14} {
			f, err := c.Lookup(ctx, fmt.Sprintf("r%03d", i))
			if err != nil {
				t.Fatal(err)
			}
			if got, wantNotes := f.Start.Doc["notes"], strings.Repeat(fmt.Sprintf("note %d ", i), 1200); got != wantNotes {
				t.Errorf("ring %v: r%03d: notes of %d bytes, want %d", ring, i, len(fmt.Sprint(got)), len(wantNotes))
			}
		}
		for _, l := range lb.lines() {
			for _, name := range []string{"empty.msgpack", "garbled.msgpack", "garbled.jsonl", "half.jsonl", "fifo.msgpack", "sub.msgpack"} {
				if strings.Contains(l, name) {
					logged = append(logged, name)
				}
			}
		}
		slices.Sort(logged)
		return sums, logged
	}
	pSums, pLogged := list(false)
	rSums, rLogged := list(true)
	if !slices.Equal(pSums, want) {
		t.Errorf("pread listing: %d runs, want %d; first %q", len(pSums), len(want), pSums[:min(3, len(pSums))])
	}
	if !slices.Equal(rSums, want) {
		t.Errorf("io_uring listing: %d runs, want %d; first %q", len(rSums), len(want), rSums[:min(3, len(rSums))])
	}
	wantLogged := []string{"empty.msgpack", "garbled.jsonl", "garbled.msgpack"}
	if !slices.Equal(pLogged, wantLogged) || !slices.Equal(rLogged, wantLogged) {
		t.Errorf("files logged as unreadable: pread %q, io_uring %q, want %q", pLogged, rLogged, wantLogged)
	}

	// io_uring breaks at the second batch: that batch and the rest are read with pread, and
	// the listing is the same.
	restore := filestore.FailRingAt(2)
	defer restore()
	fSums, fLogged := list(true)
	if !slices.Equal(fSums, want) || !slices.Equal(fLogged, wantLogged) {
		t.Errorf("listing with io_uring failing at the second batch: %d runs (want %d), logged %q", len(fSums), len(want), fLogged)
	}
}

// TestWarm: the listing Warm starts serves the first listing call (a file added after it was
// made is not in that answer) and only that one (the next call lists the file); made longer
// ago than the freshness bound, it serves none; Close during a Warm listing returns.
func TestWarm(t *testing.T) {
	for _, fresh := range []time.Duration{time.Hour, 0} {
		t.Run(fmt.Sprint(fresh), func(t *testing.T) {
			defer filestore.SetWarmFresh(fresh)()
			dir := t.TempDir()
			writeMany(t, dir, 100)
			var reads atomic.Int64
			c := openBoth(t, []string{dir}, "", slog.New(slog.DiscardHandler), &reads)
			c.Warm()
			c.Warm() // a second call does nothing
			c.WaitChecked()
			if reads.Load() != 100 {
				t.Errorf("Warm read %d heads, want 100", reads.Load())
			}
			if err := msgpack.WriteRun(filepath.Join(dir, "late.msgpack"), run("late", 500, 1)); err != nil {
				t.Fatal(err)
			}
			count := func() int {
				sums, err := c.RunSummaries(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return len(sums)
			}
			first, second := count(), count()
			wantFirst := 100
			if fresh == 0 {
				wantFirst = 101
			}
			if first != wantFirst || second != 101 {
				t.Errorf("runs listed after Warm, then again: %d, %d; want %d, 101", first, second, wantFirst)
			}
			if reads.Load() != 101 {
				t.Errorf("%d heads read in all, want 101 (each file once)", reads.Load())
			}
		})
	}
	dir := t.TempDir()
	writeMany(t, dir, 300)
	c := openBoth(t, []string{dir}, "", slog.New(slog.DiscardHandler), nil)
	c.Warm()
	c.Close()
}
