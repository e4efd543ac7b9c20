package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/mongo"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
)

// The tests of this file mount MongoDB catalogs served by a real FerretDB (mongotest), as
// users would: `brokerfs copy` into MongoDB, `brokerfs mount mongodb://...`, and reads of the
// mount checked with testdata/expect.py against the run files the catalog came from.

// demoDetectorRoot is where the demo's detector run says its HDF5 files are (cmd/brokerfs's
// demoOldRoot): mounts map it to DIR/detector.
const demoDetectorRoot = "/nsls2/data/demo/proposals/2026-3/detector"

// TestMongoNormalized copies the demo catalog into MongoDB (normalized layout, separate asset
// database) with `brokerfs copy`, mounts it by URI with --asset-db and --root-map, checks it
// with expect.py against the demo's run files, and compares every file with a mount of the
// run files themselves: .npy, .csv, .tif and files.txt byte for byte, .json parsed.
func TestMongoNormalized(t *testing.T) {
	t.Parallel()
	srv := mongotest.Start(t)
	dir := demoCatalog(t)
	files := runFiles(t, dir)
	mds, assets := srv.URI("mds"), srv.URI("assets")
	out, code := run(t, 2*time.Minute, "copy", "--no-progress", dir, mds, "--dest-asset-db", assets)
	if code != 0 {
		t.Fatalf("brokerfs copy exited %d:\n%s", code, out)
	}
	t.Logf("brokerfs copy: %s", strings.TrimSpace(out))
	rootMap := demoDetectorRoot + "=" + filepath.Join(dir, "detector")
	mnt, logs := mount(t, mds, "--asset-db", assets, "--root-map", rootMap)
	expect(t, mnt, files)

	ref, _ := mount(t, dir, "--root-map", rootMap)
	compareMounts(t, mnt, ref)

	runs := summaries(t, files)
	out, code = run(t, time.Minute, "ls", "--asset-db", assets, mds)
	if code != 0 {
		t.Fatalf("brokerfs ls %s exited %d:\n%s", mds, code, out)
	}
	checkLs(t, out, runs)

	// --query runs on the server; the mount shows only the matching runs.
	query := fmt.Sprintf(`{"plan_name": %q}`, runs[0].PlanName)
	qmnt, _ := mount(t, mds, "--asset-db", assets, "--root-map", rootMap, "--query", query)
	expect(t, qmnt, files, "--query", query)

	// --since and --until become a time clause of the server's query. The bounds are whole
	// seconds between runs (the demo's start times are 600 s apart, at .125 s).
	since := time.Unix(int64(math.Floor(runs[1].Time)), 0).UTC()
	until := time.Unix(int64(math.Floor(runs[3].Time)), 0).UTC()
	var inRange []runSummary
	for _, r := range runs {
		if r.Time >= float64(since.Unix()) && r.Time < float64(until.Unix()) {
			inRange = append(inRange, r)
		}
	}
	out, code = run(t, time.Minute, "ls", "--asset-db", assets, "--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339), mds)
	if code != 0 {
		t.Fatalf("brokerfs ls --since --until %s exited %d:\n%s", mds, code, out)
	}
	checkLs(t, out, inRange)

	// The HDF5 run's frames were read through the handler: its files.txt names the file
	// under the mapped root.
	found := false
	filepath.WalkDir(mnt, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "files.txt" {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				return nil
			}
			found = true
			if !bytes.Contains(b, []byte(filepath.Join(dir, "detector"))) {
				t.Errorf("%s does not name a file under the mapped root %s:\n%s", path, filepath.Join(dir, "detector"), b)
			}
		}
		return nil
	})
	if !found {
		t.Errorf("no files.txt in the mount: the demo's detector run has external data")
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the mongo mount logged errors:\n%s", logs)
	}
}

