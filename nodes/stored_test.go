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

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"

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

// splicedFramesHandler keeps frame n's bytes in a file, in reverse order of the frames and not
// page-aligned, and serves ranges of them by splice(2) (handlers.RangeSplicer) or by pread
// (ReadRange), each counted.
type splicedFramesHandler struct {
	bigFramesHandler
	f                *os.File
	splices, ranges  atomic.Int64
	splicedB, rangeB atomic.Int64
}

// splicedAddr is where frame n lies in splicedFramesHandler's file.
func splicedAddr(n int) int64 { return 1000 + int64(bigFrames-1-n)*(bigRow+700) }

// splicedByte is byte i of frame n.
func splicedByte(n int, i int64) byte { return byte(i*31 + int64(n)*17 + i>>12) }

func newSplicedFramesHandler(t *testing.T) *splicedFramesHandler {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "frames"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	row := make([]byte, bigRow)
	for n := range bigFrames {
		for i := range row {
			row[i] = splicedByte(n, int64(i))
		}
		if _, err := f.WriteAt(row, splicedAddr(n)); err != nil {
			t.Fatal(err)
		}
	}
	return &splicedFramesHandler{bigFramesHandler: bigFramesHandler{reads: &atomic.Int64{}}, f: f}
}

func (h *splicedFramesHandler) check(kw map[string]any, off int64, n int, descr string, shape []int) (int, error) {
	if descr != "<u2" || fmt.Sprint(shape) != fmt.Sprint([]int{bigSide, bigSide}) {
		return 0, fmt.Errorf("%s %v: %w", descr, shape, handlers.ErrNotDirect)
	}
	if off < 0 || off+int64(n) > bigRow {
		return 0, fmt.Errorf("range [%d +%d) of a frame of %d", off, n, bigRow)
	}
	p, err := handlers.IntKwarg(kw, "point_number", -1)
	return int(p), err
}

func (h *splicedFramesHandler) ReadRange(_ context.Context, kw map[string]any, dst []byte, off int64, descr string, shape []int) error {
	p, err := h.check(kw, off, len(dst), descr, shape)
	if err != nil {
		return err
	}
	h.ranges.Add(1)
	h.rangeB.Add(int64(len(dst)))
	_, err = h.f.ReadAt(dst, splicedAddr(p)+off)
	return err
}

func (h *splicedFramesHandler) SpliceRange(_ context.Context, kw map[string]any, sink handlers.SpliceSink, off int64, n int, descr string, shape []int) error {
	p, err := h.check(kw, off, n, descr, shape)
	if err != nil {
		return err
	}
	h.splices.Add(1)
	for at := splicedAddr(p) + off; n > 0; {
		m, err := sink.LoadFromAt(h.f.Fd(), n, at)
		if err != nil {
			return err
		}
		if m <= 0 {
			return fmt.Errorf("splice at %d: %d bytes", at, m)
		}
		h.splicedB.Add(int64(m))
		n, at = n-m, at+int64(m)
	}
	return nil
}

func (h *splicedFramesHandler) Stored(context.Context, map[string]any, string, []int) bool {
	return true
}

// openSplicedField mounts bigFramesRun with its frames served by a splicedFramesHandler and
// opens the field's .npy.
func openSplicedField(t *testing.T) (*splicedFramesHandler, *file, gofs.FileHandle) {
	t.Helper()
	h := newSplicedFramesHandler(t)
	reg := handlers.NewRegistry()
	reg.Register("AD_HDF5", func(context.Context, string, map[string]any) (handlers.Handler, error) { return h, nil })
	cat, err := memory.New(bigFramesRun())
	if err != nil {
		t.Fatal(err)
	}
	tr := newTree(t, cat, func(c *Config) {
		c.Filler = handlers.NewFiller(handlers.FillerOptions{Registry: reg, Logger: c.Logger, Retry: 1})
		t.Cleanup(func() { c.Filler.Close() })
	})
	f := tr.mustLookup(bigUID + "/primary/cam.npy").(*file)
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	return h, f, fh
}

