package nodes

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"

	"github.com/brokerfs/brokerfs/table"
)

// content is what a file serves: a table.File (exact size, opened per open).
type content = table.File

// resolver finds a file's content in the current state of its run. Files resolve on every
// Getattr and Open, not at Lookup, because go-fuse keeps the first node made for an inode
// number: a live run's files must follow the run as it grows.
type resolver func(ctx context.Context, r *runState) (content, error)

// file is any regular file of a run: documents, .npy and .csv.
type file struct {
	gofs.Inode
	st      *state
	uid     string
	path    string // relative to the mount root, for logs
	resolve resolver

	mu       sync.Mutex
	opened   *runState // the run state of the last open; guarded by mu
	openedAs content   // the content of the last open; guarded by mu
	// The kernel serves all open files of an inode alike: through passthrough or through
	// this process, never both at once (an open of the other kind fails with EIO). The
	// first open decides for as long as any stays open. A lazily filled field that is
	// complete by its second open is the case: opens of it follow the first one's mode.
	opens       int  // guarded by mu
	passthrough bool // guarded by mu; the mode of the open files
}

var (
	_ gofs.NodeGetattrer = (*file)(nil)
	_ gofs.NodeOpener    = (*file)(nil)
	_ gofs.NodeReader    = (*file)(nil)
)

// staleTries bounds how often a file is resolved and opened again when the cache entries it
// reads went away meanwhile (table.ErrStale). Under a --cache-max smaller than what readers
// work on, entries of one stream are evicted by the builds of others while a CSV file is
// formatted from them, and that can happen more than once in a row.
const staleTries = 4

// current resolves the file's content in the current state of its run.
func (f *file) current(ctx context.Context) (*runState, content, error) {
	for try := 1; ; try++ {
		r, c, err := f.resolveOnce(ctx)
		if err == nil || !errors.Is(err, table.ErrStale) || try >= staleTries {
			return r, c, err
		}
	}
}

func (f *file) resolveOnce(ctx context.Context) (*runState, content, error) {
	r, err := f.st.run(ctx, f.uid)
	if err != nil {
		return nil, nil, err
	}
	c, err := f.resolve(ctx, r)
	return r, c, err
}

func (f *file) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer f.st.observe("getattr", time.Now(), &errno)
	r, c, err := f.current(ctx)
	if err != nil {
		return f.st.toErrno("getattr", f.path, err)
	}
	// fstat(2) reaches FUSE without the file handle, and go-fuse then passes the inode's
	// first open file in its place (rawBridge.GetAttr), which may be an older open whose
	// RELEASE is still on its way (close(2) sends it asynchronously). So while a live file
	// is open, its size is that of the last open's snapshot, which is what the latest
	// opener's reads return, whatever fh says; otherwise an open file keeps the size it
	// was opened with.
	f.mu.Lock()
	latest := r.live() && f.opens > 0 && f.openedAs != nil && f.opened.live()
	if latest {
		r, c = f.opened, f.openedAs
	}
	f.mu.Unlock()
	if h, ok := fh.(*handle); ok && !latest {
		c = h.c
	}
	fillFile(&out.Attr, r, c)
	out.SetTimeout(f.st.fileAttrTTL(r))
	return 0
}

// fileAttrTTL is how long the kernel may keep a file's attributes. A live run's files keep
// none: the kernel then asks before each read past what it knows and before each stat, and
// the answer is the size of the open file's own snapshot, so that a whole-file read of a
// growing run sees the size its header states.
func (st *state) fileAttrTTL(r *runState) time.Duration {
	if r.live() {
		// Not 0: go-fuse reads a zero timeout as unset and puts its default (a second) in
		// its place, so fstat answered sizes up to a second old. A nanosecond is the
		// kernel's smallest: the attributes last until the next clock tick.
		return time.Nanosecond
	}
	return st.cfg.FinishedTTL
}

// fillFile sets a file's attributes; 0644 for the reason fillDir gives.
func fillFile(a *fuse.Attr, r *runState, c content) {
	a.Mode = modeFile | 0o644
	a.Nlink = 1
	a.Size = uint64(c.Size())
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = uint32(table.BlockSize(c))
	setTime(a, runTime(r))
}

