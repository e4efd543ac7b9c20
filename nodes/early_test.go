package nodes

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/table"
)

// earlyRun is a run like twoResourceRun (datums a0..a3 of a.h5, points 0..3; b0, b1 of b.h5)
// whose events are built by events (a second descriptor d2 of the stream when one of them is
// its), stored as a msgpack file: the catalog that counts events in its index
// (catalog.EventCounter).
func earlyRun(t *testing.T, events func(ev func(desc string, i int, data map[string]any, time any))) catalog.Catalog {
	t.Helper()
	datums := [][3]any{{"a", "a0", 0}, {"a", "a1", 1}, {"a", "a2", 2}, {"a", "a3", 3}, {"b", "b0", 0}, {"b", "b1", 1}}
	docs := twoResourceRun(datums, nil)
	stop := docs[len(docs)-1]
	docs = docs[:len(docs)-1]
	var evs []catalog.Document
	d2 := false
	events(func(desc string, i int, data map[string]any, time any) {
		d2 = d2 || desc == "d2"
		ts := map[string]any{}
		for k := range data {
			ts[k] = 2.0
		}
		evs = append(evs, catalog.Document{Name: "event", Doc: map[string]any{"uid": fmt.Sprint("e", len(evs)), "descriptor": desc,
			"time": time, "seq_num": int64(i + 1), "data": data, "timestamps": ts}})
	})
	if d2 {
		docs = append(docs, catalog.Document{Name: "descriptor", Doc: map[string]any{"uid": "d2", "run_start": warmUID, "time": 1.5, "name": "primary",
			"data_keys": map[string]any{"img": map[string]any{"dtype": "array", "shape": []any{}, "source": "PV:img", "external": "FILESTORE:"}}}})
	}
	docs = append(docs, evs...)
	docs = append(docs, stop)
	dir := t.TempDir()
	if err := msgpack.WriteRun(filepath.Join(dir, warmUID+".msgpack"), docs); err != nil {
		t.Fatal(err)
	}
	cat, err := msgpack.Open([]string{dir}, msgpack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat
}

// earlyTree mounts cat with a Filler of twoFiles handlers and table stats.
func earlyTree(t *testing.T, cat catalog.Catalog) (*tree, *table.Stats) {
	l := &openLog{opens: map[string]int{}}
	stats := &table.Stats{}
	tr := newTree(t, cat, func(cfg *Config) {
		cfg.TableStats = stats
		cfg.Filler = handlers.NewFiller(handlers.FillerOptions{Registry: l.registry(), Logger: cfg.Logger, Retry: 1})
		t.Cleanup(func() { cfg.Filler.Close() })
	})
	return tr, stats
}

// npyView is what a reader sees of a file: its size, and the bytes (or errno) of each piece
// of it read alone (the header, then row by row), and of the whole read in one go.
type npyView struct {
	size   uint64
	pieces []string
	whole  string
}

func (tr *tree) view(path string, rb int) npyView {
	tr.t.Helper()
	f := tr.mustLookup(path).(*file)
	var attr fuse.AttrOut
	if errno := f.Getattr(context.Background(), nil, &attr); errno != 0 {
		tr.t.Fatalf("getattr %s: %v", path, errno)
	}
	v := npyView{size: attr.Size}
	readAt := func(off, n int) string {
		fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
		if errno != 0 {
			return "open: " + errno.Error()
		}
		defer fh.(*handle).Release(context.Background())
		buf := make([]byte, n)
		var out []byte
		for len(out) < n {
			res, errno := f.Read(context.Background(), fh, buf[:n-len(out)], int64(off+len(out)))
			if errno != 0 {
				return "read: " + errno.Error()
			}
			b, _ := res.Bytes(make([]byte, n))
			if len(b) == 0 {
				break
			}
			out = append(out, b...)
		}
		return fmt.Sprintf("%x", out)
	}
	const hdr = 4096
	v.pieces = append(v.pieces, readAt(0, hdr))
	for off := hdr; off < int(v.size); off += rb {
		v.pieces = append(v.pieces, readAt(off, rb))
	}
	v.whole = readAt(0, int(v.size))
	return v
}

// An external field's .npy looked up before its stream's scan is sized from the catalog's
// event count and the first datum's description when these are certain to be the scan's: the
// file then has the size and bytes the scanned column gives (a tree that listed the stream
// directory first, which waits for the scan, is what brokerfs served before), also when events
// in the middle lack the field or one is malformed; with two descriptors, or a first event
// whose datum is not the run's first, the lookup waits for the scan. Values: element i of
// point n of a.h5 is 100*n + i, of b.h5 1000 + 100*n + i (twoFiles).
func TestEarlyNPY(t *testing.T) {
	if withoutCache {
		t.Skip("covered with the cache; the memory path is the same early file")
	}
	type evf = func(desc string, i int, data map[string]any, time any)
	img := func(id string) map[string]any { return map[string]any{"img": id} }
	for _, c := range []struct {
		name   string
		events func(ev evf)
		early  bool
		want   []int // the point of a.h5 of each row, -1: the row's read fails; nil: not checked
	}{
		{"usual", func(ev evf) {
			for i := range 4 {
				ev("d1", i, img(fmt.Sprint("a", i)), 2.0+float64(i))
			}
		}, true, []int{0, 1, 2, 3}},
		{"event without the field", func(ev evf) {
			ev("d1", 0, img("a0"), 2.0)
			ev("d1", 1, map[string]any{}, 3.0)
			ev("d1", 2, img("a2"), 4.0)
		}, true, []int{0, -1, 2}},
		{"malformed event", func(ev evf) {
			ev("d1", 0, img("a0"), 2.0)
			ev("d1", 1, img("a1"), "not a time")
			ev("d1", 2, img("a2"), 4.0)
			ev("d1", 3, img("a3"), 5.0)
		}, true, []int{0, 2, 3}}, // skipped, as the index skips it
		{"two descriptors", func(ev evf) {
			ev("d1", 0, img("a0"), 2.0)
			ev("d2", 0, img("a1"), 2.5)
			ev("d1", 1, img("a2"), 3.0)
		}, false, []int{0, 1, 2}},
		{"first event another datum", func(ev evf) {
			ev("d1", 0, img("a1"), 2.0)
			ev("d1", 1, img("a0"), 3.0)
		}, false, []int{1, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cat := earlyRun(t, c.events)
			const path = warmUID + "/primary/img.npy"
			const rb = 2 * 6 // (1, 2, 3) of <u2
			early, estats := earlyTree(t, cat)
			got := early.view(path, rb)
			if n := estats.EarlyNPY.Load(); (n == 1) != c.early {
				t.Errorf("%d files sized before the scan, want early=%v; log: %s", n, c.early, early.logString())
			}
			scanned, sstats := earlyTree(t, cat)
			scanned.list(warmUID + "/primary")
			want := scanned.view(path, rb)
			if n := sstats.EarlyNPY.Load(); n != 0 {
				t.Errorf("%d files sized before the scan after a listing, want 0", n)
			}
			if got.size != want.size || got.whole != want.whole || len(got.pieces) != len(want.pieces) {
				t.Fatalf("early: %d bytes, whole read %.40s, %d pieces; scanned: %d bytes, %.40s, %d pieces",
					got.size, got.whole, len(got.pieces), want.size, want.whole, len(want.pieces))
			}
			for i := range got.pieces {
				if got.pieces[i] != want.pieces[i] {
					t.Errorf("piece %d: early %.60s, scanned %.60s", i, got.pieces[i], want.pieces[i])
				}
			}
			if c.want == nil {
				return
			}
			// Independently of brokerfs: the size, the header's shape and each row's values.
			if got.size != uint64(4096+rb*len(c.want)) {
				t.Errorf("size %d, want %d", got.size, 4096+rb*len(c.want))
			}
			hdr := []byte(got.pieces[0])
			if !bytes.Contains(hexBytes(t, string(hdr)), []byte(fmt.Sprintf("'shape': (%d, 1, 2, 3)", len(c.want)))) {
				t.Errorf("header %q", hexBytes(t, string(hdr)))
			}
			for r, n := range c.want {
				p := got.pieces[1+r]
				if n < 0 {
					if p != "read: "+syscall.EIO.Error() {
						t.Errorf("row %d: %.40s, want EIO", r, p)
					}
					continue
				}
				row := hexBytes(t, p)
				for i := range 6 {
					if v := binary.LittleEndian.Uint16(row[2*i:]); v != uint16(100*n+i) {
						t.Fatalf("row %d element %d = %d, want %d", r, i, v, 100*n+i)
					}
				}
			}
		})
	}
}

func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatalf("not hex: %.40s", s)
	}
	return b
}
