package nodes

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/memory"
	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/table"
)

// The bench's detector frames: 512×512 uint16, 512 KiB a row.
const (
	bigSide   = 512
	bigRow    = bigSide * bigSide * 2
	bigFrames = 24
	bigUID    = "d1000000-0000-4000-8000-000000000005"
)

// bigFramesHandler serves datum point_number n as a bigSide×bigSide uint16 frame whose
// pixels are all n; it counts its reads.
type bigFramesHandler struct{ reads *atomic.Int64 }

func (h *bigFramesHandler) Describe(context.Context, map[string]any) (string, []int, error) {
	return "<u2", []int{bigSide, bigSide}, nil
}

func (h *bigFramesHandler) Read(_ context.Context, kw map[string]any) (*catalog.NDArray, error) {
	h.reads.Add(1)
	n, _ := handlers.IntKwarg(kw, "point_number", -1)
	a := &catalog.NDArray{Dtype: "<u2", Shape: []int{bigSide, bigSide}, Data: make([]byte, bigRow)}
	for i := 0; i < bigRow; i += 2 {
		binary.LittleEndian.PutUint16(a.Data[i:], uint16(n))
	}
	return a, nil
}

func (h *bigFramesHandler) Files([]map[string]any) ([]string, error) {
	return []string{"/d/big.h5"}, nil
}
func (h *bigFramesHandler) Close() error { return nil }

// bigFramesRun is a run of bigFrames events whose field cam is one AD_HDF5 datum each.
func bigFramesRun() []catalog.Document {
	type m = map[string]any
	t0 := 1700004000.0
	res := bigUID + "-res"
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": bigUID, "time": t0, "scan_id": int64(7), "plan_name": "count"}},
		{Name: "descriptor", Doc: m{"uid": bigUID + "-d1", "run_start": bigUID, "time": t0 + 0.1, "name": "primary",
			"data_keys": m{"cam": m{"dtype": "array", "shape": []any{int64(bigSide), int64(bigSide)},
				"source": "PV:cam", "external": "FILESYSTEM:"}}}},
		{Name: "resource", Doc: m{"uid": res, "spec": "AD_HDF5", "root": "/d", "resource_path": "big.h5",
			"resource_kwargs": m{"frame_per_point": int64(1)}, "path_semantics": "posix", "run_start": bigUID}},
	}
	for i := 0; i < bigFrames; i++ {
		docs = append(docs, catalog.Document{Name: "datum", Doc: m{"resource": res, "datum_id": fmt.Sprintf("%s/%d", res, i),
			"datum_kwargs": m{"point_number": int64(i)}}})
	}
	for i := 0; i < bigFrames; i++ {
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"uid": fmt.Sprintf("%s-e%d", bigUID, i),
			"descriptor": bigUID + "-d1", "time": t0 + 1 + float64(i), "seq_num": int64(i + 1),
			"data": m{"cam": fmt.Sprintf("%s/%d", res, i)}, "timestamps": m{"cam": t0 + 1 + float64(i)},
			"filled": m{"cam": false}}})
	}
	return append(docs, catalog.Document{Name: "stop", Doc: m{"uid": bigUID + "-stop", "run_start": bigUID,
		"time": t0 + 100, "exit_status": "success"}})
}

// bigFramesFile looks up the run's cam.npy; stats counts the table layer's work.
func bigFramesFile(t *testing.T) (*file, *atomic.Int64, *table.Stats) {
	t.Helper()
	if withoutCache {
		t.Skip("fill ahead needs the cache")
	}
	reads := &atomic.Int64{}
	reg := handlers.NewRegistry()
	reg.Register("AD_HDF5", func(context.Context, string, map[string]any) (handlers.Handler, error) {
		return &bigFramesHandler{reads: reads}, nil
	})
	cat, err := memory.New(bigFramesRun())
	if err != nil {
		t.Fatal(err)
	}
	stats := &table.Stats{}
	tr := newTree(t, cat, func(c *Config) {
		c.Filler = handlers.NewFiller(handlers.FillerOptions{Registry: reg, Logger: c.Logger, Retry: 1})
		t.Cleanup(func() { c.Filler.Close() })
		c.TableStats = stats
	})
	return tr.mustLookup(bigUID + "/primary/cam.npy").(*file), reads, stats
}

// readRange reads [off, off+n) of f through fh in requests of step bytes, as the kernel
// sends them, and checks the bytes of each row against the row's number.
func readRange(t *testing.T, f *file, fh gofs.FileHandle, off, n, step int64) {
	t.Helper()
	const hdr = 4096 // the .npy header of a lazily filled field has a page of its own
	for o := off; o < off+n; o += step {
		buf := make([]byte, min(step, off+n-o))
		res, errno := f.Read(context.Background(), fh, buf, o)
		if errno != 0 {
			t.Fatalf("read [%d +%d): %v", o, len(buf), errno)
		}
		b, _ := res.Bytes(buf)
		if len(b) != len(buf) {
			t.Fatalf("read [%d +%d): %d bytes", o, len(buf), len(b))
		}
		for i := 0; i < len(b); i += 4096 {
			at := o + int64(i)
			if at < hdr {
				continue
			}
			if got, want := binary.LittleEndian.Uint16(b[i&^1:]), uint16((at-hdr)/bigRow); got != want {
				t.Fatalf("byte %d: pixel %d, want row %d", at, got, want)
			}
		}
	}
}

