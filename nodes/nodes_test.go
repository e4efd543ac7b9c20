package nodes

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/memory"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tree is a node tree over a catalog, exercised without a mount.
type tree struct {
	t     *testing.T
	root  *rootDir
	clock *fakeClock
	logs  *bytes.Buffer
	logMu *sync.Mutex // guards logs
}

// withoutCache makes newTree serve without a cache store: columns in memory, larger ones
// re-read from the catalog (TestWithoutCache runs tests so).
var withoutCache bool

func newTree(t *testing.T, cat catalog.Catalog, mod func(*Config)) *tree {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1800000000, 0)}
	logs, mu := &bytes.Buffer{}, &sync.Mutex{}
	cfg := Config{Catalog: cat, Clock: clock, Logger: slog.New(slog.NewTextHandler(lockedWriter{logs, mu}, nil))}
	if !withoutCache {
		store, err := cache.Open(cache.Options{Dir: t.TempDir(), Logger: cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		cfg.Cache = store
	}
	if mod != nil {
		mod(&cfg)
	}
	root := NewRoot(cfg).(*rootDir)
	gofs.NewNodeFS(root, &gofs.Options{})
	return &tree{t: t, root: root, clock: clock, logs: logs, logMu: mu}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func fixtureTree(t *testing.T) (*tree, *memory.Catalog) {
	cat, err := memory.New(catalogtest.Runs()...)
	if err != nil {
		t.Fatal(err)
	}
	return newTree(t, cat, nil), cat
}

// logged reports whether the log holds s; the log is written by background refreshes too.
func (tr *tree) logged(s string) bool {
	tr.logMu.Lock()
	defer tr.logMu.Unlock()
	return strings.Contains(tr.logs.String(), s)
}

// logString returns the log so far.
func (tr *tree) logString() string {
	tr.logMu.Lock()
	defer tr.logMu.Unlock()
	return tr.logs.String()
}

// lookup walks a slash-separated path from the root.
func (tr *tree) lookup(path string) (gofs.InodeEmbedder, syscall.Errno) {
	var node gofs.InodeEmbedder = tr.root
	for _, name := range strings.Split(path, "/") {
		l, ok := node.(gofs.NodeLookuper)
		if !ok {
			return nil, syscall.ENOTDIR
		}
		var out fuse.EntryOut
		child, errno := l.Lookup(context.Background(), name, &out)
		if errno != 0 {
			return nil, errno
		}
		if child.StableAttr().Ino != out.Ino && out.Ino != 0 {
			tr.t.Errorf("lookup %s: entry ino %d, inode %d", path, out.Ino, child.StableAttr().Ino)
		}
		node = child.Operations()
	}
	return node, 0
}

func (tr *tree) mustLookup(path string) gofs.InodeEmbedder {
	tr.t.Helper()
	n, errno := tr.lookup(path)
	if errno != 0 {
		tr.t.Fatalf("lookup %s: %v", path, errno)
	}
	return n
}

func (tr *tree) list(path string) []string {
	tr.t.Helper()
	var node gofs.InodeEmbedder = tr.root
	if path != "" {
		node = tr.mustLookup(path)
	}
	ds, errno := node.(gofs.NodeReaddirer).Readdir(context.Background())
	if errno != 0 {
		tr.t.Fatalf("readdir %s: %v", path, errno)
	}
	var names []string
	for ds.HasNext() {
		e, _ := ds.Next()
		names = append(names, e.Name)
	}
	return names
}

// read reads a whole file in chunks of n bytes and checks its size against Getattr.
func (tr *tree) read(path string, n int) ([]byte, syscall.Errno) {
	tr.t.Helper()
	node, errno := tr.lookup(path)
	if errno != 0 {
		return nil, errno
	}
	f := node.(*file)
	var attr fuse.AttrOut
	if errno := f.Getattr(context.Background(), nil, &attr); errno != 0 {
		return nil, errno
	}
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		return nil, errno
	}
	var out []byte
	buf := make([]byte, n)
	for {
		res, errno := f.Read(context.Background(), fh, buf, int64(len(out)))
		if errno != 0 {
			return nil, errno
		}
		b, _ := res.Bytes(make([]byte, n))
		if len(b) == 0 {
			break
		}
		out = append(out, b...)
	}
	if uint64(len(out)) != attr.Size {
		tr.t.Errorf("%s: read %d bytes, stat says %d", path, len(out), attr.Size)
	}
	return out, 0
}

func (tr *tree) mustRead(path string) []byte {
	tr.t.Helper()
	b, errno := tr.read(path, 4096)
	if errno != 0 {
		tr.t.Fatalf("read %s: %v; log: %s", path, errno, tr.logs)
	}
	return b
}

// npy parses a little-endian .npy file of a numeric dtype into its descr, shape and data,
// independently of package encode.
func parseNPY(t *testing.T, b []byte) (descr string, shape string, data []byte) {
	t.Helper()
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		t.Fatalf("not a .npy file: %q", b[:min(len(b), 10)])
	}
	hlen := int(binary.LittleEndian.Uint16(b[8:10]))
	header := string(b[10 : 10+hlen])
	if (10+hlen)%64 != 0 {
		t.Errorf("header ends at %d, not a multiple of 64", 10+hlen)
	}
	get := func(key, end string) string {
		i := strings.Index(header, key)
		if i < 0 {
			t.Fatalf("header %q lacks %s", header, key)
		}
		rest := header[i+len(key):]
		return rest[:strings.Index(rest, end)]
	}
	return get("'descr': '", "'"), get("'shape': (", ")"), b[10+hlen:]
}