// TestStoredSplice: read(2) requests of a stored field past its header are served by splice
// (a pipe holding the bytes of the frames' file, from pieces of it that are not page-aligned
// and not end to end), with exactly the frames' bytes, including requests across frames and
// the last, short one; the header's request and page-sized ones are read by ReadRange.
func TestStoredSplice(t *testing.T) {
	h, f, fh := openSplicedField(t)
	const hdr = 4096
	size := int64(hdr + bigFrames*bigRow)
	read := func(off int64, n int) []byte {
		t.Helper()
		buf := make([]byte, n)
		res, errno := f.Read(context.Background(), fh, buf, off)
		if errno != 0 {
			t.Fatalf("read [%d +%d): %v", off, n, errno)
		}
		defer res.Done()
		b, st := res.Bytes(buf)
		if !st.Ok() || int64(len(b)) != min(int64(n), size-off) || len(b) != res.Size() {
			t.Fatalf("read [%d +%d): %d bytes (size %d), %v", off, n, len(b), res.Size(), st)
		}
		for i, c := range b {
			at := off + int64(i) - hdr
			if at < 0 {
				continue
			}
			if want := splicedByte(int(at/bigRow), at%bigRow); c != want {
				t.Fatalf("read [%d +%d): byte %d is %#x, want %#x (frame %d)", off, n, off+int64(i), c, want, at/bigRow)
			}
		}
		return b
	}
	// The header's request: read, not spliced.
	read(0, 992<<10)
	if h.splices.Load() != 0 || h.ranges.Load() == 0 {
		t.Errorf("the header's request: %d splices, %d ranges; want it read", h.splices.Load(), h.ranges.Load())
	}
	// The rest as np.load's read(2) sends it: 992 KiB requests, then odd ones across frames.
	h.ranges.Store(0)
	for off := int64(992 << 10); off < size; off += 992 << 10 {
		read(off, 992<<10)
	}
	for _, r := range [][2]int64{{hdr + bigRow - 5000, 300 << 10}, {hdr + 3*bigRow + 1, bigRow + 77}, {size - 8192, 992 << 10}} {
		read(r[0], int(r[1]))
	}
	if n := h.ranges.Load(); n != 0 {
		t.Errorf("%d ReadRange calls after the header, want none (all spliced)", n)
	}
	if n := h.splicedB.Load(); n != size-992<<10+300<<10+bigRow+77+8192 {
		t.Errorf("%d bytes spliced", n)
	}
	// A page fault: read, with its row handed over.
	before := h.splices.Load()
	read(hdr+5*bigRow+8192, 4096)
	if h.splices.Load() != before || h.ranges.Load() == 0 {
		t.Errorf("a page-sized read was spliced")
	}
}