// runTime is the modification time of a run's files: its stop time once finished, else its
// start time.
func runTime(r *runState) float64 {
	if r.stop != nil {
		return r.stop.Time
	}
	return r.start.Time
}

// handle is an open file: the content it was opened with, so that a live run growing under a
// reader does not change the bytes of one open.
type handle struct {
	f *file
	c content
	h table.Handle
	// backing is the file whose bytes are exactly this file's (a cache file), read by the
	// kernel directly through FUSE passthrough where it can, else by pread.
	backing *os.File
	// passthroughOff: other opens of the inode are served by this process, so this one is too.
	passthroughOff bool
	// storeRows: rows of a lazily filled field, or blocks of another file, are handed whole to
	// the page cache on a page fault (not for a live run's files, which bypass it).
	storeRows bool
	handed    atomic.Int64 // 1 + the offset of the last block handed over, or 0
}

var (
	_ gofs.FilePassthroughFder = (*handle)(nil)
	_ gofs.FileReleaser        = (*handle)(nil)
)

// PassthroughFd hands the kernel the cache file, so reads bypass this process (Linux >= 6.9,
// CAP_SYS_ADMIN; go-fuse stops asking after the kernel refuses once).
func (h *handle) PassthroughFd() (int, bool) {
	if h.backing == nil || h.passthroughOff {
		return 0, false
	}
	return int(h.backing.Fd()), true
}

func (h *handle) Release(context.Context) syscall.Errno {
	h.h.Close()
	h.f.mu.Lock()
	h.f.opens--
	h.f.mu.Unlock()
	return 0
}

func (f *file) Open(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer f.st.observe("open", time.Now(), &errno)
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	r, c, th, err := f.open(ctx)
	if err != nil {
		return nil, 0, f.st.toErrno("open", f.path, err)
	}
	h := &handle{f: f, c: c, h: th, backing: th.Backing()}
	// A finished run never changes: the kernel keeps the pages it read. Once the run was read
	// again (its file changed), the first open drops them: an open without KEEP_CACHE makes the
	// kernel invalidate the inode's cached pages.
	f.mu.Lock()
	same := f.opened == nil || f.opened == r
	f.opened, f.openedAs = r, c
	if f.opens == 0 {
		f.passthrough = h.backing != nil
	} else if !f.passthrough {
		h.passthroughOff = true
	}
	f.opens++
	f.mu.Unlock()
	var fl uint32
	switch {
	case r.live():
		// A live run's file is one snapshot per open: its header states the rows of that
		// moment. Reads bypass the page cache and the kernel's idea of the size (a stat
		// from before the open), so a whole-file read returns exactly the snapshot.
		// (fs asks the kernel to map such files too: CAP_DIRECT_IO_ALLOW_MMAP.)
		fl = fuse.FOPEN_DIRECT_IO
		h.passthroughOff = true
		// The kernel may still hold the attributes of the LOOKUP that came just before this
		// open (a nanosecond's TTL lasts to the next clock tick), with the size of an older
		// snapshot; fstat(2) would answer from them. Dropping them here, before the reply,
		// makes the next stat ask Getattr, which answers with this open's snapshot. Only the
		// attributes: a negative offset leaves the page cache alone and takes no lock the
		// pending OPEN holds.
		if errno := f.NotifyContent(-1, 0); errno != 0 && errno != syscall.ENOSYS && errno != syscall.ENOENT {
			f.st.log.Debug("invalidate live file attributes", "path", f.path, "err", errno)
		}
	case same:
		fl = fuse.FOPEN_KEEP_CACHE
	}
	if !r.live() && h.backing == nil && table.Lazy(c) {
		// A lazily filled field not yet complete: read(2) goes straight to this process in
		// requests of up to about 1 MiB (fs's maxRead, 992 KiB) instead of through the inode's
		// page cache in 128 KiB ones (the kernel's io_pages for FUSE, whatever the readahead):
		// a quarter of the requests and one copy less for a whole-field read, which this
		// process serves from the sparse cache file anyway. mmap still goes through the page cache
		// (CAP_DIRECT_IO_ALLOW_MMAP), where page faults hand over whole rows (storeRow).
		fl |= fuse.FOPEN_DIRECT_IO
	}
	h.storeRows = !r.live()
	return h, fl, 0
}