func floats(b []byte) []float64 {
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func ints(b []byte) []int64 {
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func TestRootListing(t *testing.T) {
	tr, _ := fixtureTree(t)
	got := tr.list("")
	want := []string{byScanName, latestName, catalogtest.UIDScalars, catalogtest.UIDPages, catalogtest.UIDLive, catalogtest.UIDAssets}
	sort.Strings(want[2:])
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("root = %v, want %v", got, want)
	}
	if got := tr.list(byScanName); fmt.Sprint(got) != "[101 102 103]" {
		t.Errorf("by-scan-id = %v", got)
	}
	// Two runs have scan_id 101: the newer one (the assets run) wins.
	link := tr.mustLookup(byScanName + "/101").(*symlink)
	if link.target != "../"+catalogtest.UIDAssets {
		t.Errorf("by-scan-id/101 -> %s", link.target)
	}
	if l := tr.mustLookup(latestName).(*symlink); l.target != catalogtest.UIDAssets {
		t.Errorf("latest -> %s", l.target)
	}
	if _, errno := tr.lookup(byScanName + "/999"); errno != syscall.ENOENT {
		t.Errorf("by-scan-id/999: %v", errno)
	}
}

// TestRootNames: the names databroker's catalog[name] takes, resolved in the root: a uid
// prefix of at least 5 characters is the run's directory; a scan_id and -N are links to it
// that follow new runs; none of them is listed.
func TestRootNames(t *testing.T) {
	tr, cat := fixtureTree(t)
	for _, tc := range []struct {
		name  string
		want  string // the run's uid; a link's target for scan_ids and -N
		errno syscall.Errno
	}{
		{catalogtest.UIDLive, catalogtest.UIDLive, 0},
		{"b7e5f", catalogtest.UIDLive, 0},
		{"c9d0e1f2-00", catalogtest.UIDAssets, 0},
		{"b7e5", "", syscall.ENOENT},  // unique, but shorter than 5 characters
		{"a1b2c", "", syscall.ENOENT}, // ambiguous: two runs start with a1b2c
		{"zzzzz", "", syscall.ENOENT},
		{"101", catalogtest.UIDAssets, 0}, // two runs have scan_id 101: the newer one
		{"102", catalogtest.UIDPages, 0},
		{"103", catalogtest.UIDLive, 0},
		{"0103", catalogtest.UIDLive, 0},
		{"104", "", syscall.ENOENT},
		{"-1", catalogtest.UIDAssets, 0},
		{"-2", catalogtest.UIDLive, 0},
		{"-3", catalogtest.UIDPages, 0},
		{"-4", catalogtest.UIDScalars, 0},
		{"-5", "", syscall.ENOENT},
		{"-0", "", syscall.ENOENT},
	} {
		n, errno := tr.lookup(tc.name)
		if errno != tc.errno {
			t.Errorf("lookup %s: errno %v, want %v", tc.name, errno, tc.errno)
			continue
		}
		switch n := n.(type) {
		case nil:
		case *runDir:
			if n.uid != tc.want || catalog.KindOf(tc.name) != catalog.NamePrefix {
				t.Errorf("lookup %s = directory of %s, want %s", tc.name, n.uid, tc.want)
			}
		case *symlink:
			target, errno := n.Readlink(context.Background())
			if string(target) != tc.want || errno != 0 || catalog.KindOf(tc.name) == catalog.NamePrefix {
				t.Errorf("lookup %s = link to %q (%v), want %s", tc.name, target, errno, tc.want)
			}
		default:
			t.Errorf("lookup %s = %T", tc.name, n)
		}
	}
	// A second lookup of the ambiguous prefix (ls retries, stat after ls) logs nothing more.
	if _, errno := tr.lookup("a1b2c"); errno != syscall.ENOENT {
		t.Errorf("lookup a1b2c again: %v", errno)
	}
	tr.logMu.Lock()
	logs := tr.logs.String()
	tr.logMu.Unlock()
	if n := strings.Count(logs, "ambiguous uid prefix"); n != 1 || !strings.Contains(logs, catalogtest.UIDScalars+" "+catalogtest.UIDPages) {
		t.Errorf("%d log lines of the ambiguous prefix, want one naming both runs:\n%s", n, logs)
	}
	// The kernel keeps -1 and 34 for the listing's TTL only: they change when runs arrive.
	for _, name := range []string{"-1", "101"} {
		var out fuse.EntryOut
		if _, errno := tr.root.Lookup(context.Background(), name, &out); errno != 0 || out.EntryTimeout() != 2*time.Second || out.AttrTimeout() != 2*time.Second {
			t.Errorf("lookup %s: %v, entry timeout %v, attr timeout %v; want ListTTL (2s)", name, errno, out.EntryTimeout(), out.AttrTimeout())
		}
	}
	for _, name := range tr.list("") {
		if catalog.KindOf(name) != catalog.NamePrefix {
			t.Errorf("readdir lists %s", name)
		}
	}

	// A new run: once the listing is older than ListTTL, -1 is the new run and the old
	// link nodes (which the kernel may still hold) say so too.
	minus1 := tr.mustLookup("-1").(*symlink)
	scan101 := tr.mustLookup("101").(*symlink)
	const newUID = "d0000000-0000-4000-8000-000000000005"
	if err := cat.Add([]catalog.Document{{Name: "start", Doc: map[string]any{"uid": newUID, "time": 1700004000.0, "scan_id": int64(101)}}}); err != nil {
		t.Fatal(err)
	}
	tr.clock.advance(time.Hour)
	for _, l := range []*symlink{minus1, scan101, tr.mustLookup("-1").(*symlink)} {
		if target, _ := l.Readlink(context.Background()); string(target) != newUID {
			t.Errorf("after a new run: link -> %s, want %s", target, newUID)
		}
	}
	if target, _ := tr.mustLookup("-2").(*symlink).Readlink(context.Background()); string(target) != catalogtest.UIDAssets {
		t.Errorf("after a new run: -2 -> %s, want %s", target, catalogtest.UIDAssets)
	}
}

func TestRunDir(t *testing.T) {
	tr, _ := fixtureTree(t)
	if got := tr.list(catalogtest.UIDScalars); fmt.Sprint(got) != "[baseline baseline.csv baseline.parquet primary primary.csv primary.parquet start.json stop.json]" {
		t.Errorf("run dir = %v", got)
	}
	if got := tr.list(catalogtest.UIDLive); fmt.Sprint(got) != "[primary primary.csv primary.parquet start.json]" {
		t.Errorf("live run dir = %v", got)
	}
	start := tr.mustRead(catalogtest.UIDScalars + "/start.json")
	if !bytes.Contains(start, []byte(`"sample": "Si (111)"`)) || !bytes.HasSuffix(start, []byte("}\n")) {
		t.Errorf("start.json = %s", start)
	}
	stop := tr.mustRead(catalogtest.UIDPages + "/stop.json")
	if !bytes.Contains(stop, []byte(`"exit_status": "abort"`)) {
		t.Errorf("stop.json = %s", stop)
	}
	var attr fuse.AttrOut
	tr.mustLookup(catalogtest.UIDScalars).(*runDir).Getattr(context.Background(), nil, &attr)
	if attr.Mtime != 1700000000 || attr.Mode&syscall.S_IFDIR == 0 {
		t.Errorf("run dir attr = %+v, want mtime = start time 1700000000", attr)
	}
}

func TestStreamDir(t *testing.T) {
	tr, _ := fixtureTree(t)
	got := tr.list(catalogtest.UIDScalars + "/primary")
	want := "[Ion Ch 1.csv Ion Ch 1.npy config descriptors.json det.csv det.npy label.csv label.npy motor.csv motor.npy ok.csv ok.npy time.csv time.npy timestamps]"
	if fmt.Sprint(got) != want {
		t.Errorf("primary = %v\nwant %v", got, want)
	}
	if got := tr.list(catalogtest.UIDScalars + "/primary/config"); fmt.Sprint(got) != "[det.json]" {
		t.Errorf("config = %v", got)
	}
	if cfg := tr.mustRead(catalogtest.UIDScalars + "/primary/config/det.json"); !bytes.Contains(cfg, []byte(`"det_exposure": 0.5`)) {
		t.Errorf("config/det.json = %s", cfg)
	}
	desc := tr.mustRead(catalogtest.UIDPages + "/primary/descriptors.json")
	if bytes.Count(desc, []byte(`"data_keys"`)) != 2 || desc[0] != '[' {
		t.Errorf("descriptors.json of two descriptors = %s", desc)
	}
	// A 2-D array field per event has no .csv; the pages run's spectrum is 1-D and has one.
	if got := tr.list(catalogtest.UIDPages + "/primary"); !contains(got, "spectrum.csv") || !contains(got, "spectrum.npy") {
		t.Errorf("pages primary = %v", got)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestFieldValues(t *testing.T) {
	tr, _ := fixtureTree(t)
	p := catalogtest.UIDScalars + "/primary/"
	for _, tc := range []struct {
		file, descr, shape string
		check              func(data []byte) string
	}{
		{"motor.npy", "<f8", "5,", func(b []byte) string { return fmt.Sprint(floats(b)) }},
		{"det.npy", "<i8", "5,", func(b []byte) string { return fmt.Sprint(ints(b)) }},
		{"ok.npy", "|b1", "5,", func(b []byte) string { return fmt.Sprint(b) }},
		{"label.npy", "<U8", "5,", func(b []byte) string { return utf32(b, 8) }},
		{"time.npy", "<f8", "5,", func(b []byte) string { return fmt.Sprint(floats(b)) }},
		{"timestamps/det.npy", "<f8", "5,", func(b []byte) string { return fmt.Sprint(floats(b)) }},
	} {
		descr, shape, data := parseNPY(t, tr.mustRead(p+tc.file))
		if descr != tc.descr || shape != tc.shape {
			t.Errorf("%s: descr %s shape (%s), want %s (%s)", tc.file, descr, shape, tc.descr, tc.shape)
		}
		t.Logf("%s: %s", tc.file, tc.check(data))
	}
	// Expected values, computed from the fixture's formulas.
	_, _, motor := parseNPY(t, tr.mustRead(p+"motor.npy"))
	for i, v := range floats(motor) {
		if want := float64(i)*0.1 - 0.2; v != want {
			t.Errorf("motor[%d] = %v, want %v", i, v, want)
		}
	}
	_, _, det := parseNPY(t, tr.mustRead(p+"det.npy"))
	for i, v := range ints(det) {
		if want := int64(i * i * 1000); v != want {
			t.Errorf("det[%d] = %v, want %v", i, v, want)
		}
	}
	_, _, ok := parseNPY(t, tr.mustRead(p+"ok.npy"))
	if !bytes.Equal(ok, []byte{1, 0, 1, 0, 1}) {
		t.Errorf("ok = %v", ok)
	}
	_, _, label := parseNPY(t, tr.mustRead(p+"label.npy"))
	if got := utf32(label, 8); got != `[a bb ccc, "q" μ-ü ]` {
		t.Errorf("label = %s", got)
	}
	_, _, ts := parseNPY(t, tr.mustRead(p+"timestamps/det.npy"))
	for i, v := range floats(ts) {
		if want := 1700000000.25 + 1 + float64(i) - 0.02; v != want {
			t.Errorf("timestamps/det[%d] = %v, want %v", i, v, want)
		}
	}
	csv := string(tr.mustRead(p + "label.csv"))
	if !strings.HasPrefix(csv, "seq_num,time,label\n1,") || !strings.Contains(csv, `"ccc, ""q"""`) {
		t.Errorf("label.csv = %q", csv)
	}
	if csv := string(tr.mustRead(p + "Ion Ch 1.csv")); !strings.HasPrefix(csv, "seq_num,time,Ion Ch 1\n1,1700000001.25,1e-07\n") {
		t.Errorf("Ion Ch 1.csv = %q", csv)
	}
}

// utf32 decodes n-wide numpy unicode strings.
func utf32(b []byte, n int) string {
	var out []string
	for off := 0; off+4*n <= len(b); off += 4 * n {
		var s []rune
		for i := 0; i < n; i++ {
			r := rune(binary.LittleEndian.Uint32(b[off+4*i:]))
			if r != 0 {
				s = append(s, r)
			}
		}
		out = append(out, string(s))
	}
	return fmt.Sprint(out)
}

func TestArraysAndPages(t *testing.T) {
	tr, _ := fixtureTree(t)
	p := catalogtest.UIDPages + "/primary/"
	descr, shape, data := parseNPY(t, tr.mustRead(p+"spectrum.npy"))
	if descr != "<f8" || shape != "6, 4" {
		t.Fatalf("spectrum: %s (%s)", descr, shape)
	}
	got := floats(data)
	for i := 0; i < 6; i++ {
		want := []float64{float64(i), 0.5, -1.25, float64(i * i)}
		if fmt.Sprint(got[4*i:4*i+4]) != fmt.Sprint(want) {
			t.Errorf("spectrum[%d] = %v, want %v", i, got[4*i:4*i+4], want)
		}
	}
	csv := string(tr.mustRead(p + "spectrum.csv"))
	if !strings.HasPrefix(csv, "seq_num,time,spectrum[0],spectrum[1],spectrum[2],spectrum[3]\n1,1700001001.5,0.0,0.5,-1.25,0.0\n") {
		t.Errorf("spectrum.csv = %q", csv)
	}
	// Two descriptors, one stream: 6 rows.
	_, shape, data = parseNPY(t, tr.mustRead(p+"n.npy"))
	if shape != "6," || fmt.Sprint(ints(data)) != "[0 -1 -2 -3 -4 -5]" {
		t.Errorf("n = (%s) %v", shape, ints(data))
	}
}

// TestMergeByTime: a stream of two descriptors whose events interleave in time is read in
// time order, as databroker merges them.
func TestMergeByTime(t *testing.T) {
	uid := "d0000000-0000-4000-8000-000000000001"
	keys := map[string]any{"x": map[string]any{"dtype": "number", "shape": []any{}, "source": "s"}}
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: map[string]any{"uid": "dA", "run_start": uid, "time": 1.0, "data_keys": keys}},
		{Name: "descriptor", Doc: map[string]any{"uid": "dB", "run_start": uid, "time": 1.0, "data_keys": keys}},
	}
	for i, d := range []string{"dA", "dB", "dA", "dB"} {
		docs = append(docs, catalog.Document{Name: "event", Doc: map[string]any{"descriptor": d, "uid": fmt.Sprint(i),
			"time": 10.0 + float64(i), "seq_num": int64(i/2 + 1), "data": map[string]any{"x": float64(i)},
			"timestamps": map[string]any{"x": 0.0}}})
	}
	cat, err := memory.New(docs)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTree(t, cat, nil)
	for _, chunk := range []int{8, 4096} {
		b, errno := tr.read(uid+"/primary/x.npy", chunk)
		if errno != 0 {
			t.Fatal(errno)
		}
		_, _, data := parseNPY(t, b)
		if got := fmt.Sprint(floats(data)); got != "[0 1 2 3]" {
			t.Errorf("x (read %d at a time) = %s, want [0 1 2 3]", chunk, got)
		}
	}
	if csv := string(tr.mustRead(uid + "/primary/time.csv")); csv != "seq_num,time\n1,10.0\n1,11.0\n2,12.0\n2,13.0\n" {
		t.Errorf("time.csv = %q", csv)
	}
}

func TestInodesStable(t *testing.T) {
	tr, _ := fixtureTree(t)
	// Pinned: a change in the scheme renumbers every file of every mount.
	if got := inoOf("a/b"); got != 0xe620c3190468cf61 { // FNV-1a 64 of "a/b", computed by hand
		t.Errorf("inoOf(a/b) = %#x: the inode scheme changed", got)
	}
	dir := catalogtest.UIDScalars + "/primary"
	node := tr.mustLookup(dir)
	ds, _ := node.(gofs.NodeReaddirer).Readdir(context.Background())
	for ds.HasNext() {
		e, _ := ds.Next()
		child := tr.mustLookup(dir + "/" + e.Name)
		if ino := child.EmbeddedInode().StableAttr().Ino; ino != e.Ino {
			t.Errorf("%s: readdir ino %d, lookup ino %d", e.Name, e.Ino, ino)
		}
	}
	tr2, _ := fixtureTree(t)
	a := tr.mustLookup(dir + "/det.npy").EmbeddedInode().StableAttr().Ino
	b := tr2.mustLookup(dir + "/det.npy").EmbeddedInode().StableAttr().Ino
	if a != b {
		t.Errorf("det.npy ino differs between trees: %d, %d", a, b)
	}
}

func TestLiveRunGrows(t *testing.T) {
	tr, cat := fixtureTree(t)
	live := catalogtest.Runs()[2]
	p := catalogtest.UIDLive + "/primary/I0.npy"
	_, shape, _ := parseNPY(t, tr.mustRead(p))
	if shape != "3," {
		t.Fatalf("live I0 shape (%s), want (3,)", shape)
	}
	more := append(live, catalog.Document{Name: "event", Doc: map[string]any{"uid": "x", "descriptor": catalogtest.UIDLive + "-d1",
		"time": 1700002010.0, "seq_num": int64(4), "data": map[string]any{"I0": 7.0}, "timestamps": map[string]any{"I0": 1.0}}},
		catalog.Document{Name: "stop", Doc: map[string]any{"uid": "s", "run_start": catalogtest.UIDLive, "time": 1700002011.0, "exit_status": "success"}})
	if err := cat.Add(more); err != nil {
		t.Fatal(err)
	}
	// Within LiveTTL the old state is served; after it, the new one.
	if _, shape, _ = parseNPY(t, tr.mustRead(p)); shape != "3," {
		t.Errorf("within TTL: shape (%s)", shape)
	}
	tr.clock.advance(2 * time.Second)
	_, shape, data := parseNPY(t, tr.mustRead(p))
	if shape != "4," || floats(data)[3] != 7 {
		t.Errorf("after TTL: shape (%s) %v", shape, floats(data))
	}
	if got := tr.list(catalogtest.UIDLive); !contains(got, "stop.json") {
		t.Errorf("finished run lacks stop.json: %v", got)
	}
}

func TestIncludeFields(t *testing.T) {
	cat, _ := memory.New(catalogtest.Runs()...)
	tr := newTree(t, cat, func(c *Config) { c.IncludeField = func(f string) bool { return f == "det" } })
	got := tr.list(catalogtest.UIDScalars + "/primary")
	if contains(got, "motor.npy") || !contains(got, "det.npy") {
		t.Errorf("with only det included: %v", got)
	}
}

func TestFilterRuns(t *testing.T) {
	cat, _ := memory.New(catalogtest.Runs()...)
	tr := newTree(t, cat, func(c *Config) { c.Filter = func(s *catalog.Start) bool { return s.PlanName == "count" } })
	got := tr.list("")
	if len(got) != 4 || !contains(got, catalogtest.UIDLive) || contains(got, catalogtest.UIDScalars) {
		t.Errorf("filtered root = %v", got)
	}
	if _, errno := tr.lookup(catalogtest.UIDScalars); errno != syscall.ENOENT {
		t.Errorf("filtered-out run: %v", errno)
	}
}

// TestBadValues: a field whose values cannot form an array fails with EIO and one log line;
// its neighbours stay readable.
func TestBadValues(t *testing.T) {
	uid := "e0000000-0000-4000-8000-000000000001"
	keys := map[string]any{
		"good": map[string]any{"dtype": "number", "shape": []any{}, "source": "s"},
		"bad":  map[string]any{"dtype": "array", "shape": []any{int64(2)}, "source": "s"},
	}
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: map[string]any{"uid": "d", "run_start": uid, "time": 1.0, "data_keys": keys}},
	}
	for i, v := range []any{[]any{1.0, 2.0}, []any{1.0, 2.0, 3.0}} {
		docs = append(docs, catalog.Document{Name: "event", Doc: map[string]any{"descriptor": "d", "uid": fmt.Sprint(i),
			"time": 10.0 + float64(i), "seq_num": int64(i + 1), "data": map[string]any{"good": float64(i), "bad": v},
			"timestamps": map[string]any{}}})
	}
	cat, err := memory.New(docs)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTree(t, cat, nil)
	if _, errno := tr.read(uid+"/primary/bad.npy", 4096); errno != syscall.EIO {
		t.Errorf("ragged field: errno %v, want EIO", errno)
	}
	if n := strings.Count(tr.logs.String(), "\n"); n != 1 || !strings.Contains(tr.logs.String(), "bad.npy") {
		t.Errorf("want one log line naming bad.npy, have %q", tr.logs.String())
	}
	_, _, data := parseNPY(t, tr.mustRead(uid+"/primary/good.npy"))
	if fmt.Sprint(floats(data)) != "[0 1]" {
		t.Errorf("good = %v", floats(data))
	}
}

