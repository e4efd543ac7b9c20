package hdf5

/*
#cgo pkg-config: hdf5
#include <stdlib.h>
#include "guard.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"unsafe"

	h5 "gonum.org/v1/hdf5"

	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/npy"
)

// ErrNoDataset means a file lacks the dataset a handler reads. It also matches
// fs.ErrNotExist: area-detector-handlers turns h5py's KeyError into an IOError so that the
// Filler retries it, because a file still being written may not have the dataset yet.
var ErrNoDataset error = noDataset{}

type noDataset struct{}

func (noDataset) Error() string        { return "no such dataset" }
func (noDataset) Is(target error) bool { return target == fs.ErrNotExist }

// ErrOutOfRange means a datum asks for frames past the end of a dataset.
var ErrOutOfRange = errors.New("out of range")

// file is one open HDF5 file.
type file struct {
	path string
	f    *h5.File
	lg   *linkGuard
	lapl C.hid_t  // link access with lg's external-link callback
	raw  *rawFile // for stored reads (raw.go); nil when they do not apply
}

// openFile opens path read-only (SWMR-read when swmr) if g allows it (see guard.go). A
// missing file wraps fs.ErrNotExist.
//
// libhdf5 opens by name, so the file is checked first (inside the roots, a regular file: a
// FIFO would block the open with libhdf5's global lock held), and after the open the file
// libhdf5 holds must be the one checked (same device and inode).
func openFile(g *handlers.Guard, path string, swmr bool) (*file, error) {
	st, err := g.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open hdf5 file: %w", err)
	}
	flags := h5.F_ACC_RDONLY
	if swmr {
		flags = swmrReadFlags
	}
	out := &file{path: path, lg: newLinkGuard(g)}
	err = call(func() error {
		var err error
		if out.f, err = h5.OpenFile(path, flags); err != nil {
			return h5Err()
		}
		var dev, ino C.ulonglong
		sys, ok := st.Sys().(*syscall.Stat_t)
		if C.bfs_file_ino(C.hid_t(out.f.ID()), &dev, &ino) < 0 || !ok || uint64(dev) != uint64(sys.Dev) || uint64(ino) != uint64(sys.Ino) {
			return fmt.Errorf("the file changed while it was opened: %w", handlers.ErrNotAllowed)
		}
		if out.lapl = C.bfs_plist(0); out.lapl < 0 {
			return h5Err()
		}
		if C.bfs_guard_plist(out.lapl, C.uintptr_t(out.lg.handle), 0) < 0 {
			return h5Err()
		}
		if !swmr {
			// A SWMR writer may still be moving what a reader sees: libhdf5 reads it.
			out.raw = openRaw(out)
		}
		return nil
	})
	if err != nil {
		out.release()
		return nil, fmt.Errorf("open hdf5 file %s: %w", path, err)
	}
	return out, nil
}

// release frees what openFile made; call it inside call or on a failed open.
func (f *file) release() error {
	var err error
	if f.f != nil {
		err = call(func() error {
			if f.f.Close() != nil {
				return fmt.Errorf("close %s: %w", f.path, h5Err())
			}
			return nil
		})
		f.f = nil
	}
	if f.lapl > 0 {
		C.H5Pclose(f.lapl)
		f.lapl = 0
	}
	if f.lg != nil {
		f.lg.release()
		f.lg = nil
	}
	if f.raw != nil {
		f.raw.Close()
		f.raw = nil
	}
	return err
}

func (f *file) Close() error { return f.release() }

// exists reports whether name (a path in the file) exists, traversing links under the guard.
func (f *file) exists(name string) (bool, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	if C.bfs_exists(C.hid_t(f.f.ID()), cname, f.lapl) > 0 {
		return true, nil
	}
	if err := f.lg.take(); err != nil {
		return false, err
	}
	return false, nil
}

// dataset is one open dataset: its type and, unless refreshed, its dims.
type dataset struct {
	file  string // for errors
	name  string
	ds    *h5.Dataset
	dtype string // numpy descr, little-endian form
	elem  int
	big   bool
	dims  []int
	chunk *chunking // set when chunks can be read raw and decoded in Go (chunk.go)
	st    *stored   // set when whole frames can be read from the file as stored (raw.go)
}

// openDataset opens the dataset name (a path in the file) with a chunk cache of cacheBytes
// (0: libhdf5's default) and reads its header: type and dims. What the dataset reads from
// other files (external storage, virtual sources) is checked against the file's guard.
func openDataset(f *file, name string, cacheBytes int) (*dataset, error) {
	return openDatasetDepth(f, name, cacheBytes, 0)
}

func openDatasetDepth(f *file, name string, cacheBytes, depth int) (*dataset, error) {
	d := &dataset{file: f.path, name: name}
	err := call(func() error {
		ok, err := f.exists(name)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoDataset
		}
		dapl, err := h5.NewPropList(h5.P_DATASET_ACCESS)
		if err != nil {
			return h5Err()
		}
		if C.bfs_guard_plist(C.hid_t(dapl.ID()), C.uintptr_t(f.lg.handle), 1) < 0 {
			err := h5Err()
			dapl.Close()
			return err
		}
		if cacheBytes > 0 {
			// 12421 slots: a prime well above the chunks a cache of this size holds.
			if dapl.SetChunkCache(12421, cacheBytes, 1) != nil {
				err := h5Err()
				dapl.Close()
				return err
			}
		}
		d.ds, err = f.f.OpenDatasetWith(name, dapl)
		if err != nil {
			err = f.lg.explain(h5Err()) // before closing dapl clears the stack
		}
		dapl.Close()
		if err != nil {
			return err
		}
		if err := d.checkSources(f, cacheBytes, depth); err != nil {
			return err
		}
		if err := d.header(); err != nil {
			return err
		}
		d.chunk = d.chunkLayout()
		d.st = d.storedLayout(f.raw)
		return nil
	})
	if err != nil {
		if d.ds != nil {
			_ = d.Close()
		}
		return nil, fmt.Errorf("open dataset %s in %s: %w", name, f.path, err)
	}
	return d, nil
}

// header reads type and dims; call it inside call.
func (d *dataset) header() error {
	var err error
	if d.dtype, d.elem, d.big, err = typeInfo(d.ds.ID()); err != nil {
		return err
	}
	return d.readDims()
}

func (d *dataset) readDims() error {
	sp := d.ds.Space()
	if sp == nil {
		return h5Err()
	}
	defer sp.Close()
	if !sp.IsSimple() || sp.SimpleExtentNDims() < 0 {
		return fmt.Errorf("dataspace is not simple: %w", ErrType)
	}
	dims := make([]int, sp.SimpleExtentNDims())
	if len(dims) > 0 {
		ud, _, err := sp.SimpleExtentDims()
		if err != nil {
			return h5Err()
		}
		for i, v := range ud {
			dims[i] = int(v)
		}
	}
	d.dims = dims
	return nil
}

// refresh re-reads a SWMR dataset's dims from the file (H5Drefresh).
func (d *dataset) refresh() error {
	err := call(func() error {
		if err := refresh(d.ds.ID()); err != nil {
			return err
		}
		return d.readDims()
	})
	if err != nil {
		return fmt.Errorf("refresh dataset %s in %s: %w", d.name, d.file, err)
	}
	return nil
}

// read reads the hyperslab at offset of the given count into dst (len: product of count
// times elem), converting big-endian data to little-endian. Only the hyperslab is read.
func (d *dataset) read(offset, count []int, dst []byte) error {
	if len(dst) == 0 {
		return nil
	}
	if d.st != nil {
		if pos, ok := d.wholeFrames(d.st, offset, count); ok {
			err := d.readStored(d.st, pos, dst)
			if err == nil {
				return nil
			}
			if !errors.Is(err, errFallBack) {
				return fmt.Errorf("read %s%s in %s: %w", d.name, slab(offset, count), d.file, err)
			}
		}
	}
	if d.chunk != nil && len(offset) == len(d.chunk.dims) {
		err := d.readDirect(d.chunk, offset, count, dst)
		if err == nil {
			if d.big {
				npy.Swap(dst, d.elem)
			}
			return nil
		}
		if !errors.Is(err, errFallBack) {
			return fmt.Errorf("read %s%s in %s: %w", d.name, slab(offset, count), d.file, err)
		}
	}
	off := make([]uint, len(offset))
	cnt := make([]uint, len(count))
	for i := range offset {
		off[i], cnt[i] = uint(offset[i]), uint(count[i])
	}
	err := call(func() error {
		fsp := d.ds.Space()
		if fsp == nil {
			return h5Err()
		}
		defer fsp.Close()
		if fsp.SelectHyperslab(off, nil, cnt, nil) != nil {
			return h5Err()
		}
		msp, err := h5.CreateSimpleDataspace(cnt, nil)
		if err != nil {
			return h5Err()
		}
		defer msp.Close()
		// Read in the dataset's own type (no conversion: big-endian data arrives big-endian
		// and is swapped below). Not gonum's ReadSubset: the calls it makes after a failed
		// H5Dread clear the error stack that says why.
		return readSelection(d.ds.ID(), msp.ID(), fsp.ID(), dst)
	})
	if err != nil {
		return fmt.Errorf("read %s%s in %s: %w", d.name, slab(offset, count), d.file, err)
	}
	if d.big {
		npy.Swap(dst, d.elem)
	}
	return nil
}

func (d *dataset) Close() error {
	return call(func() error {
		if d.ds.Close() != nil {
			return fmt.Errorf("close dataset %s in %s: %w", d.name, d.file, h5Err())
		}
		return nil
	})
}

// slab writes a hyperslab as a Python slice: [0:2, 0:512, 0:512].
func slab(offset, count []int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range offset {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d:%d", offset[i], offset[i]+count[i])
	}
	b.WriteByte(']')
	return b.String()
}

func prod(s []int) int {
	n := 1
	for _, v := range s {
		n *= v
	}
	return n
}
