package nodes

import (
	"context"
	"errors"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// content is what a file serves: its exact size and random-access reads.
type content interface {
	Size(ctx context.Context) (int64, error)
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// bytesContent is a small file held in memory (JSON documents).
type bytesContent []byte

func (b bytesContent) Size(context.Context) (int64, error) { return int64(len(b)), nil }

func (b bytesContent) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

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

func (f *file) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r, c, err := f.current(ctx)
	if h, ok := fh.(*handle); ok {
		c, err = h.c, nil // an open file keeps the size it was opened with
	}
	if err != nil {
		return f.st.toErrno("getattr", f.path, err)
	}
	size, err := c.Size(ctx)
	if err != nil {
		return f.st.toErrno("getattr", f.path, err)
	}
	fillFile(&out.Attr, r, size)
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
type handle struct{ c content }

func (f *file) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	r, c, err := f.current(ctx)
	if err != nil {
		return nil, 0, f.st.toErrno("open", f.path, err)
	}
	var fl uint32
	if !r.live() {
		fl = fuse.FOPEN_KEEP_CACHE // a finished run never changes
	}
	return &handle{c: c}, fl, 0
}

func (f *file) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*handle)
	if !ok {
		_, c, err := f.current(ctx)
		if err != nil {
			return nil, f.st.toErrno("read", f.path, err)
		}
		h = &handle{c: c}
	}
	n, err := h.c.ReadAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.st.toErrno("read", f.path, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}