func TestReadOnly(t *testing.T) {
	tr, _ := fixtureTree(t)
	f := tr.mustLookup(catalogtest.UIDScalars + "/start.json").(*file)
	for _, fl := range []uint32{syscall.O_WRONLY, syscall.O_RDWR, syscall.O_RDONLY | syscall.O_TRUNC} {
		if _, _, errno := f.Open(context.Background(), fl); errno != syscall.EROFS {
			t.Errorf("open flags %#x: %v, want EROFS", fl, errno)
		}
	}
}

// failing is a catalog whose Runs and Run start failing when down is set, as a database that
// went away.
type failing struct {
	catalog.Catalog
	mu   sync.Mutex
	down bool
}

func (f *failing) set(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }

func (f *failing) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return fmt.Errorf("server selection error: connection refused")
	}
	return nil
}

func (f *failing) Runs(ctx context.Context) ([]*catalog.Start, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Catalog.Runs(ctx)
}

func (f *failing) Run(ctx context.Context, uid string) (catalog.Run, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Catalog.Run(ctx, uid)
}

// TestOutage: while the catalog fails, the last listing and the runs already read are served,
// with one log line per outage; what was never read fails with EIO; all recovers by itself.
func TestOutage(t *testing.T) {
	mem, _ := memory.New(catalogtest.Runs()...)
	cat := &failing{Catalog: mem}
	tr := newTree(t, cat, nil)
	before := tr.list("")
	tr.mustRead(catalogtest.UIDLive + "/primary/I0.npy")
	cat.set(true)
	tr.clock.advance(10 * time.Second)
	if got := tr.list(""); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("listing during an outage = %v, want the last one %v", got, before)
	}
	tr.clock.advance(10 * time.Second)
	tr.list("")
	tr.mustRead(catalogtest.UIDLive + "/primary/I0.npy") // live, cached: served as last read
	if _, errno := tr.read(catalogtest.UIDPages+"/start.json", 4096); errno != syscall.EIO {
		t.Errorf("a run never read, during an outage: %v, want EIO", errno)
	}
	if n := strings.Count(tr.logs.String(), "listing runs failed"); n != 1 {
		t.Errorf("%d outage log lines for the listing, want 1:\n%s", n, tr.logs)
	}
	cat.set(false)
	tr.clock.advance(10 * time.Second)
	// During an outage the listing is refreshed in the background, at most once per ListTTL:
	// wait for it, with time passing. (A background refresh started before the server came
	// back may fail after the clock was advanced above, and stamp the listing as fresh.)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !tr.logged("listing runs works again"); {
		tr.list("")
		time.Sleep(10 * time.Millisecond)
		tr.clock.advance(10 * time.Second)
	}
	if !tr.logged("listing runs works again") {
		t.Errorf("no recovery line: %s", tr.logs)
	}
	tr.mustRead(catalogtest.UIDPages + "/start.json")
}