// compareMounts walks got and want and checks that they hold the same tree, with equal .npy,
// .csv, .tif and files.txt bytes and equal parsed .json; symlinks must point to the same place.
func compareMounts(t *testing.T, got, want string) {
	t.Helper()
	tree := func(root string) map[string]fs.FileMode {
		m := map[string]fs.FileMode{}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != root {
				rel, _ := filepath.Rel(root, path)
				m[rel] = d.Type()
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", root, err)
		}
		return m
	}
	g, w := tree(got), tree(want)
	var missing, extra []string
	for p := range w {
		if _, ok := g[p]; !ok {
			missing = append(missing, p)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			extra = append(extra, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("the mongo mount's tree differs from the files' mount: missing %q, extra %q", missing, extra)
	}
	paths := slices.Sorted(func(yield func(string) bool) {
		for p := range w {
			if !yield(p) {
				return
			}
		}
	})
	compared := 0
	for _, rel := range paths {
		mode, ok := g[rel]
		if !ok {
			continue
		}
		if mode != w[rel] {
			t.Errorf("%s: type %v in the mongo mount, %v in the files' mount", rel, mode, w[rel])
			continue
		}
		gp, wp := filepath.Join(got, rel), filepath.Join(want, rel)
		switch {
		case mode&fs.ModeSymlink != 0:
			a, err1 := os.Readlink(gp)
			b, err2 := os.Readlink(wp)
			if err1 != nil || err2 != nil || a != b {
				t.Errorf("%s: symlink %q (%v), want %q (%v)", rel, a, err1, b, err2)
			}
		case !mode.IsRegular():
		case strings.HasSuffix(rel, ".npy"), strings.HasSuffix(rel, ".csv"), strings.HasSuffix(rel, ".tif"), strings.HasSuffix(rel, ".parquet"), filepath.Base(rel) == "files.txt":
			a, err1 := os.ReadFile(gp)
			b, err2 := os.ReadFile(wp)
			if (err1 == nil) != (err2 == nil) {
				t.Errorf("%s: read %v in the mongo mount, %v in the files' mount", rel, err1, err2)
			} else if !bytes.Equal(a, b) {
				t.Errorf("%s: %d bytes in the mongo mount differ from the files' mount's %d", rel, len(a), len(b))
			}
			compared++
		case strings.HasSuffix(rel, ".json"):
			a, b := readJSONValue(t, gp), readJSONValue(t, wp)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s differs:\n mongo: %.600v\n files: %.600v", rel, a, b)
			}
			compared++
		default:
			t.Errorf("%s: a file the comparison does not know", rel)
		}
	}
	t.Logf("compared %d files with the files' mount", compared)
}

func readJSONValue(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Errorf("%s: not JSON: %v", path, err)
	}
	return normalizeNumbers(v)
}

// normalizeNumbers turns json.Numbers into float64 or int64 so that 1e-07 equals 1e-7, while
// 1 and 1.0 stay distinct.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = normalizeNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalizeNumbers(x[k])
		}
	}
	return v
}

