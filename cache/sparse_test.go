package cache

import (
	"bytes"
	"errors"
	"testing"
)

func unitData(u int, n int64) []byte {
	return content("unit", string(rune('a'+u%26))+string(rune(u)), int(n))
}

func TestSparseFillPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	header := bytes.Repeat([]byte("H"), 4096)
	const units, ub = 10, 8192
	s := openStore(t, Options{Dir: dir})
	sp, err := s.OpenSparse("cam", header, units, ub)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Complete() || sp.Filled(0) || sp.Filled(-1) || sp.Filled(units) {
		t.Fatal("a new sparse file claims filled units")
	}
	for _, u := range []int{3, 0, 9} {
		if err := sp.Fill(u, unitData(u, ub)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Fill(3, unitData(3, ub)); err != nil {
		t.Fatalf("refill: %v", err)
	}
	if err := sp.Fill(units, unitData(0, ub)); err == nil {
		t.Fatal("Fill beyond the last unit succeeded")
	}
	if err := sp.Fill(1, make([]byte, ub-1)); err == nil {
		t.Fatal("Fill of a short unit succeeded")
	}
	if st := s.Stats(); st.Bytes != 4096+3*ub || st.Entries != 1 {
		t.Fatalf("Stats %+v", st)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, Options{Dir: dir})
	sp, err = s.OpenSparse("cam", header, units, ub)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for u := range units {
		want := u == 0 || u == 3 || u == 9
		if sp.Filled(u) != want {
			t.Fatalf("unit %d filled %v after reopen, want %v", u, sp.Filled(u), want)
		}
		if want {
			got := make([]byte, ub)
			if _, err := sp.File().ReadAt(got, 4096+int64(u)*ub); err != nil || !bytes.Equal(got, unitData(u, ub)) {
				t.Fatalf("unit %d: %v, content equal %v", u, err, bytes.Equal(got, unitData(u, ub)))
			}
		}
	}
	got := make([]byte, 4096)
	sp.File().ReadAt(got, 0)
	if !bytes.Equal(got, header) {
		t.Fatal("header not at the start of the file")
	}
	for u := range units {
		if err := sp.Fill(u, unitData(u, ub)); err != nil {
			t.Fatal(err)
		}
	}
	if !sp.Complete() {
		t.Fatal("not Complete after every unit was filled")
	}
	if st := s.Stats(); st.Bytes != 4096+units*ub {
		t.Fatalf("Bytes %d, want %d", st.Bytes, 4096+units*ub)
	}
	if fi, _ := sp.File().Stat(); fi.Size() != 4096+units*ub {
		t.Fatalf("file size %d", fi.Size())
	}
}

func TestSparseResetOnOtherGeometry(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	h1 := []byte("header-1")
	sp, err := s.OpenSparse("k", h1, 4, 100)
	if err != nil {
		t.Fatal(err)
	}
	sp.Fill(1, unitData(1, 100))
	// Open elsewhere with another geometry: the file is in use.
	if _, err := s.OpenSparse("k", []byte("header-2"), 4, 100); !errors.Is(err, ErrBusy) {
		t.Fatalf("reset of an open sparse file: %v, want ErrBusy", err)
	}
	// The same geometry shares it.
	sp2, err := s.OpenSparse("k", h1, 4, 100)
	if err != nil {
		t.Fatal(err)
	}
	sp2.Close()
	sp.Close()
	for _, g := range []struct {
		header []byte
		units  int
		ub     int64
	}{{[]byte("header-2"), 4, 100}, {h1, 5, 100}, {h1, 4, 101}} {
		sp, err := s.OpenSparse("k", h1, 4, 100)
		if err != nil {
			t.Fatal(err)
		}
		sp.Fill(1, unitData(1, 100))
		sp.Close()
		sp, err = s.OpenSparse("k", g.header, g.units, g.ub)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Filled(1) {
			t.Fatalf("geometry %q/%d/%d reused marks of another", g.header, g.units, g.ub)
		}
		if st := s.Stats(); st.Bytes != int64(len(g.header)) || st.Entries != 1 {
			t.Fatalf("after reset: %+v", st)
		}
		sp.Close()
	}
	if n := len(listDir(t, s.Dir(), sparseDir)); n != 1 {
		t.Fatalf("%d sparse files, want 1", n)
	}
}

func TestSparseDamageResets(t *testing.T) {
	for _, c := range []struct {
		name string
		at   func(t *testing.T, path string)
	}{
		{"truncated", func(t *testing.T, p string) { truncate(t, p, 100) }},
		{"header changed", func(t *testing.T, p string) { flipByte(t, p, 2) }},
		{"deleted", func(t *testing.T, p string) { remove(t, p) }},
		// What a crash may leave of a file whose creation was not synced.
		{"empty", func(t *testing.T, p string) { truncate(t, p, 0) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, Options{Dir: t.TempDir()})
			sp, err := s.OpenSparse("k", []byte("hdr"), 4, 100)
			if err != nil {
				t.Fatal(err)
			}
			sp.Fill(2, unitData(2, 100))
			sp.Close()
			c.at(t, s.sparsePath(sp.hash, sp.gen))
			sp, err = s.OpenSparse("k", []byte("hdr"), 4, 100)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			if sp.Filled(2) {
				t.Fatal("marks of a damaged sparse file reused")
			}
		})
	}
}

func TestSparseIsNotEvictedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	a := openStore(t, Options{Dir: dir, MaxBytes: 8500})
	b := openStore(t, Options{Dir: dir, MaxBytes: 8500})
	sp, err := a.OpenSparse("frames", make([]byte, 1000), 8, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for u := range 5 {
		if err := sp.Fill(u, unitData(u, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	// 6000 bytes pinned by an open Sparse of another Store: 5000 more cannot fit.
	bl, _ := b.Build("k")
	if err := bl.Reserve(5000); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve over a pinned sparse file: %v, want ErrFull", err)
	}
	bl.Abort()
	// Filling more evicts entries, never itself.
	mustBuild(t, b, "e1", map[string]int{"a": 2000})
	if err := sp.Fill(5, unitData(5, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup("e1"); !isMiss(err) {
		t.Fatalf("e1 should have made room: %v", err)
	}
	if err := sp.Fill(6, unitData(6, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := sp.Fill(7, unitData(7, 1000)); !errors.Is(err, ErrFull) {
		t.Fatalf("Fill beyond the cap: %v, want ErrFull", err)
	}
	if sp.Filled(7) {
		t.Fatal("a unit that did not fit is marked")
	}
	sp.Close()
	// Closed, it is evictable.
	mustBuild(t, b, "e2", map[string]int{"a": 5000})
	if st := b.Stats(); st.Entries != 1 {
		t.Fatalf("after evicting the closed sparse file: %+v", st)
	}
	if n := len(listDir(t, dir, sparseDir)); n != 0 {
		t.Fatalf("%d sparse files left", n)
	}
}

func TestSparseTwoStoresMergeMarks(t *testing.T) {
	dir := t.TempDir()
	a := openStore(t, Options{Dir: dir})
	b := openStore(t, Options{Dir: dir})
	spa, err := a.OpenSparse("k", []byte("h"), 6, 50)
	if err != nil {
		t.Fatal(err)
	}
	spb, err := b.OpenSparse("k", []byte("h"), 6, 50)
	if err != nil {
		t.Fatal(err)
	}
	for u := 0; u < 6; u += 2 {
		spa.Fill(u, unitData(u, 50))
		spb.Fill(u+1, unitData(u+1, 50))
	}
	if err := spa.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := spb.Sync(); err != nil {
		t.Fatal(err)
	}
	if !spb.Complete() {
		t.Fatal("b did not learn a's marks")
	}
	spa.Close()
	spb.Close()
	sp, _ := a.OpenSparse("k", []byte("h"), 6, 50)
	defer sp.Close()
	if !sp.Complete() {
		t.Fatal("merged marks lost")
	}
	for u := range 6 {
		got := make([]byte, 50)
		sp.File().ReadAt(got, 1+int64(u)*50)
		if !bytes.Equal(got, unitData(u, 50)) {
			t.Fatalf("unit %d wrong", u)
		}
	}
	if st := a.Stats(); st.Bytes != 1+6*50 {
		t.Fatalf("Bytes %d, want %d", st.Bytes, 1+6*50)
	}
}

func TestSparseBadGeometry(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	for _, g := range []struct {
		units int
		ub    int64
	}{{-1, 10}, {10, 0}, {10, -5}, {maxSparseUnits + 1, 1}, {1 << 20, 1 << 50}} {
		if _, err := s.OpenSparse("k", nil, g.units, g.ub); err == nil {
			t.Errorf("OpenSparse(%d units of %d) succeeded", g.units, g.ub)
		}
	}
}

// Garbage in a stored bitmap past the last unit does not count as filled units.
func TestSparseBitmapTailIgnored(t *testing.T) {
	s := openStore(t, Options{Dir: t.TempDir()})
	sp, err := s.OpenSparse("k", []byte("h"), 3, 10)
	if err != nil {
		t.Fatal(err)
	}
	for u := range 3 {
		sp.Fill(u, unitData(u, 10))
	}
	sp.Close()
	if _, err := s.db.Exec("UPDATE entries SET bitmap = x'ff'"); err != nil {
		t.Fatal(err)
	}
	sp, err = s.OpenSparse("k", []byte("h"), 3, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if !sp.Complete() {
		t.Fatal("3 of 3 units marked, yet not Complete")
	}
}

// Two Stores filling the same units before either persists: each reserved them, but the bytes are
// on disk once, and so in the accounting once both have synced.
func TestSparseOverlappingFillsCountOnce(t *testing.T) {
	dir := t.TempDir()
	a := openStore(t, Options{Dir: dir})
	b := openStore(t, Options{Dir: dir})
	spa, err := a.OpenSparse("k", make([]byte, 4096), 6, 4096)
	if err != nil {
		t.Fatal(err)
	}
	spb, err := b.OpenSparse("k", make([]byte, 4096), 6, 4096)
	if err != nil {
		t.Fatal(err)
	}
	for u := range 3 {
		spa.Fill(u, unitData(u, 4096))
		spb.Fill(u, unitData(u, 4096))
	}
	if err := spa.Close(); err != nil {
		t.Fatal(err)
	}
	if err := spb.Close(); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Bytes != 4*4096 || diskUsage(dir) != st.Bytes {
		t.Fatalf("Bytes %d, disk %d, want %d", st.Bytes, diskUsage(dir), 4*4096)
	}
}
