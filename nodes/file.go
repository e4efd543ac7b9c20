package nodes

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/table"
)

// content is what a file serves: a table.File (exact size, opened per open).
type content = table.File

// bytesContent is a small file held in memory (JSON documents, files.txt).
type bytesContent []byte

func (b bytesContent) Size() int64 { return int64(len(b)) }

func (b bytesContent) Open(context.Context) (table.Handle, error) { return bytesHandle(b), nil }

type bytesHandle []byte

func (b bytesHandle) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (bytesHandle) Backing() *os.File { return nil }
func (bytesHandle) Close() error      { return nil }

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

	mu     sync.Mutex
	opened *runState // the run state of the last open; guarded by mu
}

var (
	_ gofs.NodeGetattrer = (*file)(nil)
	_ gofs.NodeOpener    = (*file)(nil)
	_ gofs.NodeReader    = (*file)(nil)
)

func (f *file) current(ctx context.Context) (*runState, content, error) {
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
	if h, ok := fh.(*handle); ok && err == nil {
		c = h.c // an open file keeps the size it was opened with
	}
	if err != nil {
		return f.st.toErrno("getattr", f.path, err)
	}
	fillFile(&out.Attr, r, c.Size())
	out.SetTimeout(f.st.ttl(r))
	return 0
}

func fillFile(a *fuse.Attr, r *runState, size int64) {
	a.Mode = modeFile | 0o444
	a.Nlink = 1
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 1 << 20
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
	c content
	h table.Handle
	// backing is the file whose bytes are exactly this file's (a cache file), read by the
	// kernel directly through FUSE passthrough where it can, else by pread.
	backing *os.File
}

var (
	_ gofs.FilePassthroughFder = (*handle)(nil)
	_ gofs.FileReleaser        = (*handle)(nil)
)

// PassthroughFd hands the kernel the cache file, so reads bypass this process (Linux >= 6.9,
// CAP_SYS_ADMIN; go-fuse stops asking after the kernel refuses once).
func (h *handle) PassthroughFd() (int, bool) {
	if h.backing == nil {
		return 0, false
	}
	return int(h.backing.Fd()), true
}

func (h *handle) Release(context.Context) syscall.Errno {
	h.h.Close()
	return 0
}

func (f *file) Open(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer f.st.observe("open", time.Now(), &errno)
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	r, c, err := f.current(ctx)
	if err != nil {
		return nil, 0, f.st.toErrno("open", f.path, err)
	}
	th, err := c.Open(ctx)
	if err != nil {
		return nil, 0, f.st.toErrno("open", f.path, err)
	}
	h := &handle{c: c, h: th, backing: th.Backing()}
	// A finished run never changes: the kernel keeps the pages it read. Once the run was read
	// again (its file changed), the first open drops them: an open without KEEP_CACHE makes the
	// kernel invalidate the inode's cached pages.
	f.mu.Lock()
	same := f.opened == nil || f.opened == r
	f.opened = r
	f.mu.Unlock()
	var fl uint32
	if !r.live() && same {
		fl = fuse.FOPEN_KEEP_CACHE
	}
	return h, fl, 0
}

func (f *file) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	defer f.st.observe("read", time.Now(), &errno)
	h, ok := fh.(*handle)
	if !ok {
		_, c, err := f.current(ctx)
		if err != nil {
			return nil, f.st.toErrno("read", f.path, err)
		}
		th, err := c.Open(ctx)
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
	n, err := h.h.ReadAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.st.toErrno("read", f.path, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}