// loadNormalized inserts runs into mds / assets with catalog/mongo's writer.
func loadNormalized(t *testing.T, mds, assets string, runs [][]catalog.Document) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := mongo.NewWriter(ctx, mds, assets)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, docs := range runs {
		if err := w.Insert(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
}

// writeRunFiles writes each run as DIR/<uid>.msgpack and returns the files.
func writeRunFiles(t *testing.T, dir string, runs [][]catalog.Document) []string {
	t.Helper()
	var files []string
	for _, docs := range runs {
		path := filepath.Join(dir, docs[0].Doc["uid"].(string)+".msgpack")
		if err := msgpack.WriteRun(path, docs); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	return files
}

// TestMongoSentinel: an asset database without the version sentinel is refused with a message
// naming it and the command that installs it; `brokerfs sentinel check` agrees; `install`
// installs it once and refuses a second time; then the mount works.
func TestMongoSentinel(t *testing.T) {
	t.Parallel()
	srv := mongotest.Start(t)
	mds, assets := srv.URI("mds"), srv.URI("assets")
	runs := catalogtest.Runs()
	loadNormalized(t, mds, assets, runs)

	mnt := t.TempDir()
	out, code := run(t, time.Minute, "mount", "--timeout", "5s", "--asset-db", assets, mds, mnt)
	if code == 0 {
		t.Fatalf("mount without a sentinel exited 0:\n%s", out)
	}
	for _, want := range []string{"sentinel", "brokerfs sentinel install", "assets"} {
		if !strings.Contains(out, want) {
			t.Errorf("mount without a sentinel: the message does not contain %q:\n%s", want, out)
		}
	}
	if isMounted(mnt) {
		t.Errorf("%s is mounted after a refused mount", mnt)
	}
	t.Logf("refused mount (exit %d): %s", code, strings.TrimSpace(out))

	if out, code := run(t, time.Minute, "sentinel", "check", assets); code == 0 {
		t.Errorf("sentinel check of a database without one exited 0:\n%s", out)
	} else if !strings.Contains(out, "sentinel") {
		t.Errorf("sentinel check: the message does not name the sentinel:\n%s", out)
	}
	if out, code := run(t, time.Minute, "sentinel", "install", assets); code != 0 {
		t.Fatalf("sentinel install exited %d:\n%s", code, out)
	}
	if out, code := run(t, time.Minute, "sentinel", "install", assets); code == 0 {
		t.Errorf("a second sentinel install exited 0:\n%s", out)
	} else if !strings.Contains(out, "already") {
		t.Errorf("a second sentinel install: the message does not say it is already there:\n%s", out)
	}
	if out, code := run(t, time.Minute, "sentinel", "check", assets); code != 0 {
		t.Errorf("sentinel check after install exited %d:\n%s", code, out)
	}

	// A sentinel of another version is refused too.
	other := srv.URI("assets_v2")
	if out, code := run(t, time.Minute, "sentinel", "install", "--version", "2", other); code != 0 {
		t.Fatalf("sentinel install --version 2 exited %d:\n%s", code, out)
	}
	if out, code := run(t, time.Minute, "sentinel", "check", other); code == 0 || !strings.Contains(out, "version") {
		t.Errorf("sentinel check of a version 2 sentinel: exit %d, want a refusal naming the version:\n%s", code, out)
	}
	mnt3 := t.TempDir()
	if out, code := run(t, time.Minute, "mount", "--timeout", "5s", "--asset-db", other, mds, mnt3); code == 0 || !strings.Contains(out, "version") {
		t.Errorf("mount with a version 2 sentinel: exit %d, want a refusal naming the version:\n%s", code, out)
	} else {
		t.Logf("refused mount (version 2): %s", strings.TrimSpace(out))
	}

	mnt2, _ := mount(t, mds, "--timeout", "5s", "--asset-db", assets)
	for _, docs := range runs {
		uid := docs[0].Doc["uid"].(string)
		if _, err := os.Stat(filepath.Join(mnt2, uid, "start.json")); err != nil {
			t.Errorf("after installing the sentinel: %v", err)
		}
	}
}

// TestMongoEmbedded loads the contract fixtures without array fields (FerretDB refuses the
// nested arrays the embedded layout makes of them) in the embedded layout, writes the same
// runs as msgpack files, and checks the mount of the database against those files.
func TestMongoEmbedded(t *testing.T) {
	t.Parallel()
	srv := mongotest.Start(t)
	uri := srv.URI("emb")
	var runs [][]catalog.Document
	for _, docs := range catalogtest.Runs() {
		if docs[0].Doc["uid"] != catalogtest.UIDPages { // its "spectrum" is an array field
			runs = append(runs, docs)
		}
	}
	runs = append(runs, pagedScalarsRun())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, docs := range runs {
		if err := mongo.InsertRunEmbedded(ctx, uri, docs); err != nil {
			t.Fatal(err)
		}
	}
	files := writeRunFiles(t, t.TempDir(), runs)
	mnt, logs := mount(t, uri, "--layout", "embedded", "--timeout", "5s")
	expect(t, mnt, files)
	// And a direct look at one value, as a user would.
	got := npyRows(t, filepath.Join(mnt, catalogtest.UIDScalars, "primary", "det.npy"))
	if got != 5 {
		t.Errorf("det.npy has %d rows, want 5", got)
	}
	// The fixture's external run points at /old/root, which does not exist: its reads fail
	// with EIO (expect.py accepts that) and are logged. Nothing else may be.
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && !strings.Contains(line, "/old/root/") {
			t.Errorf("the embedded mount logged an error: %s", line)
		}
	}
}

// pagedScalarsRun is a run of event_pages without array fields, across two descriptors of
// one stream, for the embedded layout's columnar pages.
func pagedScalarsRun() []catalog.Document {
	type m = map[string]any
	uid := "d4e5f6a7-0000-4000-8000-000000000005"
	t0 := 1700004000.125
	keys := m{"x": m{"dtype": "number", "shape": []any{}, "source": "SIM:x"},
		"n": m{"dtype": "integer", "shape": []any{}, "source": "SIM:n"},
		"s": m{"dtype": "string", "shape": []any{}, "source": "SIM:s"}}
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": t0, "scan_id": int64(104), "plan_name": "grid_scan"}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d1", "run_start": uid, "time": t0 + 0.1, "name": "primary", "data_keys": keys}},
	}
	page := func(desc string, first, n int) catalog.Document {
		var ts, seq, x, nn, s, tsx []any
		for i := first; i < first+n; i++ {
			tm := t0 + 1 + float64(i)
			ts = append(ts, tm)
			seq = append(seq, int64(i+1))
			x = append(x, float64(i)/7)
			nn = append(nn, int64(-3*i))
			s = append(s, strings.Repeat("ab", i))
			tsx = append(tsx, tm-0.25)
		}
		return catalog.Document{Name: "event_page", Doc: m{"descriptor": desc, "uid": []any{}, "time": ts, "seq_num": seq,
			"data":       m{"x": x, "n": nn, "s": s},
			"timestamps": m{"x": tsx, "n": tsx, "s": tsx}, "filled": m{}}}
	}
	docs = append(docs, page(uid+"-d1", 0, 4), page(uid+"-d1", 4, 3))
	docs = append(docs, catalog.Document{Name: "descriptor", Doc: m{"uid": uid + "-d2", "run_start": uid, "time": t0 + 7.5,
		"name": "primary", "data_keys": keys}})
	docs = append(docs, page(uid+"-d2", 7, 2))
	return append(docs, catalog.Document{Name: "stop", Doc: m{"uid": uid + "-stop", "run_start": uid, "time": t0 + 20,
		"exit_status": "success", "reason": "", "num_events": m{"primary": int64(9)}}})
}

