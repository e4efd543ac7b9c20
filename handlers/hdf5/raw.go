package hdf5

/*
#cgo pkg-config: hdf5
#include "guard.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/brokerfs/brokerfs/handlers"
)

// Stored reads: a dataset whose bytes are stored as they are (chunked without filters, or
// contiguous), little-endian or of 1-byte elements, holds its frames in the file exactly as
// numpy wants them. A read of whole frames then needs no libhdf5 call per frame beyond
// looking up a chunk's address (H5Dget_chunk_info_by_coord, once per chunk): the bytes are
// read by pread on a descriptor of the file of its own, outside libhdf5's global lock,
// straight into the caller's buffer, at the address libhdf5 gives.
//
// The file is untrusted: every address and size is checked against the file's size as it was
// when opened, a short read is an error, and a file changed since it was opened (size, mtime
// or inode of the descriptor) fails the read (ErrChanged) rather than return bytes libhdf5's
// cached metadata no longer describes. Anything else (filters, fill values of chunks never
// written, big-endian data, partial frames, SWMR files, files with a user block, a driver
// other than sec2) goes through H5Dread_chunk or H5Dread as before.

// ErrChanged means a file changed after a handler opened it: its cached layout may no longer
// describe it. It is handlers.ErrChanged, on which the Filler drops the handler.
var ErrChanged = handlers.ErrChanged

// ErrTruncated means a file's layout places data past the file's end.
var ErrTruncated = errors.New("data past the end of the file")

// rawFile is the handler's own descriptor of an HDF5 file and what the file was at the open.
type rawFile struct {
	f     *os.File
	dev   uint64
	ino   uint64
	size  int64
	mtime unix.Timespec
}

// openRaw dups libhdf5's descriptor of f (the very file the Guard checked and libhdf5
// opened), or returns nil when stored reads cannot be used. Call it inside call.
func openRaw(f *file) *rawFile {
	var ub C.ulonglong
	if C.bfs_userblock(C.hid_t(f.f.ID()), &ub) < 0 {
		C.H5Eclear2(C.H5E_DEFAULT)
		return nil
	}
	if ub != 0 {
		return nil
	}
	fd := int(C.bfs_vfd_fd(C.hid_t(f.f.ID())))
	if fd < 0 {
		C.H5Eclear2(C.H5E_DEFAULT)
		return nil
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(nfd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < 0 {
		unix.Close(nfd)
		return nil
	}
	return &rawFile{f: os.NewFile(uintptr(nfd), f.path), dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim}
}

// changed reports whether the file differs from what it was at the open.
func (r *rawFile) changed() bool {
	var st unix.Stat_t
	if unix.Fstat(int(r.f.Fd()), &st) != nil {
		return true
	}
	return st.Dev != r.dev || st.Ino != r.ino || st.Size != r.size || st.Mtim != r.mtime
}

// within checks that n bytes at off lie within the file's size at the open.
func (r *rawFile) within(off, n int64) error {
	if off < 0 || n < 0 || off > r.size || n > r.size-off {
		return fmt.Errorf("stored data at %d (%d bytes) ends past the end of the file (%d bytes): %w",
			off, n, r.size, ErrTruncated)
	}
	return nil
}

// pread fills dst from the file at off, which with len(dst) must lie within the file's size
// at the open.
func (r *rawFile) pread(dst []byte, off int64) error {
	if err := r.within(off, int64(len(dst))); err != nil {
		return err
	}
	for len(dst) > 0 {
		n, err := r.f.ReadAt(dst, off)
		if n == 0 && err == nil {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && n < len(dst) {
			if r.changed() {
				return ErrChanged
			}
			return fmt.Errorf("read stored data at %d: %w", off, err)
		}
		dst, off = dst[n:], off+int64(n)
	}
	return nil
}

// splice moves the file's bytes [off, off+n), which must lie within the file's size at the
// open, into sink.
func (r *rawFile) splice(sink handlers.SpliceSink, off, n int64) error {
	if err := r.within(off, n); err != nil {
		return err
	}
	for n > 0 {
		m, err := sink.LoadFromAt(r.f.Fd(), int(min(n, 1<<30)), off)
		if m <= 0 || err != nil {
			if r.changed() {
				return ErrChanged
			}
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("splice stored data at %d: %w", off, err)
		}
		n, off = n-int64(m), off+int64(m)
	}
	return nil
}

func (r *rawFile) Close() error { return r.f.Close() }

// stored is how a dataset's bytes lie in its file when stored reads apply to it.
type stored struct {
	rf         *rawFile
	frameBytes int64 // bytes of one index along the first dimension
	total      int64 // bytes of the dataset
	contig     bool
	addr       int64 // contiguous: the data's address
	chunkRows  int64 // chunked: indexes along the first dimension per chunk
	chunkBytes int64 // chunked: bytes of a chunk

	mu   sync.Mutex
	locs map[int64]int64 // chunk index -> address; guarded by mu
	// Readahead of a sequential reader: the end of the furthest read so far and of what was
	// asked ahead (dataset byte positions); guarded by mu.
	readEnd, aheadEnd int64
	prefetching       bool // guarded by mu
}

const (
	// aheadBytes is how far ahead of a sequential reader the file's pages are asked for
	// (POSIX_FADV_WILLNEED): the disk reads them while the frames before are served. The
	// kernel's own readahead of the descriptor (128 KiB on many disks) may not cover one
	// frame, and the reader's requests come one at a time (a FUSE read(2) of a
	// FOPEN_DIRECT_IO file is sent a request after the other, whatever ASYNC_DIO says).
	aheadBytes = 16 << 20
	// aheadBatch is the least that is asked for at a time: the kernel then sends the disk
	// large reads (up to its max_sectors_kb), not one a chunk.
	aheadBatch = 4 << 20
	// seqSlack is how far before or after the furthest read a read may start and count as
	// sequential (the kernel serves a large read's requests in any order).
	seqSlack = 2 << 20
	// maxAheadChunks bounds the chunks one readahead asks for: their addresses are looked up
	// in the READ that starts it, a libhdf5 call each, and a file's chunks may be tiny (one
	// element). A dataset of chunks under 64 KiB (aheadBytes/maxAheadChunks) is read ahead
	// less far, and one of chunks under 16 KiB (aheadBatch/maxAheadChunks) hardly at all.
	maxAheadChunks = 256
)

// maxChunkLocs bounds the chunk addresses a dataset remembers.
const maxChunkLocs = 1 << 16

// storedLayout returns d's stored layout, or nil. Call it inside call, after header and
// chunkLayout.
func (d *dataset) storedLayout(rf *rawFile) *stored {
	if rf == nil || len(d.dims) == 0 || (d.big && d.elem > 1) {
		return nil
	}
	// The dataset must be in rf's file, not in one an external link led to.
	var dev, ino C.ulonglong
	if C.bfs_dset_file_ino(C.hid_t(d.ds.ID()), &dev, &ino) < 0 {
		C.H5Eclear2(C.H5E_DEFAULT)
		return nil
	}
	if uint64(dev) != rf.dev || uint64(ino) != rf.ino {
		return nil
	}
	var addr, size C.ulonglong
	kind := C.bfs_raw_layout(C.hid_t(d.ds.ID()), &addr, &size)
	if kind < 0 {
		C.H5Eclear2(C.H5E_DEFAULT)
		return nil
	}
	fb, err := handlers.ArrayBytes(d.dims[1:], d.elem)
	if err != nil || fb == 0 {
		return nil
	}
	total, err := handlers.ArrayBytes(d.dims, d.elem)
	if err != nil {
		return nil
	}
	s := &stored{rf: rf, frameBytes: int64(fb), total: int64(total)}
	switch kind {
	case 1:
		c := d.chunk
		if c == nil || len(c.filters) != 0 || len(c.dims) != len(d.dims) {
			return nil
		}
		// Stored reads of whole frames need chunks that hold whole frames.
		for k := 1; k < len(d.dims); k++ {
			if c.dims[k] != d.dims[k] {
				return nil
			}
		}
		s.chunkRows, s.chunkBytes = int64(c.dims[0]), int64(c.bytes)
		if s.chunkBytes != s.chunkRows*s.frameBytes {
			return nil
		}
		s.locs = map[int64]int64{}
	case 2:
		if uint64(addr) > math.MaxInt64 || uint64(size) < uint64(total) {
			return nil
		}
		s.contig, s.addr = true, int64(addr)
	default:
		return nil
	}
	return s
}

// chunkAddr returns the address of chunk j (indexes [j*chunkRows, (j+1)*chunkRows)), checked
// to lie within the file, or errFallBack when it is not allocated or stored otherwise.
func (d *dataset) chunkAddr(s *stored, j int64) (int64, error) {
	s.mu.Lock()
	a, ok := s.locs[j]
	s.mu.Unlock()
	if ok {
		return a, nil
	}
	origin := make([]C.ulonglong, len(d.dims))
	origin[0] = C.ulonglong(j * s.chunkRows)
	var addr, size C.ulonglong
	var mask C.uint
	var r C.int
	err := call(func() error {
		if r = C.bfs_chunk_addr(C.hid_t(d.ds.ID()), &origin[0], &addr, &size, &mask); r < 0 {
			return h5Err()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if r == 1 || mask != 0 || int64(size) != s.chunkBytes {
		return 0, errFallBack
	}
	if uint64(addr) > uint64(s.rf.size) || int64(size) > s.rf.size-int64(addr) {
		return 0, fmt.Errorf("chunk %d at %d (%d bytes) ends past the end of the file (%d bytes): %w",
			j, uint64(addr), uint64(size), s.rf.size, ErrTruncated)
	}
	s.mu.Lock()
	if len(s.locs) >= maxChunkLocs {
		clear(s.locs)
	}
	s.locs[int64(j)] = int64(addr)
	s.mu.Unlock()
	return int64(addr), nil
}

// readStored fills dst with the dataset's bytes (C order, as stored) from byte pos on, or
// returns errFallBack (dst may then be partly written).
func (d *dataset) readStored(s *stored, pos int64, dst []byte) error {
	return d.storedPieces(s, pos, int64(len(dst)), func(off, at, n int64) error {
		return s.rf.pread(dst[at:at+n], off)
	})
}

// spliceStored moves the dataset's bytes [pos, pos+n) from the file into sink (splice(2):
// the pipe takes the file's pages, no copy), or returns errFallBack (sink may then hold part
// of them).
func (d *dataset) spliceStored(s *stored, pos, n int64, sink handlers.SpliceSink) error {
	return d.storedPieces(s, pos, n, func(off, _, n int64) error {
		return s.rf.splice(sink, off, n)
	})
}

// storedPieces calls piece for the dataset's bytes [pos, pos+n) in order, one call per run of
// them that lies in the file in one piece (a chunk, or the contiguous data): off is its
// address in the file, at its position in [0, n), len its length. Then it checks that the
// file did not change meanwhile and notes the read for readahead.
func (d *dataset) storedPieces(s *stored, pos, n int64, piece func(off, at, len int64) error) error {
	if pos < 0 || n < 0 || pos > s.total || n > s.total-pos {
		return fmt.Errorf("bytes %d to %d of a dataset of %d: %w", pos, pos+n, s.total, ErrOutOfRange)
	}
	start, end := pos, pos+n
	for pos < end {
		var off, avail int64
		if s.contig {
			off, avail = s.addr+pos, s.total-pos
		} else {
			j := pos / s.chunkBytes
			a, err := d.chunkAddr(s, j)
			if err != nil {
				return err
			}
			in := pos - j*s.chunkBytes
			off, avail = a+in, s.chunkBytes-in
		}
		k := min(avail, end-pos)
		if err := piece(off, pos-start, k); err != nil {
			return err
		}
		pos += k
	}
	// The bytes are those of the file libhdf5 described only if it did not change meanwhile.
	if s.rf.changed() {
		return ErrChanged
	}
	d.readAhead(s, start, end)
	return nil
}

// readAhead notes a read of [start, end) and, when it continues the furthest read so far (a
// sequential reader: np.load, cp; a read from further back starts the count over), asks the
// kernel for the file's pages up to aheadBytes of the dataset past it (POSIX_FADV_WILLNEED
// starts the reads), aheadBatch at a time: the disk reads them while the frames before are
// served. A read of one frame (mmap) asks for nothing.
//
// The file ranges are worked out here, within the handler's use of d (chunk addresses come
// from libhdf5), and merged where chunks lie end to end; the fadvise calls, which block while
// the kernel queues the reads, are made by a goroutine, not in the READ: a reader's requests
// arrive one after the other, and each waited for the last batch's queueing.
func (d *dataset) readAhead(s *stored, start, end int64) {
	s.mu.Lock()
	seq := s.readEnd > 0 && end > s.readEnd && start >= s.readEnd-seqSlack && start <= s.readEnd+seqSlack
	if start < s.readEnd-seqSlack {
		// A read from further back: a reader starting over (a second np.load), read ahead of
		// as the first was once it goes on; the pages asked for before may be gone.
		s.readEnd, s.aheadEnd = end, 0
	}
	s.readEnd = max(s.readEnd, end)
	from, to := max(end, s.aheadEnd), min(end+aheadBytes, s.total)
	if !s.contig && to-from > maxAheadChunks*s.chunkBytes {
		to = (from/s.chunkBytes + maxAheadChunks) * s.chunkBytes
	}
	ask := seq && !s.prefetching && to > from && (to-from >= aheadBatch || to == s.total)
	if ask {
		s.prefetching, s.aheadEnd = true, to
	}
	s.mu.Unlock()
	if !ask {
		return
	}
	var runs []fileRange
	if s.contig {
		runs = append(runs, fileRange{s.addr + from, to - from})
	} else {
		for j := from / s.chunkBytes; j*s.chunkBytes < to; j++ {
			a, err := d.chunkAddr(s, j)
			if err != nil {
				break
			}
			lo, hi := max(from, j*s.chunkBytes), min(to, (j+1)*s.chunkBytes)
			off := a + lo - j*s.chunkBytes
			if n := len(runs); n > 0 && runs[n-1].off+runs[n-1].n == off {
				runs[n-1].n += hi - lo
			} else {
				runs = append(runs, fileRange{off, hi - lo})
			}
		}
	}
	if len(runs) == 0 {
		s.mu.Lock()
		s.prefetching = false
		s.mu.Unlock()
		return
	}
	go func() {
		s.rf.advise(runs, unix.FADV_WILLNEED)
		s.mu.Lock()
		s.prefetching = false
		s.mu.Unlock()
	}()
}

// fileRange is a byte range of a file.
type fileRange struct{ off, n int64 }

// advise calls posix_fadvise on the ranges, unless the file was closed meanwhile (the
// descriptor is held open for the calls).
func (r *rawFile) advise(runs []fileRange, advice int) {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		for _, x := range runs {
			unix.Fadvise(int(fd), x.off, x.n, advice)
		}
	})
}

// wholeFrames reports whether the slab at offset of the given count is whole frames
// (indexes along the first dimension) of d, and then the byte position of its first.
func (d *dataset) wholeFrames(s *stored, offset, count []int) (int64, bool) {
	if len(offset) != len(d.dims) || len(count) != len(d.dims) {
		return 0, false
	}
	for k := 1; k < len(d.dims); k++ {
		if offset[k] != 0 || count[k] != d.dims[k] {
			return 0, false
		}
	}
	return int64(offset[0]) * s.frameBytes, true
}
