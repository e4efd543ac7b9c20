package cache

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// reseal rewrites key's manifest so that it records the files' current size, ctime and inode but
// keeps the old checksums: what a corruption that leaves the metadata alone looks like.
func reseal(t *testing.T, s *Store, key string) {
	t.Helper()
	dir := s.entryPath(hashKey(key))
	m, _, err := readManifest(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Files {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, m.Files[i].Name), &st); err != nil {
			t.Fatal(err)
		}
		m.Files[i].Size, m.Files[i].Ctime, m.Files[i].Ino = st.Size, st.Ctim.Nano(), st.Ino
	}
	writeManifest(t, dir, m, FormatVersion)
}

// writeManifest replaces dir's manifest with m encoded as version v (with a valid CRC).
func writeManifest(t *testing.T, dir string, m *manifest, v uint32) {
	t.Helper()
	data, err := encodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(data[len(manifestMagic):], v)
	binary.LittleEndian.PutUint32(data[len(data)-4:], crc32.Checksum(data[:len(data)-4], crcTable))
	p := filepath.Join(dir, manifestName)
	os.Remove(p)
	if err := os.WriteFile(p, data, 0o400); err != nil {
		t.Fatal(err)
	}
}

// flipByte inverts one byte of a file in place.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	os.Chmod(path, 0o600)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestDamageIsNeverServed(t *testing.T) {
	const size = 20000
	files := map[string]int{"data.npy": size, "small": 10}
	type damage struct {
		name   string
		at     func(t *testing.T, s *Store, dir string)
		onOpen bool // Lookup passes (the metadata still matches), Entry.Open must catch it
	}
	data := func(dir string) string { return filepath.Join(dir, "data.npy") }
	man := func(dir string) string { return filepath.Join(dir, manifestName) }
	cases := []damage{
		{name: "file truncated", at: func(t *testing.T, s *Store, dir string) { os.Truncate(data(dir), size-1) }},
		{name: "file emptied", at: func(t *testing.T, s *Store, dir string) { os.Truncate(data(dir), 0) }},
		{name: "file appended", at: func(t *testing.T, s *Store, dir string) {
			f, _ := os.OpenFile(data(dir), os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte("x"))
			f.Close()
		}},
		{name: "file deleted", at: func(t *testing.T, s *Store, dir string) { os.Remove(data(dir)) }},
		{name: "file replaced, same size", at: func(t *testing.T, s *Store, dir string) {
			os.WriteFile(data(dir)+".new", make([]byte, size), 0o600)
			os.Rename(data(dir)+".new", data(dir))
		}},
		{name: "file rewritten in place", at: func(t *testing.T, s *Store, dir string) { flipByte(t, data(dir), 5000) }},
		{name: "file is a symlink", at: func(t *testing.T, s *Store, dir string) {
			os.WriteFile(filepath.Join(t.TempDir(), "x"), content("k", "data.npy", size), 0o600)
			os.Remove(data(dir))
			os.Symlink(filepath.Join(t.TempDir(), "x"), data(dir))
		}},
		{name: "first KiB corrupted", onOpen: true, at: func(t *testing.T, s *Store, dir string) {
			flipByte(t, data(dir), 100)
			reseal(t, s, "k")
		}},
		{name: "last KiB corrupted", onOpen: true, at: func(t *testing.T, s *Store, dir string) {
			flipByte(t, data(dir), size-100)
			reseal(t, s, "k")
		}},
		{name: "file deleted after Lookup", onOpen: true, at: func(t *testing.T, s *Store, dir string) {
			os.Remove(data(dir))
		}},
		{name: "whole entry deleted", at: func(t *testing.T, s *Store, dir string) { os.RemoveAll(dir) }},
		{name: "manifest deleted", at: func(t *testing.T, s *Store, dir string) { os.Remove(man(dir)) }},
		{name: "manifest truncated", at: func(t *testing.T, s *Store, dir string) {
			fi, _ := os.Stat(man(dir))
			os.Truncate(man(dir), fi.Size()/2)
		}},
		{name: "manifest bit flipped", at: func(t *testing.T, s *Store, dir string) { flipByte(t, man(dir), 40) }},
		{name: "manifest garbage", at: func(t *testing.T, s *Store, dir string) {
			os.Remove(man(dir))
			os.WriteFile(man(dir), content("garbage", "", 300), 0o600)
		}},
		{name: "manifest empty", at: func(t *testing.T, s *Store, dir string) { os.Truncate(man(dir), 0) }},
		{name: "manifest of another format version", at: func(t *testing.T, s *Store, dir string) {
			m, _, _ := readManifest(man(dir))
			writeManifest(t, dir, m, FormatVersion+1)
		}},
		{name: "manifest of another key", at: func(t *testing.T, s *Store, dir string) {
			m, _, _ := readManifest(man(dir))
			m.Key = []byte("other")
			writeManifest(t, dir, m, FormatVersion)
		}},
		{name: "manifest is a directory", at: func(t *testing.T, s *Store, dir string) {
			os.Remove(man(dir))
			os.Mkdir(man(dir), 0o700)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, Options{Dir: t.TempDir()})
			mustBuild(t, s, "k", files)
			dir := s.entryPath(hashKey("k"))
			var e *Entry
			if c.onOpen {
				var err error
				if c.name == "file deleted after Lookup" {
					if e, err = s.Lookup("k"); err != nil {
						t.Fatal(err)
					}
					c.at(t, s, dir)
				} else {
					c.at(t, s, dir)
					if e, err = s.Lookup("k"); err != nil {
						t.Fatalf("Lookup: %v (the damage should pass the metadata checks)", err)
					}
				}
				if _, err := readEntryFile(e, "small"); err != nil {
					t.Fatalf("an undamaged file: %v", err)
				}
				if _, err := e.Open("data.npy"); !isMiss(err) {
					t.Fatalf("Entry.Open of a damaged file: %v, want ErrMiss", err)
				}
			} else {
				// Writable first, as for a non-root owner (root writes 0400 files anyway); the
				// chmod changes ctimes, which every one of these damages does too.
				for _, name := range []string{"data.npy", manifestName} {
					os.Chmod(filepath.Join(dir, name), 0o600)
				}
				c.at(t, s, dir)
				if e, err := s.Lookup("k"); !isMiss(err) {
					t.Fatalf("Lookup of a damaged entry: %v, %v; want ErrMiss", e, err)
				}
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Fatalf("damaged entry left on disk: %v", err)
			}
			if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 {
				t.Fatalf("damaged entry left in the index: %+v", st)
			}
			if _, err := s.Lookup("k"); !isMiss(err) {
				t.Fatalf("second Lookup: %v", err)
			}
			checkEntry(t, mustBuild(t, s, "k", files), files)
			e2, err := s.Lookup("k")
			if err != nil {
				t.Fatalf("Lookup after rebuild: %v", err)
			}
			checkEntry(t, e2, files)
		})
	}
}

