package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bootOf returns a bootID option of a fixed id: a new id is a restart of the machine.
func bootOf(b byte) func() ([bootLen]byte, bool) {
	return func() ([bootLen]byte, bool) {
		var id [bootLen]byte
		for i := range id {
			id[i] = b
		}
		return id, true
	}
}

// manifestBoot returns the boot id recorded in key's manifest (zero: durable).
func manifestBoot(t *testing.T, s *Store, key string) [bootLen]byte {
	t.Helper()
	m, _, err := readManifest(filepath.Join(s.entryPath(hashKey(key)), manifestName))
	if err != nil {
		t.Fatalf("manifest of %q: %v", key, err)
	}
	return m.Boot
}

func TestReadBootID(t *testing.T) {
	raw, err := os.ReadFile(bootIDFile)
	if err != nil {
		t.Skipf("no %s: %v", bootIDFile, err)
	}
	id, ok := readBootID()
	if !ok {
		t.Fatalf("boot id %q not read", raw)
	}
	// Independently: the UUID's 32 hex digits, in order.
	want := strings.ReplaceAll(strings.TrimSpace(string(raw)), "-", "")
	got := ""
	for _, b := range id {
		got += string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&15])
	}
	if got != want {
		t.Fatalf("boot id %s, file says %s", got, want)
	}
}

// An entry is served as soon as it is committed, and synced in the background: after Close its
// manifest says durable, has the length it had (the accounting is exact), and it is served after a
// restart of the machine.
func TestCommitThenSyncInBackground(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"a.npy": 9000, "b.npy": 5}
	s := openStore(t, Options{Dir: dir, bootID: bootOf(1)})
	e := mustBuild(t, s, "k", files)
	checkEntry(t, e, files)
	mpath := filepath.Join(s.entryPath(hashKey("k")), manifestName)
	before, err := os.Stat(mpath)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b := manifestBoot(t, s, "k"); b != ([bootLen]byte{}) {
		t.Fatalf("after Close the manifest still names boot %x", b)
	}
	after, err := os.Stat(mpath)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() {
		t.Fatalf("manifest of %d bytes, %d before the sync", after.Size(), before.Size())
	}
	if left := listDir(t, dir, tmpDir); len(left) != 0 {
		t.Fatalf("tmp/ left: %v", left)
	}

	s2 := openStore(t, Options{Dir: dir, bootID: bootOf(2)}) // the machine restarted
	e2, err := s2.Lookup("k")
	if err != nil {
		t.Fatalf("a durable entry after a restart: %v", err)
	}
	checkEntry(t, e2, files)
	if st := s2.Stats(); diskUsage(dir) != st.Bytes {
		t.Fatalf("disk %d, index %+v", diskUsage(dir), st)
	}
}