// TestWithoutCache runs the value tests without a cache store, where columns are kept in
// memory or re-read from the catalog.
func TestWithoutCache(t *testing.T) {
	withoutCache = true
	defer func() { withoutCache = false }()
	for name, fn := range map[string]func(*testing.T){
		"FieldValues": TestFieldValues, "ArraysAndPages": TestArraysAndPages, "MergeByTime": TestMergeByTime,
		"BadValues": TestBadValues, "LiveRunGrows": TestLiveRunGrows, "EmbeddedTIFF": TestEmbeddedTIFF, "ExternalTIFF": TestExternalTIFF,
	} {
		t.Run(name, fn)
	}
}

// countingCatalog counts Run calls and the EventPages calls of the runs it opens.
type countingCatalog struct {
	*memory.Catalog
	runs, pages *atomic.Int64
}

func (c countingCatalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	c.runs.Add(1)
	r, err := c.Catalog.Run(ctx, uid)
	if err != nil {
		return nil, err
	}
	return countingPages{r, c.pages}, nil
}

type countingPages struct {
	catalog.Run
	pages *atomic.Int64
}

func (r countingPages) EventPages(ctx context.Context, d string, from, to int, f []string, fn func(*catalog.EventPage) error) error {
	r.pages.Add(1)
	return r.Run.EventPages(ctx, d, from, to, f, fn)
}