// An Entry of a generation that has since been replaced must not remove the new one.
func TestStaleEntryDoesNotRemoveNewer(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	files := map[string]int{"a": 100}
	old := mustBuild(t, s, "k", files)
	if err := s.Remove("k"); err != nil {
		t.Fatal(err)
	}
	mustBuild(t, s, "k", files)
	if _, err := old.Open("a"); !isMiss(err) {
		t.Fatalf("Open through a removed generation: %v, want ErrMiss", err)
	}
	e, err := s.Lookup("k")
	if err != nil {
		t.Fatalf("the newer entry was removed: %v", err)
	}
	checkEntry(t, e, files)
}

func TestUnindexedEntryIsAMiss(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	mustBuild(t, s, "k", map[string]int{"a": 100})
	// What a crash between the rename and the index commit leaves: a directory without a row.
	if _, err := s.db.Exec("DELETE FROM entries"); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	clear(s.touched)
	s.mu.Unlock()
	// It is whole (the manifest was written last): served until its access reaches the index,
	// which finds no row and removes it.
	e, err := s.Lookup("k")
	if err != nil {
		t.Fatalf("Lookup of an unindexed, complete entry: %v", err)
	}
	checkEntry(t, e, map[string]int{"a": 100})
	s.flushAccesses()
	if _, err := s.Lookup("k"); !isMiss(err) {
		t.Fatalf("Lookup of an unindexed entry after its access was recorded: %v", err)
	}
	if _, err := os.Lstat(s.entryPath(hashKey("k"))); !os.IsNotExist(err) {
		t.Fatal("unindexed entry left on disk")
	}
	// And the Open after a crash removes such directories, and rows without files. (A Store
	// that closed cleanly leaves neither; a crash leaves its owner lock file, unlocked.)
	mustBuild(t, s, "k2", map[string]int{"a": 100})
	mustBuild(t, s, "k3", map[string]int{"a": 100})
	s.db.Exec("DELETE FROM entries WHERE key = ?", []byte("k2"))
	os.RemoveAll(s.entryPath(hashKey("k3")))
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, tmpDir, "1-dead"+lockSuffix), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, Options{Dir: dir})
	if st := s2.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("after reopen: %+v", st)
	}
	if n := diskUsage(dir); n != 0 {
		t.Fatalf("%d bytes left on disk", n)
	}
}

func TestCorruptIndexIsReplaced(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	mustBuild(t, s, "k", map[string]int{"a": 1000})
	s.Close()
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(filepath.Join(dir, indexName+suffix))
	}
	if err := os.WriteFile(filepath.Join(dir, indexName), content("not", "sqlite", 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	if _, err := s.Lookup("k"); !isMiss(err) {
		t.Fatalf("Lookup with a new index: %v, want ErrMiss", err)
	}
	if st := s.Stats(); st.Entries != 0 || diskUsage(dir) != 0 {
		t.Fatalf("entries without rows kept: %+v, disk %d", st, diskUsage(dir))
	}
	checkEntry(t, mustBuild(t, s, "k", map[string]int{"a": 1000}), map[string]int{"a": 1000})
}

func TestIndexOfAnotherVersionIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	if _, err := s.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("Open of an index of another version succeeded")
	}
}
