package hdf5

/*
#cgo pkg-config: hdf5
#include <stddef.h>
int bfs_register_bitshuffle(void);
*/
import "C"

import (
	"sync"
	"unsafe"
)

// filterSource says where filter 32008 (bitshuffle) comes from: "plugin" when libhdf5
// found one on its plugin path (HDF5_PLUGIN_PATH or Debian's
// /usr/lib/x86_64-linux-gnu/hdf5/serial/plugins), "builtin" for this package's decoder,
// "" before the first open or if registering failed.
var (
	filterOnce   sync.Once
	filterSource string
)

// ensureFilters registers the bitshuffle decoder with libhdf5 unless a plugin provides it.
// LZ4 (32004) and others come from plugins only; libhdf5 loads them when a chunk needs them.
func ensureFilters() {
	filterOnce.Do(func() {
		_ = call(func() error {
			switch C.bfs_register_bitshuffle() {
			case 1:
				filterSource = "plugin"
			case 0:
				filterSource = "builtin"
			}
			return nil
		})
	})
}

// BitshuffleSource reports where reads of bitshuffle (filter 32008) chunks are decoded:
// "plugin", "builtin" or "" (no HDF5 handler opened yet).
func BitshuffleSource() string {
	ensureFilters()
	return filterSource
}

// bfsBshufDecode is called by the C filter function for each chunk libhdf5 reads.
//
//export bfsBshufDecode
func bfsBshufDecode(in unsafe.Pointer, inLen C.size_t, out unsafe.Pointer, outLen C.size_t, elem, block C.size_t, lz4 C.int) C.int {
	src := unsafe.Slice((*byte)(in), int(inLen))
	dst := unsafe.Slice((*byte)(out), int(outLen))
	if bshufDecode(src, dst, int(elem), int(block), lz4 != 0) != nil {
		return -1
	}
	return 0
}