func (r countingPages) Version(ctx context.Context) (string, error) {
	return r.Run.(catalog.Versioner).Version(ctx)
}

// countingWithStore is the fixture runs behind a countingCatalog, and a Config change that puts
// one cache store (closed when the test ends) under every tree built with it: remounts.
func countingWithStore(t *testing.T) (countingCatalog, func(*Config)) {
	t.Helper()
	mem, err := memory.New(catalogtest.Runs()...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := cache.Open(cache.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return countingCatalog{mem, &atomic.Int64{}, &atomic.Int64{}}, func(c *Config) { c.Cache = store }
}

// TestRemountFromCache: a second tree over the same cache (a remount) opens a finished run
// and reads its fields without opening the catalog's run at all, with the same bytes; a run
// changed in the catalog is noticed within the list TTL and read again.
func TestRemountFromCache(t *testing.T) {
	if withoutCache {
		t.Skip("needs the cache")
	}
	cat, withStore := countingWithStore(t)
	p := catalogtest.UIDScalars + "/primary/motor.npy"
	first := newTree(t, cat, withStore)
	want := first.mustRead(p)
	wantCSV := first.mustRead(catalogtest.UIDScalars + "/primary/label.csv")
	if cat.runs.Load() != 1 || cat.pages.Load() == 0 {
		t.Fatalf("first mount: %d runs opened, %d EventPages calls", cat.runs.Load(), cat.pages.Load())
	}

	cat.runs.Store(0)
	cat.pages.Store(0)
	second := newTree(t, cat, withStore)
	if got := second.mustRead(p); !bytes.Equal(got, want) {
		t.Errorf("remount: motor.npy differs")
	}
	if got := second.mustRead(catalogtest.UIDScalars + "/primary/label.csv"); !bytes.Equal(got, wantCSV) {
		t.Errorf("remount: label.csv differs")
	}
	if n := cat.runs.Load(); n != 0 {
		t.Errorf("remount opened the catalog's run %d times, want 0", n)
	}

	// The run changes in the catalog: motor becomes 100 + i.
	var docs []catalog.Document
	for _, d := range catalogtest.Runs()[0] {
		if d.Name == "event" && d.Doc["descriptor"] == catalogtest.UIDScalars+"-d1" {
			c := maps.Clone(d.Doc)
			data := maps.Clone(c["data"].(map[string]any))
			data["motor"] = 100 + float64(c["seq_num"].(int64)-1)
			c["data"] = data
			d = catalog.Document{Name: d.Name, Doc: c}
		}
		docs = append(docs, d)
	}
	if err := cat.Add(docs); err != nil {
		t.Fatal(err)
	}
	if got := second.mustRead(p); !bytes.Equal(got, want) {
		t.Errorf("within the list TTL the run should still read as before")
	}
	second.clock.advance(time.Minute)
	_, _, data := parseNPY(t, second.mustRead(p))
	if got := fmt.Sprint(floats(data)); got != "[100 101 102 103 104]" {
		t.Errorf("after the change: motor = %s, want [100 101 102 103 104]", got)
	}
}

// TestNamesFromData: every name from data maps to a unique, safe file name; reserved names are
// never shadowed and nothing is dropped (issue 9, item 6).
func TestNamesFromData(t *testing.T) {
	num := map[string]any{"dtype": "number", "shape": []any{}, "source": "s"}
	keys := map[string]any{"a/b": num, "x\x00y": num, "time": num, "Time": num, "50%": num, "ok": num}
	var runs [][]catalog.Document
	for _, uid := range []string{"latest", "by-scan-id", "r/1", "plain-uid-1"} {
		docs := []catalog.Document{
			{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.0, "scan_id": int64(7)}},
			{Name: "descriptor", Doc: map[string]any{"uid": uid + "-d", "run_start": uid, "time": 1.0, "name": "start.json", "data_keys": keys}},
			{Name: "event", Doc: map[string]any{"descriptor": uid + "-d", "uid": uid + "-e", "time": 2.0, "seq_num": int64(1),
				"data":       map[string]any{"a/b": 1.0, "x\x00y": 2.0, "time": 3.0, "Time": 4.0, "50%": 5.0, "ok": 6.0},
				"timestamps": map[string]any{}}},
			{Name: "stop", Doc: map[string]any{"uid": uid + "-s", "run_start": uid, "time": 3.0, "exit_status": "success"}},
		}
		runs = append(runs, docs)
	}
	cat, err := memory.New(runs...)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTree(t, cat, nil)
	root := tr.list("")
	sort.Strings(root)
	if got := fmt.Sprint(root); got != "[%62y-scan-id %6Catest by-scan-id latest plain-uid-1 r%2F1]" {
		t.Errorf("root = %s", got)
	}
	if got := fmt.Sprint(tr.list("r%2F1")); !strings.Contains(got, "%73tart.json") || !strings.Contains(got, "start.json") {
		t.Errorf("run dir = %s", got)
	}
	stream := tr.list("r%2F1/%73tart.json")
	sort.Strings(stream)
	want := "[%54ime.csv %54ime.npy %74ime.csv %74ime.npy 50%25.csv 50%25.npy a%2Fb.csv a%2Fb.npy descriptors.json ok.csv ok.npy time.csv time.npy timestamps x%00y.csv x%00y.npy]"
	if got := fmt.Sprint(stream); got != want {
		t.Errorf("stream dir = %s\nwant         %s", got, want)
	}
	for file, v := range map[string]float64{"a%2Fb.npy": 1, "x%00y.npy": 2, "%74ime.npy": 3, "%54ime.npy": 4, "50%25.npy": 5, "time.npy": 2} {
		_, _, data := parseNPY(t, tr.mustRead("r%2F1/%73tart.json/"+file))
		if got := floats(data); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %v, want [%v]", file, got, v)
		}
	}
	ts := tr.list("r%2F1/%73tart.json/timestamps")
	sort.Strings(ts)
	if got := fmt.Sprint(ts); got != "[%54ime.npy 50%25.npy a%2Fb.npy ok.npy time.npy x%00y.npy]" {
		t.Errorf("timestamps = %s", got)
	}
	if target := tr.mustLookup("latest").(*symlink).target; strings.Contains(target, "/") || target == "latest" {
		t.Errorf("latest -> %q", target)
	}
}
