package nodes

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog/memory"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/table"
)

// storedFramesHandler is bigFramesHandler whose frames are stored as read
// (handlers.RangeReader): ranges of frame n come back as ranges of its bytes, counted.
type storedFramesHandler struct {
	bigFramesHandler
	ranges, bytes atomic.Int64
}

func (h *storedFramesHandler) ReadRange(_ context.Context, kw map[string]any, dst []byte, off int64, descr string, shape []int) error {
	if descr != "<u2" || fmt.Sprint(shape) != fmt.Sprint([]int{bigSide, bigSide}) {
		return fmt.Errorf("%s %v: %w", descr, shape, handlers.ErrNotDirect)
	}
	if off < 0 || off+int64(len(dst)) > bigRow {
		return fmt.Errorf("range [%d +%d) of a frame of %d", off, len(dst), bigRow)
	}
	h.ranges.Add(1)
	h.bytes.Add(int64(len(dst)))
	n, _ := handlers.IntKwarg(kw, "point_number", -1)
	var px [2]byte
	binary.LittleEndian.PutUint16(px[:], uint16(n))
	for i := range dst {
		dst[i] = px[(off+int64(i))%2]
	}
	return nil
}

func (h *storedFramesHandler) Stored(context.Context, map[string]any, string, []int) bool {
	return true
}

// TestStoredFrames: a field whose frames are stored as read is served by byte ranges from the
// handler, never decoded whole, with no sparse cache file and no fill ahead: read(2) in 1 MiB
// requests (direct I/O) reads each byte once; a page fault reads its whole row, once, and hands
// it over.
func TestStoredFrames(t *testing.T) {
	h := &storedFramesHandler{bigFramesHandler: bigFramesHandler{reads: &atomic.Int64{}}}
	reg := handlers.NewRegistry()
	reg.Register("AD_HDF5", func(context.Context, string, map[string]any) (handlers.Handler, error) { return h, nil })
	cat, err := memory.New(bigFramesRun())
	if err != nil {
		t.Fatal(err)
	}
	stats := &table.Stats{}
	var store *cache.Store
	tr := newTree(t, cat, func(c *Config) {
		store = c.Cache
		c.Filler = handlers.NewFiller(handlers.FillerOptions{Registry: reg, Logger: c.Logger, Retry: 1})
		t.Cleanup(func() { c.Filler.Close() })
		c.TableStats = stats
	})
	f := tr.mustLookup(bigUID + "/primary/cam.npy").(*file)
	var attr fuse.AttrOut
	if errno := f.Getattr(context.Background(), nil, &attr); errno != 0 {
		t.Fatal(errno)
	}
	const hdr = 4096
	size := int64(hdr + bigFrames*bigRow)
	if int64(attr.Size) != size {
		t.Fatalf("st_size %d, want %d", attr.Size, size)
	}
	fh, flags, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	if flags&fuse.FOPEN_DIRECT_IO == 0 {
		t.Errorf("open flags %#x: want FOPEN_DIRECT_IO (read(2) in large requests)", flags)
	}
	readRange(t, f, fh, 0, size, 1<<20)
	if n := h.reads.Load(); n != 0 {
		t.Errorf("a whole read decoded %d frames, want 0 (byte ranges only)", n)
	}
	if n := h.bytes.Load(); n != bigFrames*bigRow {
		t.Errorf("a whole read asked the handler for %d bytes, want %d (each once)", n, bigFrames*bigRow)
	}
	if n := stats.FillsAhead.Load(); n != 0 {
		t.Errorf("%d fills ahead, want 0", n)
	}

	// A page fault inside frame 5: the page, with frame 5 handed over whole, read once.
	rr, ok := fh.(*handle).h.(table.RowReader)
	if !ok {
		t.Fatalf("the handle is a %T, not a table.RowReader", fh.(*handle).h)
	}
	before := h.bytes.Load()
	p := make([]byte, 4096)
	n, rowOff, rowLen, err := rr.ReadAtRow(context.Background(), p, hdr+5*bigRow+8192)
	if err != nil || n != len(p) {
		t.Fatalf("ReadAtRow: %d, %v", n, err)
	}
	if binary.LittleEndian.Uint16(p) != 5 || rowOff != hdr+5*bigRow || rowLen != bigRow {
		t.Errorf("ReadAtRow of a page of frame 5: pixel %d, handed [%d +%d)", binary.LittleEndian.Uint16(p), rowOff, rowLen)
	}
	if got := h.bytes.Load() - before; got != bigRow {
		t.Errorf("the page fault read %d bytes of the handler, want the row's %d", got, bigRow)
	}
	if _, rowOff, rowLen, _ = rr.ReadAtRow(context.Background(), p, hdr+5*bigRow+4096); rowLen != 0 {
		t.Errorf("a second page of frame 5 handed [%d +%d) again", rowOff, rowLen)
	}
	// np.load(mmap_mode='r')[0]: the header read (a page), then frame 0's first page fault,
	// right after it: handed over, not taken for the end of a read in order.
	fh2, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	rr2 := fh2.(*handle).h.(table.RowReader)
	if _, _, rowLen, err := rr2.ReadAtRow(context.Background(), p, 0); err != nil || rowLen != 0 {
		t.Fatalf("header: %v, handed %d bytes", err, rowLen)
	}
	if _, rowOff, rowLen, err := rr2.ReadAtRow(context.Background(), p, hdr); err != nil || rowOff != hdr || rowLen != bigRow {
		t.Errorf("frame 0's first page after the header: %v, handed [%d +%d), want frame 0", err, rowOff, rowLen)
	}
	if store != nil {
		var files []string
		filepath.WalkDir(filepath.Join(store.Dir(), "sparse"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if len(files) != 0 {
			t.Errorf("sparse cache files %v, want none", files)
		}
	}
}