// readWithin reads path in a goroutine and returns its error and how long it took; it fails
// the test when the read has not returned within limit (a hang), and then does not wait.
func readWithin(t *testing.T, path string, limit time.Duration) (time.Duration, error) {
	t.Helper()
	type result struct {
		err error
		d   time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		_, err := os.ReadFile(path)
		done <- result{err, time.Since(start)}
	}()
	select {
	case r := <-done:
		return r.d, r.err
	case <-time.After(limit):
		t.Fatalf("reading %s has not returned after %v: it hangs", path, limit)
		return 0, nil
	}
}

// listWithin is readWithin for a directory listing.
func listWithin(t *testing.T, path string, limit time.Duration) ([]string, time.Duration, error) {
	t.Helper()
	type result struct {
		names []string
		err   error
		d     time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		entries, err := os.ReadDir(path)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		done <- result{names, err, time.Since(start)}
	}()
	select {
	case r := <-done:
		return r.names, r.d, r.err
	case <-time.After(limit):
		t.Fatalf("listing %s has not returned after %v: it hangs", path, limit)
		return nil, 0, nil
	}
}

// TestMongoOutage stops the server under a mount: what was read stays readable from the
// cache, a run never read fails with EIO within the timeout (no hang), the outage is logged
// once, and reads succeed again soon after the server is back.
func TestMongoOutage(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	srv := mongotest.Start(t)
	mds, assets := srv.URI("mds"), srv.URI("assets")
	runs := catalogtest.Runs()
	loadNormalized(t, mds, assets, runs)
	installSentinel(t, assets)
	s := startServer(t, mds, "--asset-db", assets, "--timeout", timeout.String(), "--list-ttl", "300ms", "--live-ttl", "300ms")
	mnt, logs := s.mnt, s.logs

	read := filepath.Join(mnt, catalogtest.UIDScalars, "primary", "det.npy")
	before, err := os.ReadFile(read)
	if err != nil {
		t.Fatal(err)
	}
	rootBefore, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	unread := filepath.Join(mnt, catalogtest.UIDPages, "primary", "x.npy")

	logLen := len(logs.String())
	srv.Stop()
	downAt := time.Now()
	time.Sleep(500 * time.Millisecond) // past the list and live TTLs

	limit := timeout + 8*time.Second // beyond this a read counts as hung
	names, d, err := listWithin(t, mnt, limit)
	t.Logf("ls of the root during the outage: %v in %v", err, d.Round(time.Millisecond))
	if err != nil {
		t.Errorf("ls %s during the outage: %v, want the cached listing", mnt, err)
	} else if len(names) != len(rootBefore) {
		t.Errorf("ls %s during the outage: %q, want the %d cached entries", mnt, names, len(rootBefore))
	}
	checkOutageLatency(t, "ls of the root", d, timeout)

	d, err = readWithin(t, read, limit)
	t.Logf("cat of a file read before the outage: %v in %v", err, d.Round(time.Millisecond))
	if err != nil {
		t.Errorf("reading %s (read before the outage) during the outage: %v, want the cached bytes", read, err)
	} else if got, _ := os.ReadFile(read); !bytes.Equal(got, before) {
		t.Errorf("%s changed during the outage", read)
	}

	// A second ls, after the list TTL: still the cached listing.
	time.Sleep(400 * time.Millisecond)
	names, d, err = listWithin(t, mnt, limit)
	t.Logf("second ls of the root during the outage: %v in %v", err, d.Round(time.Millisecond))
	if err != nil || len(names) != len(rootBefore) {
		t.Errorf("second ls %s during the outage: %q, %v; want the %d cached entries", mnt, names, err, len(rootBefore))
	}
	checkOutageLatency(t, "ls of the root (list TTL expired)", d, timeout)

	var eioTimes []time.Duration
	for i := 0; i < 3; i++ {
		time.Sleep(400 * time.Millisecond) // past the list TTL and the kernel's entry timeout
		d, err := readWithin(t, unread, limit)
		eioTimes = append(eioTimes, d.Round(time.Millisecond))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("reading %s (never read) during the outage: %v, want EIO", unread, err)
		}
		checkOutageLatency(t, "cat of a never-read run's file", d, timeout)
	}
	t.Logf("EIO latency of a never-read run's file during the outage: %v (timeout %v)", eioTimes, timeout)
	// And a few more requests of other kinds during the outage, for the log count below.
	listWithin(t, filepath.Join(mnt, catalogtest.UIDLive), limit)
	readWithin(t, filepath.Join(mnt, catalogtest.UIDAssets, "start.json"), limit)

	if n := strings.Count(logs.String(), "mongo server unreachable"); n != 1 {
		t.Errorf("%d outage lines in the log, want 1:\n%s", n, logs)
	}
	outageLog := strings.TrimSpace(logs.String()[logLen:])
	t.Logf("%d log lines during the outage:\n%s", strings.Count(outageLog, "\n")+1, outageLog)
	t.Logf("outage lasted %v before the restart", time.Since(downAt).Round(time.Millisecond))

	srv.Restart()
	upAt := time.Now()
	for {
		_, err := readWithin(t, unread, limit)
		if err == nil {
			break
		}
		if time.Since(upAt) > 15*time.Second {
			t.Fatalf("reads still fail %v after the server came back: %v\n%s", time.Since(upAt), err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	recovery := time.Since(upAt)
	t.Logf("recovery: a never-read file reads %v after the restart", recovery.Round(time.Millisecond))
	if recovery > 5*time.Second {
		t.Errorf("recovery took %v, want a few seconds", recovery)
	}
	if !logs.waitFor("mongo server reachable again", 5*time.Second) {
		t.Errorf("no recovery line in the log:\n%s", logs)
	}
	if n := strings.Count(logs.String(), "mongo server unreachable"); n != 1 {
		t.Errorf("%d outage lines in the log after recovery, want 1:\n%s", n, logs)
	}
	if _, err := os.ReadDir(filepath.Join(mnt, catalogtest.UIDPages)); err != nil {
		t.Errorf("after recovery: %v", err)
	}
	s.stop(syscall.SIGTERM)
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "mongo server") {
			t.Logf("log: %s", line)
		}
	}
}