// An entry committed but never synced (its Store died first) is served during the same boot, and
// synced by the Store that finds it; after a restart of the machine it is a miss, removed and
// rebuilt, never served.
func TestUnsyncedEntryAcrossRestart(t *testing.T) {
	files := map[string]int{"data.npy": 20000, "small": 10}
	for _, sameBoot := range []bool{true, false} {
		dir := t.TempDir()
		s := openStore(t, Options{Dir: dir, bootID: bootOf(1), holdSync: true})
		mustBuild(t, s, "k", files)
		if b := manifestBoot(t, s, "k"); b == ([bootLen]byte{}) {
			t.Fatal("committed entry already durable: the test proves nothing")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if b := manifestBoot(t, s, "k"); b == ([bootLen]byte{}) {
			t.Fatal("a Store holding its syncs synced")
		}
		// After a restart the files are intact here (this kernel kept them), and yet the entry
		// must be a miss: the boot id alone cannot know what a real crash kept.
		boot := bootOf(1)
		if !sameBoot {
			boot = bootOf(2)
		}
		s2 := openStore(t, Options{Dir: dir, bootID: boot})
		e, err := s2.Lookup("k")
		if sameBoot {
			if err != nil {
				t.Fatalf("same boot: %v", err)
			}
			checkEntry(t, e, files)
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			if b := manifestBoot(t, s2, "k"); b != ([bootLen]byte{}) {
				t.Fatalf("the Store that found the entry did not sync it (boot %x)", b)
			}
			continue
		}
		if !isMiss(err) {
			t.Fatalf("after a restart: %v, want ErrMiss", err)
		}
		if _, err := os.Lstat(s2.entryPath(hashKey("k"))); !os.IsNotExist(err) {
			t.Fatalf("the unsynced entry was not removed: %v", err)
		}
		if st := s2.Stats(); st.Entries != 0 || st.Bytes != 0 || diskUsage(dir) != 0 {
			t.Fatalf("after removal: %+v, disk %d", st, diskUsage(dir))
		}
		e = mustBuild(t, s2, "k", files)
		checkEntry(t, e, files)
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
		if b := manifestBoot(t, s2, "k"); b != ([bootLen]byte{}) {
			t.Fatalf("rebuilt entry not synced at Close (boot %x)", b)
		}
	}
}

// An entry removed or replaced before its sync comes: the sync touches neither the new entry nor
// anything else.
func TestSyncAfterRemoveOrReplace(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, bootID: bootOf(1), holdSync: true})
	mustBuild(t, s, "gone", map[string]int{"a": 100})
	old := mustBuild(t, s, "replaced", map[string]int{"a": 100})
	oldGen := old.gen
	goneGen := func() string {
		m, _, err := readManifest(filepath.Join(s.entryPath(hashKey("gone")), manifestName))
		if err != nil {
			t.Fatal(err)
		}
		return m.Gen
	}()
	if err := s.Remove("gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("replaced"); err != nil {
		t.Fatal(err)
	}
	files := map[string]int{"a": 300, "b": 7}
	mustBuild(t, s, "replaced", files) // also held: not durable
	if err := s.makeDurable(hashKey("gone"), goneGen); err != nil {
		t.Fatal(err)
	}
	if err := s.makeDurable(hashKey("replaced"), oldGen); err != nil {
		t.Fatal(err)
	}
	if b := manifestBoot(t, s, "replaced"); b == ([bootLen]byte{}) {
		t.Fatal("a sync of the old generation made the new one durable")
	}
	if _, err := os.Lstat(s.entryPath(hashKey("gone"))); !os.IsNotExist(err) {
		t.Fatalf("the removed entry is back: %v", err)
	}
	e, err := s.Lookup("replaced")
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, files)
	if err := s.makeDurable(hashKey("replaced"), e.gen); err != nil {
		t.Fatal(err)
	}
	if b := manifestBoot(t, s, "replaced"); b != ([bootLen]byte{}) {
		t.Fatal("the sync of the current generation did not make it durable")
	}
	if st := s.Stats(); diskUsage(dir) != st.Bytes || st.Entries != 1 {
		t.Fatalf("disk %d, index %+v", diskUsage(dir), st)
	}
}

// Without a boot id the Store cannot tell a restart: it syncs before committing.
func TestNoBootIDSyncsFirst(t *testing.T) {
	dir := t.TempDir()
	none := func() ([bootLen]byte, bool) { return [bootLen]byte{}, false }
	s := openStore(t, Options{Dir: dir, bootID: none, holdSync: true})
	mustBuild(t, s, "k", map[string]int{"a": 10})
	if b := manifestBoot(t, s, "k"); b != ([bootLen]byte{}) {
		t.Fatalf("manifest names boot %x", b)
	}
}

