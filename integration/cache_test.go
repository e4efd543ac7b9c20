package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The tests of issue 8's persistent cache, through real mounts. Values are checked by
// testdata/expect.py (its own reading of the run files) on one mount, and every other mount
// of the same catalog must serve the same bytes, file for file.

// cacheRun is a run file written by testdata/cache_run.py.
type cacheRun struct {
	path    string
	uid     string
	offsets []int64  // byte offset of each document
	names   []string // each document's name
}

// writeCacheRun writes a run file into dir with testdata/cache_run.py.
func writeCacheRun(t *testing.T, dir, name, uid string, args ...string) cacheRun {
	t.Helper()
	path := filepath.Join(dir, name)
	out := runPython(t, append([]string{"testdata/cache_run.py", path, "--uid", uid}, args...)...)
	var r struct {
		Offsets []int64  `json:"offsets"`
		Names   []string `json:"names"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		t.Fatalf("cache_run.py: %v: %q", err, out)
	}
	return cacheRun{path: path, uid: uid, offsets: r.Offsets, names: r.Names}
}

// uidN is a uuid-shaped run uid.
func uidN(n int) string { return fmt.Sprintf("a1111111-2222-4333-8444-%012d", n) }

// tree maps every regular file of a mount (relative path) to what a full read gives: its
// SHA-256 and size, or the error.
type tree map[string]string

// readTree reads every regular file under mnt (symlinks are not followed).
func readTree(t *testing.T, mnt string) tree {
	t.Helper()
	got, err := walkTree(mnt)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// walkTree is readTree for any goroutine. The files are read by a few goroutines at once:
// the time goes in waiting for the mount, and a mount serves concurrent reads.
func walkTree(mnt string) (tree, error) {
	var rels []string
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(mnt, p)
			rels = append(rels, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", mnt, err)
	}
	sums := make([]string, len(rels))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sums[i] = readSum(filepath.Join(mnt, rels[i]))
			}
		}()
	}
	for i := range rels {
		next <- i
	}
	close(next)
	wg.Wait()
	got := tree{}
	for i, rel := range rels {
		got[rel] = sums[i]
	}
	return got, nil
}

// readSum is what a tree holds for the file at p.
func readSum(p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		return "stat: " + errName(err)
	}
	b, err := os.ReadFile(p)
	switch {
	case err != nil:
		return "read: " + errName(err)
	case int64(len(b)) != fi.Size():
		return fmt.Sprintf("read %d bytes, st_size %d", len(b), fi.Size())
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d %s", len(b), hex.EncodeToString(sum[:8]))
}

func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// sameTree reports the differences between two trees (at most a few).
func sameTree(t *testing.T, what string, got, want tree) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: missing (want %s)", p, w))
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: extra file", p))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s: %d files differ, e.g.:\n  %s", what, len(diffs), strings.Join(diffs[:min(len(diffs), 8)], "\n  "))
	}
}

// fields is the .npy, .csv and .tif files of a tree; documents the rest (.json, files.txt).
func fields(tr tree) tree {
	out := tree{}
	for p, v := range tr {
		if isField(p) {
			out[p] = v
		}
	}
	return out
}

func documents(tr tree) tree {
	out := tree{}
	for p, v := range tr {
		if !isField(p) {
			out[p] = v
		}
	}
	return out
}

func isField(p string) bool {
	return strings.HasSuffix(p, ".npy") || strings.HasSuffix(p, ".csv") || strings.HasSuffix(p, ".tif")
}

// sameFieldsAndDocs compares the fields of two trees, then (separately, so that one failure
// does not hide the other) their documents.
func sameFieldsAndDocs(t *testing.T, what string, got, want tree) {
	t.Helper()
	sameTree(t, what+": fields (.npy, .csv, .tif)", fields(got), fields(want))
	sameTree(t, what+": documents (.json, files.txt)", documents(got), documents(want))
}

// countFiles counts the files of a tree whose names end in suffix.
func countFiles(tr tree, suffix string) int {
	n := 0
	for p := range tr {
		if strings.HasSuffix(p, suffix) {
			n++
		}
	}
	return n
}

// cachedFiles returns the column files (*.npy, *.csv) of committed cache entries in dir.
func cachedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(filepath.Join(dir, "entries"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && (strings.HasSuffix(p, ".npy") || strings.HasSuffix(p, ".csv")) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files
}

// unusableCacheDir returns a --cache-dir that cannot be created: a path under a regular file.
func unusableCacheDir(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(f, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(f, "cache")
}

// linesNaming returns the log lines that contain s.
func linesNaming(logs, s string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// dropCaches makes the kernel forget the pages it cached (FUSE files included), so the next
// read asks the mount. Root only; the test is skipped otherwise.
func dropCaches(t *testing.T) {
	t.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Skipf("cannot drop the page cache (needs root): %v", err)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// TestCacheEveryField: for every field of the test catalogs (the APS JSONL runs, the
// databroker-pack msgpack run, the demo catalog), the bytes of every file of a mount on a cold
// cache (decoding), of a second mount on the same cache directory (served from the cache), of
// a --no-cache mount and of a mount whose --cache-dir cannot be created are the same, and
// the first are what testdata/expect.py computes from the raw documents. The unusable cache
// directory is named by exactly one log line.
func TestCacheEveryField(t *testing.T) {
	t.Parallel()
	demo := demoCatalog(t)
	for _, c := range []struct {
		name, dir string
		args      []string
	}{
		{"demo", demo, demoRootMap(demo)},
		{"aps-msgpack-pack", "../testdata/apstools/msgpack-pack/documents", nil},
		// The APS JSONL runs are the largest catalog here (a few minutes under the race
		// detector for four mounts); TestAPSJSONL checks them through the cache already.
	} {
		t.Run(c.name, func(t *testing.T) {
			files := runFiles(t, c.dir)
			cacheDir := t.TempDir()
			mountWith := func(args ...string) (string, *logBuffer, *server) {
				s := startServer(t, c.dir, append(slices.Clone(c.args), args...)...)
				return s.mnt, s.logs, s
			}
			cold, coldLogs, coldSrv := mountWith("--cache-dir", cacheDir)
			want := readTree(t, cold)
			coldSrv.stop(syscall.SIGTERM)
			for rel, v := range want {
				if strings.HasPrefix(v, "read: ") || strings.HasPrefix(v, "stat: ") {
					t.Errorf("cold mount: %s: %s; brokerfs said:\n%s", rel, v, coldLogs)
					break
				}
			}
			if n := len(cachedFiles(t, cacheDir)); n == 0 {
				t.Errorf("no cache files in %s after reading every file", cacheDir)
			}
			if n := countFiles(want, ".npy"); n == 0 {
				t.Fatalf("no .npy files in %s", cold)
			}

			warm, _, _ := mountWith("--cache-dir", cacheDir)
			// The reference reading, over the mount served from the cache.
			expect(t, warm, files)
			got := readTree(t, warm)
			sameTree(t, "second mount on the same cache dir: fields", fields(got), fields(want))
			t.Run("documents after a remount", func(t *testing.T) {
				sameTree(t, "second mount on the same cache dir: documents", documents(got), documents(want))
			})

			nocache, _, _ := mountWith("--no-cache")
			sameFieldsAndDocs(t, "--no-cache", readTree(t, nocache), want)

			bad := unusableCacheDir(t)
			unusable, logs, _ := mountWith("--cache-dir", bad)
			got = readTree(t, unusable)
			sameTree(t, "--cache-dir "+bad+": documents", documents(got), documents(want))
			t.Run("fields without a usable cache dir", func(t *testing.T) {
				if c.name == "demo" {
				}
				sameTree(t, "--cache-dir "+bad+": fields", fields(got), fields(want))
			})
			t.Run("one log line", func(t *testing.T) {
				if lines := linesNaming(logs.String(), bad); len(lines) != 1 {
					t.Errorf("the unusable cache dir %s is named by %d log lines, want 1:\n%s", bad, len(lines), logs)
				}
			})
		})
	}
}

// TestCacheReadOnlyDir: a read-only cache directory (a read-only tmpfs; root ignores mode
// bits) serves the same bytes as a usable one, with one log line naming it.
func TestCacheReadOnlyDir(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	src := t.TempDir()
	r := writeCacheRun(t, src, "run.msgpack", uidN(11), "--events", "50", "--width", "16")
	ro := t.TempDir()
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
		t.Skipf("mount a read-only tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
	mnt, logs := mount(t, src, "--cache-dir", ro)
	expect(t, mnt, []string{r.path})
	ref, _ := mount(t, src, "--cache-dir", t.TempDir())
	sameFieldsAndDocs(t, "read-only cache dir", readTree(t, mnt), readTree(t, ref))
	if lines := linesNaming(logs.String(), ro); len(lines) != 1 {
		t.Errorf("the read-only cache dir %s is named by %d log lines, want 1:\n%s", ro, len(lines), logs)
	}
}

// inotify watches files for opens and reads by any process.
type inotify struct {
	fd int
}

func newInotify(t *testing.T, paths ...string) *inotify {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	for _, p := range paths {
		if _, err := syscall.InotifyAddWatch(fd, p, syscall.IN_OPEN|syscall.IN_ACCESS); err != nil {
			t.Fatalf("inotify_add_watch %s: %v", p, err)
		}
	}
	return &inotify{fd: fd}
}

// events returns the number of opens and reads seen since the last call.
func (in *inotify) events() (opens, reads int) {
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(in.fd, buf)
		if n <= 0 || err != nil {
			return
		}
		for off := 0; off+16 <= n; {
			mask := binary.LittleEndian.Uint32(buf[off+4:])
			l := int(binary.LittleEndian.Uint32(buf[off+12:]))
			if mask&syscall.IN_OPEN != 0 {
				opens++
			}
			if mask&syscall.IN_ACCESS != 0 {
				reads++
			}
			off += 16 + l
		}
	}
}

// TestCacheDecodeOnce: after a remount on a warm cache, listing the run and reading every
// file of it neither opens nor reads the run file (inotify on it sees nothing), and every
// st_size and byte is what the first mount served (checked against expect.py).
func TestCacheDecodeOnce(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	r := writeCacheRun(t, src, "run.msgpack", uidN(21), "--events", "300", "--width", "256", "--page", "50")
	cacheDir := t.TempDir()
	s := startServer(t, src, "--cache-dir", cacheDir, "--list-ttl", "1h")
	expect(t, s.mnt, []string{r.path})
	want := readTree(t, s.mnt)
	s.stop(syscall.SIGTERM)

	in := newInotify(t, r.path)
	s2 := startServer(t, src, "--cache-dir", cacheDir, "--list-ttl", "1h")
	if _, err := os.ReadDir(filepath.Join(s2.mnt, r.uid, "primary")); err != nil {
		t.Fatal(err)
	}
	opens, reads := in.events()
	if opens+reads > 0 {
		t.Errorf("mounting on a warm cache and listing the run: the run file was opened %d times and read %d times, want 0 (listing index)", opens, reads)
	}
	got := readTree(t, s2.mnt)
	opens, reads = in.events()
	if opens+reads > 0 {
		t.Errorf("reading every file of the run after a remount on a warm cache: the run file was opened %d times and read %d times, want 0 (decode once)", opens, reads)
	}
	sameTree(t, "remount on a warm cache: fields", fields(got), fields(want))
	if countFiles(got, ".npy") == 0 {
		t.Fatal("no .npy files read")
	}
	sameTree(t, "remount on a warm cache: documents", documents(got), documents(want))
}

// TestCacheSourceChanges: under a running mount (--list-ttl 500ms, --live-ttl 200ms), after
// every file of the run was read once (the kernel holds their pages, entries and attributes):
//   - rewrite: the run file rewritten in place with the same size and other values;
//   - truncate: a finished run's file cut before its last primary events, the baseline's
//     last event and the stop (a live run again);
//   - append: a live run gets its last event and its stop;
//   - delete: the run file removed (not the newest run: see TestCacheDeletedNewestRun).
//
// 1.2 s later (the list TTL and a margin) the mount shows the new content (expect.py on the
// new file), the old bytes are not served, and a remount on the same cache directory too.
func TestCacheSourceChanges(t *testing.T) {
	t.Parallel()
	const ttl = 500 * time.Millisecond
	args := []string{"--events", "40", "--width", "8", "--page", "10"}
	for _, scenario := range []string{"rewrite", "truncate", "append", "delete"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			// Another run, newer (latest points to it), that does not change.
			other := writeCacheRun(t, src, "other.msgpack", uidN(30), "--t0", "1710000000")
			uid := uidN(31)
			var r cacheRun
			var full []byte
			if scenario == "append" {
				r = writeCacheRun(t, src, "run.jsonl", uid, "--events", "12")
				var err error
				if full, err = os.ReadFile(r.path); err != nil {
					t.Fatal(err)
				}
				// Start live: cut before the last primary event.
				if err := os.Truncate(r.path, r.offsets[len(r.offsets)-3]); err != nil {
					t.Fatal(err)
				}
			} else {
				r = writeCacheRun(t, src, "run.msgpack", uid, args...)
			}
			cacheDir := t.TempDir()
			mnt, logs := mount(t, src, "--cache-dir", cacheDir, "--list-ttl", ttl.String(), "--live-ttl", "200ms")
			expect(t, mnt, []string{other.path, r.path})
			before := readTree(t, filepath.Join(mnt, uid))

			switch scenario {
			case "rewrite":
				fi, err := os.Stat(r.path)
				if err != nil {
					t.Fatal(err)
				}
				next := writeCacheRun(t, t.TempDir(), "run.msgpack", uid, append(slices.Clone(args), "--seed", "2")...)
				b, err := os.ReadFile(next.path)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(b)) != fi.Size() {
					t.Fatalf("the rewritten run file has %d bytes, want %d (the same size)", len(b), fi.Size())
				}
				// In place (same inode), as a re-export would: only the mtime tells.
				if err := os.WriteFile(r.path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			case "truncate":
				if err := os.Truncate(r.path, r.offsets[len(r.offsets)-4]); err != nil {
					t.Fatal(err)
				}
			case "append":
				fi, err := os.Stat(r.path)
				if err != nil {
					t.Fatal(err)
				}
				appendTo(t, r.path, full[fi.Size():])
			case "delete":
				if err := os.Remove(r.path); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(ttl + 700*time.Millisecond)
			if scenario == "rewrite" || scenario == "append" {
				// The first access after the TTL, before anything lists the run: x.npy
				// read straight away must have changed (other values, more rows).
				x := filepath.Join(mnt, uid, "primary", "x.npy")
				b, err := os.ReadFile(x)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(b)
				if now := fmt.Sprintf("%d %s", len(b), hex.EncodeToString(sum[:8])); now == before["primary/x.npy"] {
					t.Errorf("primary/x.npy, read first thing %v after its run file changed, reads as before: %s", ttl+700*time.Millisecond, now)
				}
			}
			if scenario == "truncate" {
				// Before anything lists the run (a readdir can hide a stale run): the first
				// stat after the TTL must see the run as it is now: no stop, fewer rows
				// (expect.py below checks the values against the truncated file).
				if _, err := os.Stat(filepath.Join(mnt, uid, "stop.json")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("stat stop.json %v after the stop was cut from the run file: %v, want ENOENT", ttl+700*time.Millisecond, err)
				}
				var was int64
				fmt.Sscan(before["primary/x.npy"], &was)
				if fi, err := os.Stat(filepath.Join(mnt, uid, "primary", "x.npy")); err != nil || fi.Size() >= was {
					t.Errorf("stat primary/x.npy after the run file lost its last pages: %v, want fewer than the %d bytes before", fileInfoSize(fi, err), was)
				}
			}

			if scenario == "delete" {
				if _, err := os.Stat(filepath.Join(mnt, uid)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("stat of the deleted run's directory: %v, want ENOENT", err)
				}
				if _, err := os.Stat(filepath.Join(mnt, uid, "primary", "x.npy")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("stat of the deleted run's x.npy: %v, want ENOENT", err)
				}
				expect(t, mnt, []string{other.path})
				return
			}
			// Plain reads first: every file of the run must have changed where the
			// content did (x.npy always does: other values or other rows).
			after := readTree(t, filepath.Join(mnt, uid))
			if after["primary/x.npy"] == before["primary/x.npy"] {
				t.Errorf("primary/x.npy reads as before the run file changed: %s\n%s", after["primary/x.npy"], logs)
			}
			expect(t, mnt, []string{other.path, r.path})
			// A remount on the same cache directory: the new content, never the old entries.
			mnt2, _ := mount(t, src, "--cache-dir", cacheDir)
			expect(t, mnt2, []string{other.path, r.path})
		})
	}
}

// damage is a way of damaging a cache file.
type damage struct {
	name string
	do   func(t *testing.T, path string)
}

var damages = []damage{
	{"flip the first bytes", func(t *testing.T, p string) { flipAt(t, p, 0) }},
	{"flip the last byte", func(t *testing.T, p string) { flipAt(t, p, -1) }},
	{"flip a byte of the first data page", func(t *testing.T, p string) { flipAt(t, p, 200) }},
	{"truncate", func(t *testing.T, p string) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	}},
	{"delete the file", func(t *testing.T, p string) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}},
	{"delete the entry", func(t *testing.T, p string) {
		if err := os.RemoveAll(filepath.Dir(p)); err != nil {
			t.Fatal(err)
		}
	}},
}

// flipAt inverts the byte at off (negative: from the end) in place.
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off < 0 {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		off += fi.Size()
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestCacheDamagedEntries: cache files flipped at the start, the end or inside the first 4 KiB,
// truncated or deleted, and whole entries deleted, under a running mount (the page cache
// dropped, so that the kernel asks again) and between mounts: the damaged bytes are never
// served, every file reads as expect.py checked it, and the entries are rebuilt.
func TestCacheDamagedEntries(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	src := t.TempDir()
	r := writeCacheRun(t, src, "run.msgpack", uidN(41), "--events", "200", "--width", "64", "--page", "20")
	cacheDir := t.TempDir()
	s := startServer(t, src, "--cache-dir", cacheDir)
	expect(t, s.mnt, []string{r.path})
	want := readTree(t, s.mnt)
	if len(cachedFiles(t, cacheDir)) == 0 {
		t.Fatalf("nothing cached in %s", cacheDir)
	}
	// The wide column is the biggest file of the cache: damage it (and other files).
	victim := func() string {
		files := cachedFiles(t, cacheDir)
		if len(files) == 0 {
			t.Fatalf("no cache files in %s", cacheDir)
		}
		sort.Slice(files, func(i, j int) bool { return fileSize(files[i]) > fileSize(files[j]) })
		return files[0]
	}
	t.Run("running mount", func(t *testing.T) {
		for _, d := range damages {
			p := victim()
			d.do(t, p)
			dropCaches(t)
			sameTree(t, "running mount, after "+d.name+" of "+filepath.Base(p), fields(readTree(t, s.mnt)), fields(want))
		}
	})
	s.stop(syscall.SIGTERM)
	for _, d := range damages {
		p := victim()
		d.do(t, p)
		s := startServer(t, src, "--cache-dir", cacheDir)
		sameTree(t, "remount after "+d.name+" of "+filepath.Base(p), fields(readTree(t, s.mnt)), fields(want))
		s.stop(syscall.SIGTERM)
		if len(cachedFiles(t, cacheDir)) == 0 {
			t.Errorf("after %s and a remount that read everything, nothing is cached: not rebuilt", d.name)
		}
	}
}

func fileInfoSize(fi os.FileInfo, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d bytes", fi.Size())
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted when the test ends
// (after the brokerfs mounts made later, whose cleanups run first).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// TestCacheENOSPC: a 2 MiB tmpfs as the cache directory. A run whose stream is bigger than
// the tmpfs reads right (served without the cache, one log line naming the directory); a
// small run read afterwards is cached there.
func TestCacheENOSPC(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	// 512 events of float64[1024]: a 4 MiB wide.npy.
	big := writeCacheRun(t, src, "big.msgpack", uidN(51), "--events", "512", "--width", "1024", "--page", "64")
	small := writeCacheRun(t, src, "small.msgpack", uidN(52), "--events", "30", "--t0", "1700001000")
	dir := mountTmpfs(t, "2m")
	s := startServer(t, src, "--cache-dir", dir)
	bigTree := readTree(t, filepath.Join(s.mnt, big.uid))
	if got := bigTree["primary/wide.npy"]; !strings.HasPrefix(got, strconv.Itoa(128+512*1024*8)+" ") {
		t.Errorf("primary/wide.npy: %s, want %d bytes", got, 128+512*1024*8)
	}
	for _, p := range cachedFiles(t, dir) {
		if fileSize(p) > 1<<20 {
			t.Errorf("a cache file of %d bytes is in the 2 MiB tmpfs: %s", fileSize(p), p)
		}
	}
	readTree(t, filepath.Join(s.mnt, small.uid))
	if len(cachedFiles(t, dir)) == 0 {
		t.Errorf("the small run was not cached in %s after the big one failed to fit", dir)
	}
	// expect.py reads everything again (from the cache where it is there).
	expect(t, s.mnt, []string{big.path, small.path})
	logs := s.logs.String()
	if lines := linesNaming(logs, dir); len(lines) != 1 {
		t.Errorf("%d log lines name the full cache dir %s, want 1:\n%s", len(lines), dir, logs)
	}
}

// cacheUsage sums the sizes of the files the cap covers in a cache directory: everything but
// the SQLite databases (the index, the listing index) and lock files, which cache/doc.go
// leaves out. du is the disk use of the whole directory, in bytes.
func cacheUsage(dir string) (capped, du int64) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			du += st.Blocks * 512
		}
		base := filepath.Base(p)
		if strings.Contains(base, ".sqlite") || strings.HasSuffix(base, ".lock") {
			return nil
		}
		capped += fi.Size()
		return nil
	})
	return capped, du
}

// TestCacheMaxBelowOneField: --cache-max 1M with a 4 MiB field: the field reads right, and the
// bytes of cache files in the directory, sampled every millisecond or so while everything is
// read, never exceed 1 MiB.
func TestCacheMaxBelowOneField(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	big := writeCacheRun(t, src, "big.msgpack", uidN(61), "--events", "512", "--width", "1024", "--page", "64")
	small := writeCacheRun(t, src, "small.msgpack", uidN(62), "--events", "30", "--t0", "1700001000")
	dir := t.TempDir()
	const limit = 1 << 20
	var maxCapped, maxDU atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, d := cacheUsage(dir)
			if c > maxCapped.Load() {
				maxCapped.Store(c)
			}
			if d > maxDU.Load() {
				maxDU.Store(d)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	mnt, _ := mount(t, src, "--cache-dir", dir, "--cache-max", "1M")
	readTree(t, mnt)
	t.Run("values", func(t *testing.T) {
		expectNonFatal(t, mnt, []string{big.path, small.path})
	})
	readTree(t, mnt)
	close(stop)
	wg.Wait()
	t.Logf("peak: %d bytes of cache files, du %d bytes (the SQLite index included)", maxCapped.Load(), maxDU.Load())
	if maxCapped.Load() > limit {
		t.Errorf("cache files in %s reached %d bytes, over --cache-max 1M (%d)", dir, maxCapped.Load(), limit)
	}
	if len(cachedFiles(t, dir)) == 0 {
		t.Errorf("nothing cached under a 1 MiB cap: the small run fits")
	}
}

// expectNonFatal is expect that lets the test go on when the check fails.
func expectNonFatal(t *testing.T, mnt string, files []string) {
	t.Helper()
	out, err := pythonAsync(append([]string{"testdata/expect.py", mnt}, files...)...)()
	if err != nil {
		t.Errorf("expect.py %s: %v\n%s", mnt, err, out)
		return
	}
	t.Logf("expect.py: %s", strings.TrimSpace(out))
}

// pythonAsync runs a Python script in the background; wait returns its output and error.
func pythonAsync(args ...string) (wait func() (string, error)) {
	var out bytes.Buffer
	cmd := exec.Command(python, args...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	return func() (string, error) {
		if err != nil {
			return "", err
		}
		err := cmd.Wait()
		return out.String(), err
	}
}

// TestCacheTwoProcesses: two brokerfs processes mount the same runs with one --cache-dir and
// are read concurrently by expect.py; both are right, and a third mount on that directory
// afterwards reads right and serves the same bytes.
func TestCacheTwoProcesses(t *testing.T) {
	t.Parallel()
	if err := pythonCheck(); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	var files []string
	for i := 0; i < 3; i++ {
		r := writeCacheRun(t, src, fmt.Sprintf("run%d.msgpack", i), uidN(71+i), "--events", "300",
			"--width", "128", "--page", "25", "--t0", strconv.Itoa(1_700_000_000+1000*i), "--seed", strconv.Itoa(i+1))
		files = append(files, r.path)
	}
	dir := t.TempDir()
	a, _ := mount(t, src, "--cache-dir", dir)
	b, _ := mount(t, src, "--cache-dir", dir)
	// expect.py on both mounts and raw reads of every file of both, all at once.
	waits := [2]func() (string, error){}
	var trees [2]tree
	var treeErrs [2]error
	var wg sync.WaitGroup
	for i, mnt := range []string{a, b} {
		waits[i] = pythonAsync(append([]string{"testdata/expect.py", mnt}, files...)...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			trees[i], treeErrs[i] = walkTree(mnt)
		}()
	}
	wg.Wait()
	for i, w := range waits {
		out, err := w()
		if err != nil {
			t.Errorf("expect.py on mount %d: %v\n%s", i, err, out)
		}
		if treeErrs[i] != nil {
			t.Errorf("read mount %d: %v", i, treeErrs[i])
		}
	}
	sameTree(t, "concurrent reads of two mounts sharing a cache dir", fields(trees[1]), fields(trees[0]))
	ta, tb := readTree(t, a), readTree(t, b)
	sameTree(t, "two mounts sharing a cache dir", fields(tb), fields(ta))
	sameTree(t, "concurrent and later reads", fields(ta), fields(trees[0]))
	c, _ := mount(t, src, "--cache-dir", dir)
	expect(t, c, files)
	sameTree(t, "a third mount on the shared cache dir", fields(readTree(t, c)), fields(ta))
}

// TestCacheKillMidDecode: brokerfs is killed (SIGKILL) while it decodes a 16 MiB field into a
// cache entry; the dead mount is detached and a new mount on the same cache directory serves
// the right values (checked by expect.py): the torn entry is never served. The dead
// process's temporary files are removed by the next one.
func TestCacheKillMidDecode(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	r := writeCacheRun(t, src, "big.msgpack", uidN(81), "--events", "1024", "--width", "2048", "--page", "16")
	dir := t.TempDir()
	s := startServer(t, src, "--cache-dir", dir)
	wide := filepath.Join(s.mnt, r.uid, "primary", "wide.npy")
	readErr := make(chan error, 1)
	go func() {
		_, err := os.ReadFile(wide)
		readErr <- err
	}()
	// Wait until the builder has written part of the column into its temporary directory.
	tmp := filepath.Join(dir, "tmp")
	var torn string
	deadline := time.Now().Add(20 * time.Second)
	for torn == "" && time.Now().Before(deadline) {
		filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".npy") && fileSize(p) > 512<<10 {
				torn = p
				return fs.SkipAll
			}
			return nil
		})
		select {
		case err := <-readErr:
			t.Fatalf("the read of wide.npy finished (%v) before a partial column was seen in %s", err, tmp)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	if torn == "" {
		t.Fatalf("no partial column in %s within 20 s", tmp)
	}
	pid := s.cmd.Process.Pid
	s.checked = true
	s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("brokerfs did not die of SIGKILL")
	}
	detach(s.mnt)
	if err := <-readErr; err == nil {
		t.Logf("the read of wide.npy completed although brokerfs was killed (it was %s at %d bytes)", torn, fileSize(torn))
	}
	t.Logf("killed brokerfs (pid %d) with %s at %d bytes", pid, torn, fileSize(torn))

	s2 := startServer(t, src, "--cache-dir", dir)
	expect(t, s2.mnt, []string{r.path})
	if _, err := os.Stat(torn); err == nil {
		t.Errorf("the dead process's partial column %s is still there after a new mount read the run", torn)
	}
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), strconv.Itoa(pid)+"-") {
			t.Errorf("the dead process's %s is still in %s", e.Name(), tmp)
		}
	}
}

// TestCacheExternalMmap: the AD_HDF5 field of testdata/external_run.py (5 points of 2 frames
// in two files, the first gzip-chunked): np.load(mmap_mode='r')[k] equals h5py's frames of
// point k; then, on a fresh cache, with the FIRST file missing: np.load(mmap_mode='r') still
// opens, the second file's points read right, and the first file's fail with EIO.
func TestCacheExternalMmap(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	exp := filepath.Join(r.dir, "expected.npy")
	mnt, _ := mount(t, filepath.Join(r.dir, "cat_msgpack"), r.rootMap(), "--cache-dir", t.TempDir())
	det := filepath.Join(mnt, r.DetUID, "primary", "det.npy")
	// Two opens of one file, the second while the first is open and after a read through it
	// (which fills every frame: the sparse cache file is complete when the second open
	// comes), as np.load(mmap_mode='r') does.
	f1, err := os.Open(det)
	if err != nil {
		t.Fatalf("open det.npy: %v", err)
	}
	if _, err := f1.Read(make([]byte, 100)); err != nil {
		t.Fatalf("read det.npy: %v", err)
	}
	if f2, err := os.Open(det); err != nil {
		t.Errorf("a second open of det.npy while the first is open, after a read filled it: %v", err)
	} else {
		f2.Close()
	}
	f1.Close()
	t.Run("mmap", func(t *testing.T) {
		if out, err := exec.Command(python, "testdata/cache_external.py", exp, det, "all").CombinedOutput(); err != nil {
			t.Errorf("all files there: %v\n%s", err, out)
		} else {
			t.Logf("%s", strings.TrimSpace(string(out)))
		}
	})

	if err := os.Rename(r.DetFiles[0], r.DetFiles[0]+".gone"); err != nil {
		t.Fatal(err)
	}
	mnt2, logs := mount(t, filepath.Join(r.dir, "cat_msgpack"), r.rootMap(), "--cache-dir", t.TempDir())
	det2 := filepath.Join(mnt2, r.DetUID, "primary", "det.npy")
	out, err := exec.Command(python, "testdata/cache_external.py", exp, det2, "first-missing").CombinedOutput()
	if err != nil {
		t.Errorf("with the first HDF5 file missing: %v\n%s\nbrokerfs:\n%s", err, out, logs)
	} else {
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
}

// TestCacheDeletedNewestRun: the newest run's file is deleted under a running mount
// (--list-ttl 500ms); once the TTL has passed, latest and by-scan-id/<n> point to the run
// that is left, not to the deleted one.
func TestCacheDeletedNewestRun(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	old := writeCacheRun(t, src, "old.msgpack", uidN(91), "--t0", "1700000000")
	newest := writeCacheRun(t, src, "new.msgpack", uidN(92), "--t0", "1700001000")
	mnt, _ := mount(t, src, "--cache-dir", t.TempDir(), "--list-ttl", "500ms")
	links := []string{filepath.Join(mnt, "latest"), filepath.Join(mnt, "by-scan-id", "7")}
	for _, l := range links {
		if got, err := os.Readlink(l); err != nil || filepath.Base(got) != newest.uid {
			t.Fatalf("readlink %s = %q, %v; want the newest run %s", l, got, err, newest.uid)
		}
	}
	if err := os.Remove(newest.path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	for _, l := range links {
		if got, err := os.Readlink(l); err != nil || filepath.Base(got) != old.uid {
			t.Errorf("readlink %s 1.5 s after the newest run's file was deleted (--list-ttl 500ms) = %q, %v; want %s", l, got, err, old.uid)
		}
	}
	expect(t, mnt, []string{old.path})
}

// TestCacheEvictedUnderMount: --cache-max 1M and two runs whose entries do not fit together:
// reading the second evicts the first one's entries, and reading the first again (same
// mount) must decode it again, not fail.
func TestCacheEvictedUnderMount(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	// 200 events of float64[256]: about 400 KiB of .npy and 1 MiB of .csv per run.
	a := writeCacheRun(t, src, "a.msgpack", uidN(101), "--events", "200", "--width", "256", "--page", "50", "--t0", "1700000000")
	b := writeCacheRun(t, src, "b.msgpack", uidN(102), "--events", "200", "--width", "256", "--page", "50", "--t0", "1700001000", "--seed", "2")
	mnt, logs := mount(t, src, "--cache-dir", t.TempDir(), "--cache-max", "1M")
	first := fields(readTree(t, filepath.Join(mnt, a.uid)))
	readTree(t, filepath.Join(mnt, b.uid))
	again := fields(readTree(t, filepath.Join(mnt, a.uid)))
	sameTree(t, "run a read again after run b evicted its entries", again, first)
	expectNonFatal(t, mnt, []string{a.path, b.path})
	if t.Failed() {
		t.Logf("brokerfs:\n%s", logs)
	}
}