// knownBugs makes the checks of known, reported bugs fail the test; without it they are
// logged. BROKERFS_KNOWN_BUGS=1 go test -run TestMongoOutage ./integration/ shows them.
var knownBugs = os.Getenv("BROKERFS_KNOWN_BUGS") != ""

// checkOutageLatency checks how long an operation took to answer during an outage. It must
// never hang (readWithin and listWithin fail the test after timeout+8s); more than twice the
// timeout fails here; more than the timeout plus one second is the known bug of
// nodes/state.go (a lookup waits for the listing's refresh and then for the run's load, each
// up to --timeout), which fails only with BROKERFS_KNOWN_BUGS set.
func checkOutageLatency(t *testing.T, what string, d, timeout time.Duration) {
	t.Helper()
	switch {
	case d > 2*timeout+time.Second:
		t.Errorf("%s during the outage took %v, want at most the timeout %v (plus a second)", what, d, timeout)
	case d > timeout+time.Second && knownBugs:
		t.Errorf("KNOWN BUG: %s during the outage took %v, want at most the timeout %v (plus a second)", what, d, timeout)
	case d > timeout+time.Second:
		t.Logf("KNOWN BUG (BROKERFS_KNOWN_BUGS=1 fails on it): %s during the outage took %v, more than the timeout %v", what, d, timeout)
	}
}