// PutLater stores its entry in the background; Close waits for it; after Close it does nothing.
func TestPutLater(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, bootID: bootOf(1)})
	for i := range 20 {
		s.PutLater(fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("meta %d", i)))
	}
	// This Store sees them at once, before they are stored.
	for i := range 20 {
		e, err := s.Lookup(fmt.Sprintf("k%d", i))
		if err != nil || string(e.Meta) != fmt.Sprintf("meta %d", i) || len(e.Files()) != 0 {
			t.Fatalf("k%d before it is stored: %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.PutLater("after", []byte("x")) // nothing, and no panic
	s2 := openStore(t, Options{Dir: dir, bootID: bootOf(2)})
	for i := range 20 {
		e, err := s2.Lookup(fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatalf("k%d: %v", i, err)
		}
		if want := fmt.Sprintf("meta %d", i); string(e.Meta) != want || len(e.Files()) != 0 {
			t.Fatalf("k%d: meta %q, files %v", i, e.Meta, e.Files())
		}
	}
	if _, err := s2.Lookup("after"); !isMiss(err) {
		t.Fatalf("a put after Close: %v", err)
	}
	if st := s2.Stats(); st.Entries != 20 || diskUsage(dir) != st.Bytes {
		t.Fatalf("disk %d, index %+v", diskUsage(dir), st)
	}
}

// A queued put that is removed (Remove, Clear) is never stored.
func TestPutLaterRemoved(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, bootID: bootOf(1)})
	s.PutLater("a", []byte("1"))
	s.PutLater("b", []byte("2"))
	s.PutLater("c", []byte("3"))
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup("a"); !isMiss(err) {
		t.Fatalf("a removed: %v", err)
	}
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	s.PutLater("c", []byte("4"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, Options{Dir: dir, bootID: bootOf(1)})
	for _, k := range []string{"a", "b"} {
		if _, err := s2.Lookup(k); !isMiss(err) {
			t.Fatalf("%s stored after its removal: %v", k, err)
		}
	}
	if e, err := s2.Lookup("c"); err != nil || string(e.Meta) != "4" {
		t.Fatalf("c put after Clear: %v", err)
	}
}

// A process killed after committing entries it had not yet synced: during the same boot they are
// served (the page cache holds them whole) and synced by the Store that finds them; after a
// restart of the machine they are misses, removed, never served.
func TestKilledBeforeSync(t *testing.T) {
	for _, sameBoot := range []bool{true, false} {
		dir := t.TempDir()
		h := startHelper(t, "unsynced", dir, 0, "CACHE_HOLD_SYNC=1")
		h.await(t, "committed")
		h.kill9(t)
		boot := readBootID
		if !sameBoot {
			boot = bootOf(7)
		}
		s, err := Open(Options{Dir: dir, Logger: testLogger(t), bootID: boot})
		if err != nil {
			t.Fatal(err)
		}
		for k := range 6 {
			key := fmt.Sprintf("u-%d", k)
			if b := manifestBoot(t, s, key); b == ([bootLen]byte{}) {
				t.Fatalf("%s durable although its process never synced it", key)
			}
			e, err := s.Lookup(key)
			if !sameBoot {
				if !isMiss(err) {
					t.Fatalf("%s after a restart: %v, want ErrMiss", key, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s, same boot: %v", key, err)
			}
			checkEntry(t, e, churnFiles(k))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2 := openStore(t, Options{Dir: dir, bootID: bootOf(8)}) // and then the machine restarts
		hits := 0
		for k := range 6 {
			e, err := s2.Lookup(fmt.Sprintf("u-%d", k))
			if err == nil {
				checkEntry(t, e, churnFiles(k))
				hits++
			} else if !isMiss(err) {
				t.Fatal(err)
			}
		}
		if want := map[bool]int{true: 6, false: 0}[sameBoot]; hits != want {
			t.Fatalf("same boot %v: %d entries served after the restart, want %d", sameBoot, hits, want)
		}
		if st := s2.Stats(); diskUsage(dir) != st.Bytes || st.Reserved != 0 {
			t.Fatalf("disk %d, index %+v", diskUsage(dir), st)
		}
		if d := builderDirs(t, dir); len(d) != 0 {
			t.Fatalf("builder dirs of the dead process left: %v", d)
		}
	}
}

// The durable manifest is written beside the old one before it replaces it, in room reserved
// first: under a cap that the entries and that room fill, the background syncs never take the
// directory over the cap, nor evict anything.
func TestSyncKeepsTheCap(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"a": 3000, "b": 1000}
	probe := openStore(t, Options{Dir: t.TempDir()})
	pe := mustBuild(t, probe, "k0", files)
	mi, err := os.Stat(filepath.Join(pe.dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	max := n*pe.Size() + mi.Size() // the entries, and room for one durable manifest
	s := openStore(t, Options{Dir: dir, MaxBytes: max, bootID: bootOf(1)})
	stop := make(chan struct{})
	peak := watchCap(t, dir, stop)
	for k := range n {
		mustBuild(t, s, fmt.Sprintf("k%d", k), files)
	}
	time.Sleep(2 * syncDelay) // the syncs run
	if st := s.Stats(); st.Evictions != 0 {
		t.Fatalf("%d evictions", st.Evictions)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if p := <-peak; p > max {
		t.Fatalf("peak %d bytes over the cap %d", p, max)
	}
	s2 := openStore(t, Options{Dir: dir, MaxBytes: max, bootID: bootOf(2)})
	for k := range n {
		e, err := s2.Lookup(fmt.Sprintf("k%d", k))
		if err != nil {
			t.Fatalf("k%d not synced under the cap: %v", k, err)
		}
		checkEntry(t, e, files)
	}
	if st := s2.Stats(); diskUsage(dir) != st.Bytes || st.Reserved != 0 {
		t.Fatalf("disk %d, index %+v", diskUsage(dir), st)
	}
}