// TestOneFrameFillsOne: reading one frame the way numpy's np.load(mmap_mode='r')[k] does
// through the kernel (the header by a buffered read of st_blksize bytes, then the frame's
// pages) has the handler read that frame alone; with the kernel's 128 KiB readahead around and
// after the frame (a mount whose readahead brokerfs cannot set), the frames those reads reach
// into and nothing more: no fill ahead.
func TestOneFrameFillsOne(t *testing.T) {
	f, reads, stats := bigFramesFile(t)
	var attr fuse.AttrOut
	if errno := f.Getattr(context.Background(), nil, &attr); errno != 0 {
		t.Fatal(errno)
	}
	blk := int64(attr.Attr.Blksize)
	if blk != 4096 {
		t.Errorf("st_blksize %d, want a page: Python reads st_blksize bytes for the header", blk)
	}
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	const hdr, k = 4096, 11
	frame := int64(hdr + k*bigRow)
	// The header: one page (readahead one page, st_blksize a page).
	readRange(t, f, fh, 0, blk, blk)
	if n := reads.Load(); n != 0 {
		t.Errorf("reading the header made %d handler reads, want 0", n)
	}
	// Frame k, page by page: the page faults of copying it out of the mapping.
	readRange(t, f, fh, frame, bigRow, 4096)
	if n := reads.Load(); n != 1 {
		t.Errorf("reading frame %d page by page made %d handler reads, want 1", k, n)
	}

	// Another frame as a 128 KiB readahead reads it: 64 KiB around the first page's fault,
	// then windows of 128 KiB until 192 KiB past its end. Frames k-1, k and k+1 are touched.
	fh2, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	const k2 = 5
	frame2 := int64(hdr + k2*bigRow)
	readRange(t, f, fh2, frame2-64<<10, 64<<10+bigRow+192<<10, 128<<10)
	if n := reads.Load(); n != 1+3 {
		t.Errorf("reading frame %d with readahead around it made %d handler reads in all, want 4", k2, n)
	}
	if n := stats.FillsAhead.Load(); n != 0 {
		t.Errorf("one-frame reads started %d fills ahead, want 0", n)
	}
}

// TestSequentialFillsAhead: a reader going through the field in order (np.load, cp) has rows
// filled ahead of it, each once, with the right bytes.
func TestSequentialFillsAhead(t *testing.T) {
	f, reads, stats := bigFramesFile(t)
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	// Out of order in pairs, as the kernel's readahead requests may be served.
	const step = 128 << 10
	size := int64(4096 + bigFrames*bigRow)
	for o := int64(0); o < size; o += 2 * step {
		if o+step < size {
			readRange(t, f, fh, o+step, min(step, size-o-step), step)
		}
		readRange(t, f, fh, o, min(step, size-o), step)
	}
	if n := stats.FillsAhead.Load(); n == 0 {
		t.Errorf("a sequential read of %d frames started no fill ahead", bigFrames)
	}
	// Fills ahead still running are waited for by the reads of their rows: every row was
	// read, each by one handler read.
	if n := reads.Load(); n != bigFrames {
		t.Errorf("a whole read made %d handler reads, want %d", n, bigFrames)
	}
}

// TestPageReadHandsRow: the read of one page of a frame (a page fault of a mapped frame, with
// the mount's readahead of a page) hands the whole row over for the page cache, once per row;
// larger reads hand nothing. A reader faulting in the rows in order, one page each (the rest
// handed over), has rows filled ahead of it.
func TestPageReadHandsRow(t *testing.T) {
	f, reads, stats := bigFramesFile(t)
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	rr, ok := fh.(*handle).h.(table.RowReader)
	if !ok {
		t.Fatalf("the handle of a lazily filled field is a %T, not a table.RowReader", fh.(*handle).h)
	}
	const hdr = 4096
	for _, c := range []struct {
		off, n  int64
		wantRow int64 // -1: none
	}{
		{0, 4096, -1},                       // the header
		{hdr + 3*bigRow + 8192, 4096, 3},    // a page inside frame 3
		{hdr + 3*bigRow + 4096, 4096, -1},   // the same row again
		{hdr + 5*bigRow, 4096, 5},           // frame 5's first page
		{hdr + 6*bigRow, 8192, -1},          // more than a page
		{hdr + 7*bigRow - 4096, 8192, -1},   // across two rows
		{hdr + 9*bigRow + bigRow/2, 100, 9}, // less than a page
	} {
		n, rowOff, rowLen, err := rr.ReadAtRow(context.Background(), make([]byte, c.n), c.off)
		if err != nil || int64(n) != c.n {
			t.Fatalf("ReadAtRow(%d +%d): %d bytes, %v", c.off, c.n, n, err)
		}
		wantOff, wantLen := int64(0), int64(0)
		if c.wantRow >= 0 {
			wantOff, wantLen = hdr+c.wantRow*bigRow, bigRow
		}
		if rowOff != wantOff || rowLen != wantLen {
			t.Errorf("ReadAtRow(%d +%d) handed [%d +%d), want [%d +%d)", c.off, c.n, rowOff, rowLen, wantOff, wantLen)
		}
	}
	if n := stats.FillsAhead.Load(); n != 0 {
		t.Errorf("reads of scattered rows started %d fills ahead, want 0", n)
	}

	// Rows 12, 13, ... one page each through a new open: sequential.
	fh2, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	for r := int64(12); r < 16; r++ {
		readRange(t, f, fh2, hdr+r*bigRow, 4096, 4096)
	}
	if n := stats.FillsAhead.Load(); n == 0 {
		t.Errorf("faulting in rows 12-15 in order started no fill ahead (%d handler reads)", reads.Load())
	}
}
