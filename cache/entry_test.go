package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRoundTripAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"a.npy": 10000, "b.npy": 0, "time.npy": 4096, "x.csv": 9000}
	s := openStore(t, Options{Dir: dir})
	e := mustBuild(t, s, "run/primary", files)
	checkEntry(t, e, files)
	var want int64
	for _, n := range files {
		want += int64(n)
	}
	if e.Size() <= want || e.Size() > want+4096 {
		t.Fatalf("Size %d, files %d", e.Size(), want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, Options{Dir: dir})
	e2, err := s2.Lookup("run/primary")
	if err != nil {
		t.Fatalf("Lookup after reopen: %v", err)
	}
	checkEntry(t, e2, files)
	if e2.Size() != e.Size() {
		t.Fatalf("Size %d after reopen, %d before", e2.Size(), e.Size())
	}
	if got := e2.Files(); len(got) != len(files) {
		t.Fatalf("Files %v", got)
	}
	if _, err := s2.Lookup("run/other"); !isMiss(err) {
		t.Fatalf("Lookup of an absent key: %v, want ErrMiss", err)
	}
	st := s2.Stats()
	if st.Entries != 1 || st.Bytes != e.Size() || st.Hits != 1 || st.Misses != 1 || st.Reserved != 0 {
		t.Fatalf("Stats %+v", st)
	}
	infos, err := s2.Entries()
	if err != nil || len(infos) != 1 || infos[0].Key != "run/primary" || infos[0].Size != e.Size() ||
		infos[0].Sparse {
		t.Fatalf("Entries %+v, %v", infos, err)
	}
	if _, err := e2.Open("missing.npy"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a name not in the entry: %v", err)
	}
}

func TestUntrustedKeys(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	keys := []string{"", "/", "../../etc/passwd", "a\x00b", "\xff\xfe not utf-8", string(make([]byte, 5000)),
		"a/b", "a_b"}
	files := map[string]int{"f": 100}
	for _, k := range keys {
		mustBuild(t, s, k, files)
	}
	for _, k := range keys {
		e, err := s.Lookup(k)
		if err != nil {
			t.Fatalf("Lookup %q: %v", k, err)
		}
		if e.Key != k {
			t.Fatalf("key %q came back as %q", k, e.Key)
		}
		checkEntry(t, e, files)
	}
	if n := s.Stats().Entries; n != int64(len(keys)) {
		t.Fatalf("%d entries, want %d", n, len(keys))
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "..", "etc")); err == nil {
		t.Fatal("a key escaped the cache dir")
	}
}

func TestCreateRejectsBadNames(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	b, err := s.Build("k")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	for _, name := range []string{"", ".", "..", "../x", "a/b", "MANIFEST", "a b", "é", string(make([]byte, 300))} {
		if _, err := b.Create(name); err == nil {
			t.Errorf("Create(%q) succeeded", name)
		}
	}
	if _, err := b.Create("ok-1.2_x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create("ok-1.2_x"); err == nil {
		t.Fatal("Create of the same name twice succeeded")
	}
}

func TestAbortAndReuse(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir(), MaxBytes: 1 << 20})
	b, err := s.Build("k")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := b.Create("a")
	if err := b.Reserve(5000); err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 5000))
	if r := s.Stats().Reserved; r != 5000 {
		t.Fatalf("Reserved %d, want 5000", r)
	}
	b.Abort()
	b.Abort()
	if st := s.Stats(); st.Reserved != 0 || st.Entries != 0 {
		t.Fatalf("after Abort: %+v", st)
	}
	if d := builderDirs(t, s.Dir()); len(d) != 0 {
		t.Fatalf("temp dirs left: %v", d)
	}
	if _, err := b.Commit(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Abort: %v", err)
	}
	e := mustBuild(t, s, "k", map[string]int{"a": 10})
	// Abort after Commit is a no-op: the entry stays.
	b2, _ := s.Build("k2")
	b2.Create("x")
	if _, err := b2.Commit(nil); err != nil {
		t.Fatal(err)
	}
	b2.Abort()
	if _, err := s.Lookup("k2"); err != nil {
		t.Fatalf("Abort after Commit removed the entry: %v", err)
	}
	checkEntry(t, e, map[string]int{"a": 10})
}

func TestTTL(t *testing.T) {
	clk := newClock()
	s := openStore(t, Options{Dir: t.TempDir(), TTL: time.Hour, Now: clk.Now})
	mustBuild(t, s, "k", map[string]int{"a": 10})
	clk.Add(59 * time.Minute)
	if _, err := s.Lookup("k"); err != nil {
		t.Fatalf("Lookup within TTL: %v", err)
	}
	clk.Add(2 * time.Minute)
	if _, err := s.Lookup("k"); !isMiss(err) {
		t.Fatalf("Lookup after TTL: %v, want ErrMiss", err)
	}
	if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("expired entry still indexed: %+v", st)
	}
	if _, err := os.Stat(s.entryPath(hashKey("k"))); !os.IsNotExist(err) {
		t.Fatalf("expired entry still on disk: %v", err)
	}
	e := mustBuild(t, s, "k", map[string]int{"a": 10})
	checkEntry(t, e, map[string]int{"a": 10})
}

func TestMetaAndEmptyEntry(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	b, _ := s.Build("empty")
	meta := bytes.Repeat([]byte{0, 1, 2, 255}, 1000)
	if _, err := b.Commit(meta); err != nil {
		t.Fatal(err)
	}
	e, err := s.Lookup("empty")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Meta, meta) || len(e.Files()) != 0 {
		t.Fatalf("meta %d bytes, files %v", len(e.Meta), e.Files())
	}
}
