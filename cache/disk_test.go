package cache

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// tmpfs mounts a tmpfs of size at a new directory, or skips the test when not root.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the filesystem is full.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return p
		}
	}
}

func TestNoSpace(t *testing.T) {
	mnt := tmpfs(t, "1m")
	dir := filepath.Join(mnt, "cache")
	s := openStore(t, Options{Dir: dir, MaxBytes: 100 << 20})
	small := map[string]int{"a": 1000}
	mustBuild(t, s, "before", small)

	// The caller's own writes fail: it aborts, nothing is left.
	_, err := build(s, "big", map[string]int{"a": 2 << 20})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("build of more than the disk: %v, want ENOSPC", err)
	}
	if d := builderDirs(t, dir); len(d) != 0 {
		t.Fatalf("builder dirs left: %v", d)
	}
	if st := s.Stats(); st.Reserved != 0 || st.Entries != 1 {
		t.Fatalf("Stats %+v", st)
	}

	// Commit itself fails (its files are empty: the manifest or the index is what cannot be written).
	filler := fillDisk(t, mnt)
	b, err := s.Build("empty")
	if err != nil {
		t.Fatal(err)
	}
	b.Create("a")
	_, err = b.Commit([]byte("meta"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Commit on a full disk: %v, want ErrUnavailable", err)
	}
	t.Logf("Commit on a full disk: %v", err)
	if d := builderDirs(t, dir); len(d) != 0 {
		t.Fatalf("builder dirs left: %v", d)
	}
	if _, err := s.Lookup("empty"); !isMiss(err) {
		t.Fatalf("Lookup of the failed commit: %v", err)
	}
	e, err := s.Lookup("before")
	if err != nil {
		t.Fatalf("an entry from before the disk filled: %v", err)
	}
	checkEntry(t, e, small)

	// Sparse fills fail the same way, and do not mark.
	os.Remove(filler)
	sp, err := s.OpenSparse("frames", make([]byte, 4096), 1024, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	fillDisk(t, mnt)
	var ferr error
	for u := 0; u < 1024 && ferr == nil; u++ {
		ferr = sp.Fill(u, unitData(u, 4096))
		if ferr != nil && sp.Filled(u) {
			t.Fatalf("unit %d failed (%v) but is marked", u, ferr)
		}
	}
	if !errors.Is(ferr, ErrUnavailable) {
		t.Fatalf("Fill on a full disk: %v, want ErrUnavailable", ferr)
	}

	// With space again, it works, and the accounting matches the disk.
	os.Remove(filepath.Join(mnt, "filler"))
	checkEntry(t, mustBuild(t, s, "after", small), small)
	if n := len(listDir(t, dir, trashDir)); n != 0 {
		t.Fatalf("trash left: %d", n)
	}
	sp.Close()
	if st := s.Stats(); diskUsage(dir) != st.Bytes || st.Reserved != 0 {
		t.Fatalf("Stats %+v, disk %d", st, diskUsage(dir))
	}
}

func TestReadOnlyDir(t *testing.T) {
	rw := filepath.Join(t.TempDir(), "cache")
	files := map[string]int{"a": 1000}
	s := openStore(t, Options{Dir: rw})
	mustBuild(t, s, "k", files)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dir := rw
	if os.Geteuid() == 0 {
		// Root writes through permission bits: a read-only bind mount of the same directory.
		dir = filepath.Join(t.TempDir(), "ro")
		os.Mkdir(dir, 0o700)
		if out, err := exec.Command("mount", "--bind", rw, dir).CombinedOutput(); err != nil {
			t.Skipf("bind mount: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
		if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
			t.Skipf("remount ro: %v: %s", err, out)
		}
	} else {
		chmodDirs(rw, 0o500) // directories only: file ctimes stay as the manifests recorded them
		defer chmodDirs(rw, 0o700)
	}
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open of a read-only dir: %v, want ErrUnavailable", err)
	}
	if _, err := Open(Options{Dir: filepath.Join(dir, "sub")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open of a dir that cannot be created: %v, want ErrUnavailable", err)
	}
	// Nothing was changed by the attempts.
	if os.Geteuid() != 0 {
		chmodDirs(rw, 0o700)
	}
	s = openStore(t, Options{Dir: rw})
	e, err := s.Lookup("k")
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, files)
}

func chmodDirs(root string, mode os.FileMode) {
	filepath.Walk(root, func(p string, fi os.FileInfo, _ error) error {
		if fi != nil && fi.IsDir() {
			os.Chmod(p, mode)
		}
		return nil
	})
}

// A Store whose directory turns read-only under it: writes fail recognisably, reads still serve.
func TestDirTurnsReadOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes through permission bits (TestReadOnlyDir covers root with a bind mount)")
	}
	dir := filepath.Join(t.TempDir(), "cache")
	files := map[string]int{"a": 1000}
	s := openStore(t, Options{Dir: dir})
	mustBuild(t, s, "k", files)
	os.Chmod(filepath.Join(dir, tmpDir), 0o500)
	defer os.Chmod(filepath.Join(dir, tmpDir), 0o700)
	if _, err := s.Build("new"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Build on a read-only dir: %v, want ErrUnavailable", err)
	}
	e, err := s.Lookup("k")
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, files)
}