// TestSpliceSlots: slotSink's count of pipe slots is the kernel's: the bytes of a request
// from four pieces of a file, none page-aligned, fill a pipe that a reply's header then joins
// in go-fuse's pipe of the same size (as fuse's trySplice does), whole; bytes that would not
// fit are refused before they are moved.
func TestSpliceSlots(t *testing.T) {
	h := newSplicedFramesHandler(t)
	const n = 248 << 12 // fs.maxRead with pipes of 1 MiB
	want := replyHeader + n + pageSize
	if pipeSlots(want)*pageSize > splice.MaxPipeSize() {
		t.Skipf("pipes of at most %d bytes", splice.MaxPipeSize())
	}
	pieces := [][2]int64{{100, 60<<12 + 1}, {bigRow*3 + 4095, 70 << 12}, {bigRow * 7, 50<<12 + 7}, {bigRow*2 + 9, 0}}
	pieces[3][1] = n - pieces[0][1] - pieces[1][1] - pieces[2][1]
	pair, err := splice.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer splice.Drop(pair)
	if err := pair.Grow(want); err != nil {
		t.Fatal(err)
	}
	sink := &slotSink{pair: pair, free: pipeSlots(want) - 1}
	var exp []byte
	for _, p := range pieces {
		for k := p[1]; k > 0; {
			m, err := sink.LoadFromAt(h.f.Fd(), int(k), p[0]+p[1]-k)
			if err != nil || m <= 0 {
				t.Fatalf("piece %v: %d, %v (free %d)", p, m, err, sink.free)
			}
			k -= int64(m)
		}
		b := make([]byte, p[1])
		h.f.ReadAt(b, p[0])
		exp = append(exp, b...)
	}
	if sink.free < 0 {
		t.Fatalf("free %d", sink.free)
	}
	reply, err := splice.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer splice.Drop(reply)
	if err := reply.Grow(want); err != nil {
		t.Fatal(err)
	}
	header := []byte("0123456789abcdef")
	if _, err := reply.Write(header); err != nil {
		t.Fatal(err)
	}
	if m, err := reply.LoadFrom(pair.ReadFd(), n); err != nil || m != n {
		t.Fatalf("reply pipe took %d bytes of %d: %v", m, n, err)
	}
	got := make([]byte, replyHeader+n+1)
	m, _ := reply.Read(got)
	if string(got[:m]) != string(header)+string(exp) {
		t.Errorf("the reply pipe holds %d bytes, not the header and the pieces' %d", m, replyHeader+n)
	}
	// A piece that would take more slots than are left is refused, and nothing moved.
	sink = &slotSink{pair: pair, free: 3}
	if m, err := sink.LoadFromAt(h.f.Fd(), 3<<12, 5); err == nil || m != 0 {
		t.Errorf("3 pages at offset 5 (4 slots) into 3 free: %d, %v", m, err)
	}
	if m, err := sink.LoadFromAt(h.f.Fd(), 3<<12, 8192); err != nil || m != 3<<12 || sink.free != 0 {
		t.Errorf("3 aligned pages into 3 free slots: %d, %v, %d left", m, err, sink.free)
	}
}

// TestSpliceRefusedUpFront: a request whose rows could not all fit the reply's pipe (a piece
// of a file per row, a slot more each when not page-aligned) is refused before any row is
// moved, instead of failing after most of them and being read again whole; one that fits is
// spliced.
func TestSpliceRefusedUpFront(t *testing.T) {
	h, _, fh := openSplicedField(t)
	sp, ok := fh.(*handle).h.(table.Splicer)
	if !ok {
		t.Fatalf("the handle is a %T, not a table.Splicer", fh.(*handle).h)
	}
	// The tail of row 1 and the head of row 2: two pieces of the frames' file, not
	// page-aligned. spans is how many slots a piece takes in fact.
	const hdr, k1, k2 = 4096, 8092, 20000
	spans := func(at, k int64) int { return int((at+k-1)/4096 - at/4096 + 1) }
	need := spans(splicedAddr(1)+bigRow-k1, k1) + spans(splicedAddr(2), k2)
	pair, err := splice.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer splice.Drop(pair)
	if err := pair.Grow(64 << 12); err != nil {
		t.Fatal(err)
	}
	// One slot fewer than the pieces take: refused before row 1's piece is moved.
	sink := &slotSink{pair: pair, free: need - 1}
	if err := sp.SpliceAt(context.Background(), sink, hdr+2*bigRow-k1, k1+k2); err == nil {
		t.Fatal("the request spliced into a pipe without room for it")
	}
	if n := h.splices.Load(); n != 0 || sink.free != need-1 {
		t.Errorf("the refused request moved %d rows (%d of %d slots left)", n, sink.free, need-1)
	}
	// With room for the pieces however they lie (a slot more each), both rows are spliced.
	sink.free = (k1+4095)/4096 + 1 + (k2+4095)/4096 + 1
	if err := sp.SpliceAt(context.Background(), sink, hdr+2*bigRow-k1, k1+k2); err != nil {
		t.Fatalf("the request into a pipe with room for it: %v", err)
	}
	if n := h.splices.Load(); n != 2 {
		t.Errorf("%d rows spliced, want 2", n)
	}
}