// open resolves and opens the file's content. A table whose cache entry went away meanwhile
// (evicted, damaged), while it was resolved or opened, is rebuilt: the next try opens the new
// one; staleTries in all.
func (f *file) open(ctx context.Context) (*runState, content, table.Handle, error) {
	for try := 1; ; try++ {
		r, c, err := f.resolveOnce(ctx)
		var th table.Handle
		if err == nil {
			th, err = c.Open(ctx)
		}
		if err == nil {
			return r, c, th, nil
		}
		if !errors.Is(err, table.ErrStale) || try >= staleTries {
			return nil, nil, nil, err
		}
	}
}

func (f *file) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	defer f.st.observe("read", time.Now(), &errno)
	h, ok := fh.(*handle)
	if !ok {
		_, c, th, err := f.open(ctx)
		if err != nil {
			return nil, f.st.toErrno("read", f.path, err)
		}
		defer th.Close()
		h = &handle{c: c, h: th}
	}
	if b := h.backing; b != nil {
		size := h.c.Size()
		if off >= size {
			return fuse.ReadResultData(nil), 0
		}
		n := min(int64(len(dest)), size-off)
		return fuse.ReadResultFd(b.Fd(), off, int(n)), 0
	}
	if h.storeRows && len(dest) > pageSize {
		if sp, ok := table.SplicerOf(ctx, h.h); ok {
			if rr, ok := spliceRead(ctx, sp, h.c.Size(), off, len(dest)); ok {
				return rr, 0
			}
		}
	}
	rr, rows := h.h.(table.RowReader)
	if !rows || !h.storeRows {
		n, err := h.h.ReadAt(ctx, dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, f.st.toErrno("read", f.path, err)
		}
		if h.storeRows && n > 0 && len(dest) <= pageSize && !table.Lazy(h.c) {
			// A page fault (the mount's readahead is a page): the block around it goes to
			// the page cache, as the kernel's own readahead would have read it.
			block := off &^ (storeBlock - 1)
			if h.handed.Swap(block+1) != block+1 {
				f.handOver(h.c, block, min(storeBlock, h.c.Size()-block), off, off+int64(len(dest)))
			}
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	n, rowOff, rowLen, err := rr.ReadAtRow(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.st.toErrno("read", f.path, err)
	}
	if rowLen > 0 {
		f.handOver(h.c, rowOff, rowLen, off, off+int64(len(dest)))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// spliceRead serves a read of a stored external field by splice(2): the bytes go from the
// source file's page cache into a pipe, and from it into the reply (go-fuse splices a pipe
// result into /dev/fuse), never through this process's memory: the one copy left is the
// kernel's, into the reader's buffer, as a read(2) of the source file would make. A read(2)
// of a FOPEN_DIRECT_IO file sends its requests one after the other, so each request's copy
// out of the page cache was time the reader waited for. ok is false when the read is not
// served so (the header, a page fault, a pipe too small, any failure): the caller reads it
// the ordinary way, which reports errors.
func spliceRead(ctx context.Context, sp table.Splicer, size, off int64, n int) (_ fuse.ReadResult, ok bool) {
	if off >= size {
		return nil, false
	}
	n = int(min(int64(n), size-off))
	// go-fuse's pipe for the reply holds the reply's header and then these bytes: it grows to
	// header + bytes + a page (splice.Pair.Grow, within pipe-max-size), and the kernel rounds a
	// pipe's size up to a power of two pages. The bytes take a pipe slot per page they span in
	// each piece of a file they come from (a piece not page-aligned spans one more).
	want := replyHeader + n + pageSize
	if !splice.Resizable() || pipeSlots(want)*pageSize > splice.MaxPipeSize() {
		return nil, false
	}
	pair, err := splice.Get()
	if err != nil {
		return nil, false
	}
	if err := pair.Grow(want); err != nil {
		splice.Done(pair)
		return nil, false
	}
	sink := &slotSink{pair: pair, free: pipeSlots(want) - 1}
	if err := sp.SpliceAt(ctx, sink, off, n); err != nil {
		// Part of the bytes may be in the pipe, and a call abandoned at its deadline may still
		// write to it: it is closed, never handed to another read.
		splice.Drop(pair)
		return nil, false
	}
	return fuse.ReadResultPipe(pair, n), true
}

// replyHeader is the size of a FUSE reply's header (fuse_out_header).
const replyHeader = 16

// pipeSlots is how many pages a pipe grown to want bytes holds: the kernel rounds a pipe's
// size up to a power of two pages.
func pipeSlots(want int) int {
	s := 1
	for s*pageSize < want {
		s *= 2
	}
	return s
}

// slotSink is the pipe of a spliced read, which refuses bytes that would not fit in the
// reply's pipe: free is how many slots (pages) are left for them there, the header's taken.
type slotSink struct {
	pair *splice.Pair
	free int
}

func (s *slotSink) LoadFromAt(fd uintptr, sz int, off int64) (int, error) {
	// The pages [off, off+n) spans, a slot each, however few bytes of one the pipe takes.
	slots := func(n int) int { return int((off+int64(n)-1)/pageSize - off/pageSize + 1) }
	if sz <= 0 || off < 0 || slots(sz) > s.free {
		return 0, errSpliceFull
	}
	m, err := s.pair.LoadFromAt(fd, sz, off)
	if m > 0 {
		s.free -= slots(m)
	}
	return m, err
}

// Slots implements handlers.SpliceRoom.
func (s *slotSink) Slots() int { return s.free }

var errSpliceFull = errors.New("spliced read does not fit the reply's pipe")

// handOver starts storeRow, unless enough are under way (then the range is faulted in page by
// page). It runs after the reply: the kernel holds the pages of the request locked until then.
func (f *file) handOver(c content, rowOff, rowLen, reqOff, reqEnd int64) {
	select {
	case storeSlots <- struct{}{}:
		go func() {
			defer func() { <-storeSlots }()
			f.storeRow(c, rowOff, rowLen, reqOff, reqEnd)
		}()
	default:
	}
}

const (
	// storeChunk is how much of a row storeRow reads and hands over at a time.
	storeChunk = 1 << 20
	// storeBlock is what a page fault of a file served by brokerfs, other than a lazily
	// filled field, hands over: the kernel's readahead window where brokerfs cannot set it.
	storeBlock = 128 << 10
	pageSize   = 4096
)

// storeSlots bounds the rows being handed over at once (and their buffers).
var storeSlots = make(chan struct{}, 4)

// storeRow hands the row at [rowOff, rowOff+rowLen) of an open lazily filled field (or a
// block of another file) to the kernel's page cache (NOTIFY_STORE), all but the pages of the
// request [reqOff, reqEnd) that read it: a reader faulting a mapped frame in page by page (the
// mount's readahead is a page) then finds the rest there, and the frame costs one request,
// not one a page. Failures only cost those requests; on a mount without a kernel (tests)
// there is nothing to store. The row is filled: reading it back is a pread of the cache file.
func (f *file) storeRow(c content, rowOff, rowLen, reqOff, reqEnd int64) {
	reqOff, reqEnd = reqOff&^(pageSize-1), (reqEnd+pageSize-1)&^(pageSize-1)
	// An open of its own: the reader's open counts what it reads to tell a sequential reader.
	th, err := c.Open(context.Background())
	if err != nil {
		return
	}
	defer th.Close()
	buf := make([]byte, min(rowLen, storeChunk))
	store := func(from, to int64) bool {
		for o := from; o < to; o += storeChunk {
			b := buf[:min(storeChunk, to-o)]
			n, err := th.ReadAt(context.Background(), b, o)
			if n == 0 || (err != nil && !errors.Is(err, io.EOF)) {
				return false
			}
			// Under f.mu, and only while c is what the file was last opened with: an open of
			// a newer content (the run's file changed) makes the kernel drop the inode's pages
			// after its reply, and these bytes must not land after that drop. Holding f.mu
			// keeps such an open waiting until this store is done; it then drops them.
			f.mu.Lock()
			errno := syscall.ESTALE
			if f.openedAs == c {
				errno = f.WriteCache(o, b[:n])
			}
			f.mu.Unlock()
			if errno != 0 {
				return false
			}
		}
		return true
	}
	end := rowOff + rowLen
	if store(rowOff, min(reqOff, end)) {
		store(max(reqEnd, rowOff), end)
	}
}