func installSentinel(t *testing.T, uri string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mongo.InstallSentinel(ctx, uri, 1); err != nil {
		t.Fatal(err)
	}
}

// TestMongoUnreachable: a mount of a server that does not answer fails within a few seconds
// of --timeout with a clear error, and leaves nothing mounted.
func TestMongoUnreachable(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	mnt := t.TempDir()
	start := time.Now()
	out, code := run(t, 30*time.Second, "mount", "--timeout", "1s", "mongodb://127.0.0.1:1/mds", mnt)
	d := time.Since(start)
	t.Logf("unreachable server: exit %d after %v: %s", code, d.Round(time.Millisecond), strings.TrimSpace(out))
	if code == 0 {
		t.Errorf("mount of an unreachable server exited 0")
	}
	if d > 5*time.Second {
		t.Errorf("mount of an unreachable server took %v with --timeout 1s", d)
	}
	if !strings.Contains(out, "127.0.0.1:1") {
		t.Errorf("the error does not name the server:\n%s", out)
	}
	if strings.Count(strings.TrimSpace(out), "\n") > 3 {
		t.Errorf("a long error for an unreachable server (want a line or two):\n%s", out)
	}
	if isMounted(mnt) {
		detach(mnt)
		t.Errorf("%s is mounted after a failed mount", mnt)
	}
}

