package hdf5

/*
#cgo pkg-config: hdf5 zlib
#include <stdlib.h>
#include <zlib.h>
#include "guard.h"

// bfs_inflate inflates the zlib stream src into dst, which it must fill exactly. It is
// zlib's own code, not libhdf5's, so it runs outside libhdf5's lock.
static int bfs_inflate(unsigned char *dst, size_t dlen, const unsigned char *src, size_t slen) {
	uLongf n = dlen;
	int r = uncompress(dst, &n, src, slen);
	if (r != Z_OK) return r;
	return n == dlen ? 0 : -100;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/brokerfs/brokerfs/handlers"
)

// Direct chunk reads: libhdf5 runs one call at a time (its global lock), so with H5Dread a
// gzip frame is decompressed inside the lock and concurrent readers of compressed frames
// take turns. For chunks filtered by deflate and shuffle only, this package reads the raw
// chunk under the lock (H5Dread_chunk) and inflates (zlib, called directly) and unshuffles
// it outside it, so readers decompress in parallel. Any other filter (LZ4, bitshuffle, szip, ...), a chunk
// not yet written (fill values) or a chunk larger than its bound falls back to H5Dread.

const (
	filterDeflate = 1
	filterShuffle = 2
)

// chunking is a dataset's chunk layout when it can be read directly.
type chunking struct {
	dims    []int // chunk dims
	filters []int // in pipeline order (write order)
	bytes   int   // decoded size of one chunk
	rawCap  int   // room for a stored chunk (deflate may grow incompressible data a little)

	// A free list, so that a frame read allocates nothing in steady state (sync.Pool would
	// do, but drops items at random under the race detector).
	bufs chan []byte // of len rawCap
}

func (c *chunking) getBuf() []byte {
	select {
	case b := <-c.bufs:
		return b
	default:
		return make([]byte, c.rawCap)
	}
}

func (c *chunking) putBuf(b []byte) {
	select {
	case c.bufs <- b:
	default:
	}
}

// chunkLayout returns d's chunking if its chunks can be read directly, else nil. Call it
// inside call.
func (d *dataset) chunkLayout() *chunking {
	if len(d.dims) == 0 || len(d.dims) > 32 {
		return nil
	}
	cd := make([]C.ulonglong, len(d.dims))
	var ids [8]C.int
	var n C.int
	if C.bfs_chunk_layout(C.hid_t(d.ds.ID()), C.int(len(d.dims)), &cd[0], &n, &ids[0], C.int(len(ids))) != 1 {
		C.H5Eclear2(C.H5E_DEFAULT)
		return nil
	}
	c := &chunking{}
	for _, v := range cd {
		if v == 0 || v > 1<<31 {
			return nil
		}
		c.dims = append(c.dims, int(v))
	}
	for i := range int(n) {
		c.filters = append(c.filters, int(ids[i]))
	}
	size, err := handlers.ArrayBytes(c.dims, d.elem)
	if err != nil || size == 0 || size > 256<<20 {
		return nil
	}
	c.bytes = size
	c.rawCap = size + size/8 + 4096
	c.bufs = make(chan []byte, 12)
	return c
}

// errFallBack means a direct read cannot serve a request: use H5Dread.
var errFallBack = errors.New("fall back to H5Dread")

// inflate decompresses the zlib stream src into dst, which it must fill exactly, with the
// system's zlib (what libhdf5's deflate filter uses, and faster than Go's inflaters), called
// without libhdf5's lock.
func inflate(dst, src []byte) error {
	if len(dst) == 0 || len(src) == 0 {
		return errors.New("inflate chunk: empty")
	}
	if r := C.bfs_inflate((*C.uchar)(unsafe.Pointer(&dst[0])), C.size_t(len(dst)), (*C.uchar)(unsafe.Pointer(&src[0])), C.size_t(len(src))); r != 0 {
		return fmt.Errorf("inflate chunk: zlib error %d", int(r))
	}
	return nil
}

// unshuffle undoes HDF5's shuffle filter: src holds byte k of every element, then byte k+1
// ...; a trailing part that is not a whole element is stored as is.
func unshuffle(dst, src []byte, elem int) {
	n := len(src) / elem
	for k := range elem {
		plane := src[k*n : (k+1)*n]
		for i, b := range plane {
			dst[i*elem+k] = b
		}
	}
	copy(dst[n*elem:], src[n*elem:])
}

// readDirect reads the hyperslab at offset of the given count into dst through raw chunk
// reads, or returns errFallBack.
func (d *dataset) readDirect(c *chunking, offset, count []int, dst []byte) error {
	nd := len(d.dims)
	// The chunk grid covering the slab.
	first, last := make([]int, nd), make([]int, nd)
	for k := range nd {
		if count[k] == 0 {
			return nil
		}
		first[k] = offset[k] / c.dims[k]
		last[k] = (offset[k] + count[k] - 1) / c.dims[k]
	}
	raw, dec, tmp := c.getBuf(), c.getBuf(), c.getBuf()
	defer func() { c.putBuf(raw); c.putBuf(dec); c.putBuf(tmp) }()
	idx := append([]int(nil), first...)
	origin := make([]C.ulonglong, nd)
	for {
		for k := range nd {
			origin[k] = C.ulonglong(idx[k] * c.dims[k])
		}
		var n C.size_t
		var mask C.uint
		var r C.int
		err := call(func() error {
			r = C.bfs_read_chunk(C.hid_t(d.ds.ID()), &origin[0], unsafe.Pointer(&raw[0]), C.size_t(len(raw)), &n, &mask)
			if r < 0 {
				return h5Err()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if r == 1 {
			return errFallBack
		}
		data := raw[:n]
		for i := len(c.filters) - 1; i >= 0; i-- {
			if mask&(1<<uint(i)) != 0 {
				continue // the writer skipped this filter for this chunk
			}
			switch c.filters[i] {
			case filterDeflate:
				if err := inflate(dec[:c.bytes], data); err != nil {
					return err
				}
				data = dec[:c.bytes]
			case filterShuffle:
				out := tmp
				if &data[0] == &out[0] {
					out = dec
				}
				unshuffle(out[:len(data)], data, d.elem)
				data = out[:len(data)]
			}
		}
		if len(data) != c.bytes {
			return fmt.Errorf("chunk at %v: %d bytes, want %d: %w", idx, len(data), c.bytes, errFallBack)
		}
		copyChunk(dst, data, offset, count, idx, c.dims, d.elem)
		// Next chunk index, last dimension fastest.
		k := nd - 1
		for ; k >= 0; k-- {
			if idx[k] < last[k] {
				idx[k]++
				break
			}
			idx[k] = first[k]
		}
		if k < 0 {
			return nil
		}
	}
}

// copyChunk copies the part of the chunk at grid index idx (decoded, C order, dims cdims)
// that falls in the slab [offset, offset+count) into dst (the slab, C order).
func copyChunk(dst, chunk []byte, offset, count, idx, cdims []int, elem int) {
	nd := len(offset)
	lo, hi := make([]int, nd), make([]int, nd)
	for k := range nd {
		co := idx[k] * cdims[k]
		lo[k] = max(offset[k], co)
		hi[k] = min(offset[k]+count[k], co+cdims[k])
	}
	// Row-major strides, in elements, of the chunk and of the slab.
	cs, ds := make([]int, nd), make([]int, nd)
	cs[nd-1], ds[nd-1] = 1, 1
	for k := nd - 2; k >= 0; k-- {
		cs[k] = cs[k+1] * cdims[k+1]
		ds[k] = ds[k+1] * count[k+1]
	}
	run := (hi[nd-1] - lo[nd-1]) * elem
	pos := append([]int(nil), lo...)
	for {
		so, do := 0, 0
		for k := range nd {
			so += (pos[k] - idx[k]*cdims[k]) * cs[k]
			do += (pos[k] - offset[k]) * ds[k]
		}
		copy(dst[do*elem:do*elem+run], chunk[so*elem:so*elem+run])
		k := nd - 2
		for ; k >= 0; k-- {
			if pos[k]+1 < hi[k] {
				pos[k]++
				break
			}
			pos[k] = lo[k]
		}
		if k < 0 {
			return
		}
	}
}
