package integration

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemoCatalog mounts the demo catalog (msgpack and JSONL runs, event pages, strings,
// booleans, 1-D arrays, an aborted and a live run), checks every file against the reference
// reader and then what a shell user does: ls, readlink, cd by uid prefix, stat and read.
func TestDemoCatalog(t *testing.T) {
	t.Parallel()
	dir := demoCatalog(t)
	files := runFiles(t, dir)
	mnt, _ := mount(t, dir, demoRootMap(dir)...)
	expect(t, mnt, files)

	runs := summaries(t, files)
	uids := make([]string, len(runs))
	for i, r := range runs {
		uids[i] = r.UID
	}

	t.Run("ls", func(t *testing.T) {
		entries, err := os.ReadDir(mnt)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		want := append(slices.Clone(uids), "by-scan-id", "latest")
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("ls %s = %q, want %q", mnt, got, want)
		}
	})

	t.Run("latest", func(t *testing.T) {
		newest := runs[len(runs)-1] // summaries are oldest first
		fi, err := os.Lstat(filepath.Join(mnt, "latest"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("latest has mode %v, want a symlink", fi.Mode())
		}
		target, err := os.Readlink(filepath.Join(mnt, "latest"))
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Join(mnt, target) != filepath.Join(mnt, newest.UID) {
			t.Errorf("readlink latest = %q, want the newest run %s", target, newest.UID)
		}
	})

	t.Run("run directories", func(t *testing.T) {
		for _, r := range runs {
			fi, err := os.Stat(filepath.Join(mnt, r.UID))
			if err != nil {
				t.Fatal(err)
			}
			want := time.Unix(0, int64(r.Time*1e9))
			if !fi.IsDir() || fi.ModTime().Sub(want).Abs() > time.Microsecond {
				t.Errorf("%s: dir %v, mtime %v; want a dir with the start time %v", r.UID, fi.IsDir(), fi.ModTime(), want)
			}
		}
	})

	t.Run("uid prefix", func(t *testing.T) {
		for _, uid := range uids {
			prefix := uid[:6]
			if allDigits(prefix) { // a scan_id, not a prefix: take the first dash too
				prefix = uid[:9]
			}
			if n := countPrefix(uids, prefix); n != 1 {
				continue
			}
			fi, err := os.Stat(filepath.Join(mnt, prefix))
			if err != nil || !fi.IsDir() {
				t.Errorf("stat %s (unique prefix of %s): %v, %v; want a directory", prefix, uid, fi, err)
				continue
			}
			viaPrefix, err := os.ReadFile(filepath.Join(mnt, prefix, "start.json"))
			if err != nil {
				t.Fatal(err)
			}
			direct, err := os.ReadFile(filepath.Join(mnt, uid, "start.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(viaPrefix, direct) {
				t.Errorf("%s/start.json differs from %s/start.json", prefix, uid)
			}
		}
		if _, err := os.Stat(filepath.Join(mnt, "zzzz")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat of a prefix of no run: %v, want ENOENT", err)
		}
		// A prefix of fewer than 5 characters names no run, even a unique one.
		for _, uid := range uids {
			if allDigits(uid[:4]) {
				continue // a scan_id
			}
			if _, err := os.Stat(filepath.Join(mnt, uid[:4])); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("stat of the 4-character prefix %q: %v, want ENOENT", uid[:4], err)
			}
		}
	})

	t.Run("sizes and reads", func(t *testing.T) {
		n := checkReads(t, mnt)
		t.Logf("read %d files", n)
	})
}

// allDigits reports whether a name is a scan_id to the mount's root.
func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func countPrefix(uids []string, prefix string) int {
	n := 0
	for _, u := range uids {
		if strings.HasPrefix(u, prefix) {
			n++
		}
	}
	return n
}

// checkReads walks the mount (not following symlinks) and checks every file: stat's size is
// what a read returns, a second read gives the same bytes, and reads at offsets (as mmap and
// partial readers make them) give the same bytes as the whole file. It returns how many files
// it read.
func checkReads(t *testing.T, mnt string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(mnt, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n++
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		first, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if int64(len(first)) != fi.Size() {
			t.Errorf("%s: stat says %d bytes, a read returns %d", path, fi.Size(), len(first))
		}
		second, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(first, second) {
			t.Errorf("%s: a second read differs from the first", path)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		for _, off := range []int{len(first) - 1, len(first) / 2, len(first) / 3, 1, 0} {
			if off < 0 {
				continue
			}
			buf := make([]byte, min(7, len(first)-off))
			if _, err := f.ReadAt(buf, int64(off)); err != nil {
				t.Errorf("%s: read 7 bytes at %d: %v", path, off, err)
			} else if !bytes.Equal(buf, first[off:off+len(buf)]) {
				t.Errorf("%s: read at %d = %q, the whole file has %q there", path, off, buf, first[off:off+len(buf)])
			}
		}
		// Past the end: nothing, not an error.
		if k, err := f.ReadAt(make([]byte, 8), int64(len(first))+100); k != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("%s: read past the end = %d bytes, %v", path, k, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNumpyMmapAndPandas reads mounted files as analysis code does: np.load with
// mmap_mode='r' row by row (random access into the file), pandas.read_csv with its defaults.
func TestNumpyMmapAndPandas(t *testing.T) {
	t.Parallel()
	dir := demoCatalog(t)
	files := runFiles(t, dir)
	mnt, _ := mount(t, dir, demoRootMap(dir)...)
	out := runPython(t, append([]string{"-c", mmapScript, mnt}, files...)...)
	t.Log(strings.TrimSpace(out))
}

// mmapScript compares every row of memory-mapped .npy files, read backwards, with the
// reference values, and reads .csv files with pandas' defaults.
const mmapScript = `
import sys
sys.path.insert(0, "testdata")
import numpy as np, pandas as pd
import expect

mnt, files = sys.argv[1], sys.argv[2:]
checked = 0
for run in (expect.Run(f) for f in files):
    for name, s in expect.streams_of(run, lambda f: True).items():
        sdir = f"{mnt}/{run.uid}/{name}"
        for field, dk in s.keys.items():
            if field in s.external:
                continue
            want = expect.expected_field(dk, s.values(field))
            mm = np.load(f"{sdir}/{field}.npy", mmap_mode="r")
            assert isinstance(mm, np.memmap), type(mm)
            assert mm.shape == want.shape and mm.dtype == want.dtype, (sdir, field, mm.shape, mm.dtype)
            for k in reversed(range(len(want))):
                assert np.array_equal(mm[k], want[k], equal_nan=want.dtype.kind == "f"), (sdir, field, k, mm[k], want[k])
            checked += 1
        df = pd.read_csv(f"{sdir}/time.csv")
        assert list(df.columns) == ["seq_num", "time"], df.columns
        assert df["seq_num"].tolist() == s.seq.tolist(), (sdir, df["seq_num"].tolist())
        assert np.allclose(df["time"], s.time, rtol=1e-15, atol=0), sdir
print(f"mmap row by row: {checked} fields")
`

// TestQueryAndInclude checks the run filter (--query), the field filters (--include,
// --exclude) and `brokerfs ls`.
func TestQueryAndInclude(t *testing.T) {
	t.Parallel()
	dir := demoCatalog(t)
	files := runFiles(t, dir)
	runs := summaries(t, files)

	t.Run("query", func(t *testing.T) {
		const query = `{"plan_name": "count"}`
		mnt, _ := mount(t, dir, append(demoRootMap(dir), "--query", query)...)
		expect(t, mnt, files, "--query", query)
		var want []string
		for _, r := range runs {
			if r.PlanName == "count" {
				want = append(want, r.UID)
			}
		}
		if len(want) == 0 || len(want) == len(runs) {
			t.Fatalf("the demo catalog should have some count runs and some others: %+v", runs)
		}
		entries, err := os.ReadDir(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(want)+2 {
			t.Errorf("the mount lists %d entries, want %d count runs + by-scan-id + latest", len(entries), len(want))
		}
	})

	t.Run("include", func(t *testing.T) {
		mnt, _ := mount(t, dir, append(demoRootMap(dir), "--include", "det*")...)
		expect(t, mnt, files, "--include", "det*")
		primary := filepath.Join(mnt, "by-scan-id", "1", "primary")
		if _, err := os.Stat(filepath.Join(primary, "det.npy")); err != nil {
			t.Errorf("det.npy: %v", err)
		}
		if _, err := os.Stat(filepath.Join(primary, "motor.npy")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("motor.npy with --include 'det*': %v, want ENOENT", err)
		}
	})

	t.Run("exclude", func(t *testing.T) {
		mnt, _ := mount(t, dir, append(demoRootMap(dir), "--exclude", "det*", "--exclude", "status")...)
		expect(t, mnt, files, "--exclude", "det*", "--exclude", "status")
	})

	t.Run("ls", func(t *testing.T) {
		out, code := run(t, time.Minute, "ls", dir)
		if code != 0 {
			t.Fatalf("brokerfs ls exited %d:\n%s", code, out)
		}
		checkLs(t, out, runs)
	})

	t.Run("ls query", func(t *testing.T) {
		out, code := run(t, time.Minute, "ls", "--query", `{"plan_name": "count"}`, dir)
		if code != 0 {
			t.Fatalf("brokerfs ls exited %d:\n%s", code, out)
		}
		var count []runSummary
		for _, r := range runs {
			if r.PlanName == "count" {
				count = append(count, r)
			}
		}
		checkLs(t, out, count)
	})
}

// checkLs checks `brokerfs ls` output: one line per run naming its uid, scan_id, plan, start
// time (local) and exit status (success, abort or live), apart from a header line.
func checkLs(t *testing.T, out string, runs []runSummary) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 0 && strings.Contains(strings.ToUpper(lines[0]), "UID") {
		lines = lines[1:]
	}
	if len(lines) != len(runs) {
		t.Fatalf("brokerfs ls printed %d run lines, want %d:\n%s", len(lines), len(runs), out)
	}
	for _, r := range runs {
		var line string
		for _, l := range lines {
			if strings.Contains(l, r.UID) {
				line = l
			}
		}
		start := time.Unix(0, int64(math.Floor(r.Time)*1e9)).Local()
		want := []string{r.UID, jsonNumber(r.ScanID), r.PlanName, start.Format("2006-01-02"), start.Format("15:04:05"), r.ExitStatus}
		fields := strings.Fields(line)
		for _, w := range want {
			if !slices.Contains(fields, w) {
				t.Errorf("brokerfs ls: the line of run %s lacks %q: %q", r.UID, w, line)
			}
		}
	}
}

// jsonNumber formats a JSON number as an integer, "" for anything else.
func jsonNumber(v any) string {
	if f, ok := v.(float64); ok && f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return ""
}

// demoRootMap is the --root-map the demo's detector run needs: its resources name the root the
// beamline wrote to; the demo puts the files under DIR/detector.
func demoRootMap(dir string) []string {
	return []string{"--root-map", "/nsls2/data/demo/proposals/2026-3/detector=" + filepath.Join(dir, "detector")}
}