// TestMongoCredentials: a password in the URI appears neither in the errors of a failed
// mount nor in /proc/self/mountinfo for a mount that works.
func TestMongoCredentials(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	const secret = "s3cret"
	for _, uri := range []string{
		"mongodb://alice:" + secret + "@127.0.0.1:1/mds",
		"mongodb://alice:" + secret + "@127.0.0.1:1/mds?authSource=admin",
	} {
		mnt := t.TempDir()
		out, code := run(t, 30*time.Second, "mount", "--timeout", "1s", "--asset-db", strings.Replace(uri, "/mds", "/assets", 1), uri, mnt)
		if code == 0 {
			t.Errorf("mount of an unreachable server exited 0")
		}
		if strings.Contains(out, secret) {
			t.Errorf("the error of a failed mount shows the password:\n%s", out)
		}
		t.Logf("failed mount with credentials: %s", strings.TrimSpace(out))
	}
	// sentinel and copy print the URI too.
	for _, args := range [][]string{
		{"sentinel", "check", "--timeout", "1s", "mongodb://alice:" + secret + "@127.0.0.1:1/assets"},
		{"sentinel", "install", "--timeout", "1s", "mongodb://alice:" + secret + "@127.0.0.1:1/assets"},
		{"ls", "--timeout", "1s", "mongodb://alice:" + secret + "@127.0.0.1:1/mds"},
	} {
		out, code := run(t, 30*time.Second, args...)
		if code == 0 {
			t.Errorf("brokerfs %s exited 0", strings.Join(args[:2], " "))
		}
		if strings.Contains(out, secret) {
			t.Errorf("brokerfs %s shows the password:\n%s", strings.Join(args[:2], " "), out)
		}
	}

	// A mount that works: with credentials if the server takes them, else without.
	srv := mongotest.Start(t)
	mds, assets := srv.URI("mds"), srv.URI("assets")
	loadNormalized(t, mds, assets, catalogtest.Runs())
	installSentinel(t, assets)
	withCreds := func(u string) string {
		return strings.Replace(u, "mongodb://", "mongodb://alice:"+secret+"@", 1) + "?authMechanism=PLAIN"
	}
	s := startServerNoWait(t, withCreds(mds), "--timeout", "3s", "--asset-db", withCreds(assets))
	mounted := waitMountedOrExit(t, s)
	if mounted {
		t.Logf("FerretDB took the credentials: checking the mount's source")
		checkNoSecret(t, s, secret)
		s.stop(syscall.SIGTERM)
	} else {
		t.Logf("FerretDB refused the credentials: %s", strings.TrimSpace(s.logs.String()))
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("the failed mount shows the password:\n%s", s.logs)
		}
		s.checked = true
	}
	if strings.Contains(s.logs.String(), secret) {
		t.Errorf("brokerfs's output shows the password:\n%s", s.logs)
	}
	// Without credentials, the source is the plain URI.
	s2 := startServer(t, mds, "--timeout", "3s", "--asset-db", assets)
	src := mountSource(t, s2.mnt)
	t.Logf("mount source without credentials: %q", src)
	if !strings.Contains(src, "127.0.0.1") {
		t.Errorf("mount source %q does not name the server", src)
	}
}

