package nodes

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/memory"
	"github.com/brokerfs/brokerfs/handlers"
)

// openLog counts what twoFiles handlers are asked, by file, and can refuse to open a file as
// a missing one.
type openLog struct {
	mu        sync.Mutex
	opens     map[string]int
	describes atomic.Int64
	missing   string // base name of a file whose open fails with fs.ErrNotExist
}

func (l *openLog) registry() *handlers.Registry {
	reg := handlers.NewRegistry()
	reg.Register("AD_HDF5", func(_ context.Context, path string, _ map[string]any) (handlers.Handler, error) {
		l.mu.Lock()
		l.opens[filepath.Base(path)]++
		l.mu.Unlock()
		if filepath.Base(path) == l.missing {
			return nil, fmt.Errorf("open %s: %w", path, fs.ErrNotExist)
		}
		return &twoFiles{path: path, describes: &l.describes}, nil
	})
	return reg
}

func (l *openLog) openCount(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opens[name]
}

// waitFor polls cond until it holds; the work it waits for runs in the background.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

const warmUID = "f1000000-0000-4000-8000-000000000001"

// tree mounts twoResourceRun(datums, imgs) with a Filler whose handlers l records.
func (l *openLog) tree(t *testing.T, datums [][3]any, imgs []string) *tree {
	t.Helper()
	cat, err := memory.New(twoResourceRun(datums, imgs))
	if err != nil {
		t.Fatal(err)
	}
	return newTree(t, cat, func(cfg *Config) {
		cfg.Filler = handlers.NewFiller(handlers.FillerOptions{Registry: l.registry(), Logger: cfg.Logger, Retry: 1})
		t.Cleanup(func() { cfg.Filler.Close() })
	})
}

// A lookup of a stream's directory opens and describes the first datum's file in the
// background, before any of the stream's files is looked up, and reads no frame; the .npy
// looked up next is sized from that description (one open, one Describe in all) and reads
// the frames the handler gives.
func TestStreamDirLookupWarms(t *testing.T) {
	l := &openLog{opens: map[string]int{}}
	tr := l.tree(t, [][3]any{{"a", "a0", 0}, {"a", "a1", 1}}, []string{"a0", "a1"})
	tr.mustLookup(warmUID + "/primary")
	waitFor(t, "the first datum described after the stream's lookup", func() bool { return l.describes.Load() == 1 })
	if n := l.openCount("a.h5"); n != 1 {
		t.Errorf("a.h5 opened %d times by the stream's lookup, want 1", n)
	}
	descr, shape, data := parseNPY(t, tr.mustRead(warmUID+"/primary/img.npy"))
	if descr != "<u2" || shape != "2, 1, 2, 3" {
		t.Fatalf("img.npy: %s (%s), want <u2 (2, 1, 2, 3)", descr, shape)
	}
	for i := range len(data) / 2 {
		// twoFiles: element i of point n of a.h5 is 100*n + i; row r is point r here.
		if got, want := binary.LittleEndian.Uint16(data[2*i:]), uint16(100*(i/6)+i%6); got != want {
			t.Fatalf("flat[%d] = %d, want %d", i, got, want)
		}
	}
	if n, d := l.openCount("a.h5"), l.describes.Load(); n != 1 || d != 1 {
		t.Errorf("a.h5 opened %d times and described %d times in all, want 1 and 1", n, d)
	}
}

// The first resource's file missing: the open started by the stream's lookup fails in the
// background and says nothing; the .npy is sized from a datum whose file is there, its rows
// in that file read, and the row of the missing file fails with EIO and one log line naming
// the resource and its path, as when nothing was opened ahead.
func TestStreamDirLookupWarmsMissingFile(t *testing.T) {
	l := &openLog{opens: map[string]int{}, missing: "a.h5"}
	tr := l.tree(t, [][3]any{{"a", "a0", 0}, {"b", "b0", 0}, {"b", "b1", 1}}, []string{"a0", "b0", "b1"})
	tr.mustLookup(warmUID + "/primary")
	waitFor(t, "the open of a.h5 after the stream's lookup", func() bool { return l.openCount("a.h5") >= 1 })
	if s := tr.logString(); s != "" {
		t.Errorf("the failed open ahead logged:\n%s", s)
	}
	f := tr.mustLookup(warmUID + "/primary/img.npy").(*file)
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	read := func(off, n int64) ([]byte, syscall.Errno) {
		buf := make([]byte, n)
		res, errno := f.Read(context.Background(), fh, buf, off)
		if errno != 0 {
			return nil, errno
		}
		b, _ := res.Bytes(buf)
		return b, 0
	}
	hdr, errno := read(0, 4096)
	if errno != 0 {
		t.Fatalf("read the header: %v", errno)
	}
	descr, shape, _ := parseNPY(t, hdr)
	if descr != "<u2" || shape != "3, 1, 2, 2" {
		t.Fatalf("img.npy: %s (%s), want <u2 (3, 1, 2, 2): sized from b.h5", descr, shape)
	}
	hlen := int64(10 + binary.LittleEndian.Uint16(hdr[8:]))
	const rb = 8 // (1, 2, 2) uint16
	for row := int64(1); row < 3; row++ {
		b, errno := read(hlen+row*rb, rb)
		if errno != 0 {
			t.Fatalf("row %d (b.h5): %v\n%s", row, errno, tr.logString())
		}
		for i := range 4 {
			// twoFiles: element i of point n of b.h5 is 1000 + 100*n + i; row r is point r-1.
			if got, want := binary.LittleEndian.Uint16(b[2*i:]), uint16(1000+100*(row-1)+int64(i)); got != want {
				t.Errorf("row %d element %d = %d, want %d", row, i, got, want)
			}
		}
	}
	if _, errno := read(hlen, rb); errno != syscall.EIO {
		t.Fatalf("row 0 (a.h5 missing): %v, want EIO", errno)
	}
	logs := tr.logString()
	if strings.Count(logs, "\n") != 1 {
		t.Errorf("want one log line, have:\n%s", logs)
	}
	for _, want := range []string{"res-a", "AD_HDF5", "/data/a.h5"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// When an external field's sparse cache file cannot be made (here the cache is closed after
// the stream's table was stored), the header and every row still read as the handler gives
// them, and one log line names the field served without the cache.
func TestExternalSparseUnavailable(t *testing.T) {
	if withoutCache {
		t.Skip("needs a cache")
	}
	var store *cache.Store
	tr, _, _ := externalTree(t, false, func(c *Config) { store = c.Cache })
	tr.mustRead(catalogtest.UIDAssets + "/primary/time.npy") // the stream's table, stored
	store.Close()
	descr, shape, data := parseNPY(t, tr.mustRead(catalogtest.UIDAssets+"/primary/img.npy"))
	if descr != "<u2" || shape != "3, 1, 2, 3" {
		t.Fatalf("img: %s (%s)", descr, shape)
	}
	for i := 0; i < 18; i++ {
		// fakeFrames: element i of point n is 100*n + i; row r is point r.
		if got, want := binary.LittleEndian.Uint16(data[2*i:]), uint16(100*(i/6)+i%6); got != want {
			t.Errorf("img flat[%d] = %d, want %d", i, got, want)
		}
	}
	if n := strings.Count(tr.logString(), "serving without it"); n != 1 || !tr.logged("field=img") {
		t.Errorf("%d log lines say the cache is not used, want 1 naming the field:\n%s", n, tr.logString())
	}
}