// waitMountedOrExit waits until s has mounted (true) or exited (false).
func waitMountedOrExit(t *testing.T, s *server) bool {
	t.Helper()
	deadline := time.Now().Add(mountWait)
	for time.Now().Before(deadline) {
		if isMounted(s.mnt) {
			s.logs.waitFor("msg=mounted", 2*time.Second)
			return true
		}
		select {
		case <-s.done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.dumpStacks()
	t.Fatalf("%s neither mounted nor failed within %v; brokerfs says (goroutines at the end):\n%s", s.mnt, mountWait, s.logs)
	return false
}

func checkNoSecret(t *testing.T, s *server, secret string) {
	t.Helper()
	src := mountSource(t, s.mnt)
	t.Logf("mount source with credentials: %q", src)
	if strings.Contains(src, secret) || strings.Contains(src, "alice") {
		t.Errorf("/proc/self/mountinfo shows the credentials: source %q", src)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if bytes.Contains(mounts, []byte(secret)) {
		t.Errorf("/proc/mounts shows the password")
	}
	if strings.Contains(s.logs.String(), secret) {
		t.Errorf("the server's log shows the password:\n%s", s.logs)
	}
}

// mountSource returns the source field of mnt's line in /proc/self/mountinfo.
func mountSource(t *testing.T, mnt string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeOctal(fields[4]) != mnt {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				return unescapeOctal(fields[i+2])
			}
		}
	}
	t.Fatalf("%s is not in /proc/self/mountinfo", mnt)
	return ""
}

// TestMongoLive follows a live run in MongoDB: events inserted into the event collection
// show up as new rows within the live TTL, and a stop document makes stop.json appear.
func TestMongoLive(t *testing.T) {
	t.Parallel()
	srv := mongotest.Start(t)
	mds, assets := srv.URI("mds"), srv.URI("assets")
	var live []catalog.Document
	for _, docs := range catalogtest.Runs() {
		if docs[0].Doc["uid"] == catalogtest.UIDLive {
			live = docs
		}
	}
	loadNormalized(t, mds, assets, [][]catalog.Document{live})
	installSentinel(t, assets)
	mnt, logs := mount(t, mds, "--asset-db", assets, "--live-ttl", "300ms", "--list-ttl", "300ms", "--timeout", "5s")
	run := filepath.Join(mnt, catalogtest.UIDLive)
	npy := filepath.Join(run, "primary", "I0.npy")
	rows := npyRows(t, npy)
	if rows != 3 {
		t.Fatalf("I0.npy has %d rows, want 3", rows)
	}
	if _, err := os.Stat(filepath.Join(run, "stop.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stop.json of a live run: %v, want ENOENT", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := driver.Connect(options.Client().ApplyURI(mds))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database("mds")
	uid := catalogtest.UIDLive
	t0 := 1700002000.0
	var events []any
	for i := 3; i < 5; i++ {
		events = append(events, bson.D{
			{Key: "uid", Value: uid + "-e" + string(rune('0'+i))}, {Key: "descriptor", Value: uid + "-d1"},
			{Key: "time", Value: t0 + 1 + float64(i)}, {Key: "seq_num", Value: int64(i + 1)},
			{Key: "data", Value: bson.D{{Key: "I0", Value: 1000.5 + float64(i)}}},
			{Key: "timestamps", Value: bson.D{{Key: "I0", Value: t0 + float64(i)}}},
			{Key: "filled", Value: bson.D{}},
		})
	}
	if _, err := db.Collection("event").InsertMany(ctx, events); err != nil {
		t.Fatal(err)
	}
	inserted := time.Now()
	for npyRows(t, npy) != rows+2 {
		if time.Since(inserted) > 5*time.Second {
			t.Fatalf("I0.npy still has %d rows 5 s after two events were inserted, want %d\n%s", npyRows(t, npy), rows+2, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	grew := time.Since(inserted)
	t.Logf("I0.npy grew by two rows %v after the insert", grew.Round(time.Millisecond))
	if grew > 1500*time.Millisecond {
		t.Errorf("I0.npy took %v to grow, want about the live TTL (300 ms) plus the kernel's caching, under 1.5 s", grew)
	}
	b, err := os.ReadFile(npy)
	if err != nil {
		t.Fatal(err)
	}
	// The last two float64 values are the new events' I0.
	tail := b[len(b)-16:]
	for i, want := range []float64{1003.5, 1004.5} {
		if got := math.Float64frombits(binary.LittleEndian.Uint64(tail[8*i:])); got != want {
			t.Errorf("I0.npy row %d = %v, want %v (file of %d bytes: %q)", rows+i, got, want, len(b), b[:min(len(b), 80)])
		}
	}

	stop := bson.D{{Key: "uid", Value: uid + "-stop"}, {Key: "run_start", Value: uid}, {Key: "time", Value: t0 + 10},
		{Key: "exit_status", Value: "success"}, {Key: "reason", Value: ""},
		{Key: "num_events", Value: bson.D{{Key: "primary", Value: int64(5)}}}}
	if _, err := db.Collection("run_stop").InsertOne(ctx, stop); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	for {
		b, err := os.ReadFile(filepath.Join(run, "stop.json"))
		if err == nil {
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil || doc["exit_status"] != "success" {
				t.Errorf("stop.json = %s (%v), want the stop document", b, err)
			}
			break
		}
		if time.Since(stopped) > 5*time.Second {
			t.Fatalf("no stop.json 5 s after the stop document was inserted: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stop.json appeared %v after the insert", time.Since(stopped).Round(time.Millisecond))
}
