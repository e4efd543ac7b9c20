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
	"math"
	"os"
	"path/filepath"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"

	"github.com/brokerfs/brokerfs/handlers"
)

// What libhdf5 opens by itself, and how this package keeps it inside the allowed roots
// (handlers.Guard):
//
//   - external links: every traversal of this package (H5Lexists, H5Gopen2, H5Dopen2) runs
//     with an access property list whose H5Pset_elink_cb callback (bfsElinkCheck) checks
//     every file libhdf5 might open for the link, in the order H5F_prefix_open_file tries
//     them: the absolute name, HDF5_EXT_PREFIX entries, the parent file's directory, the
//     working directory. A target that exists and is outside the roots, or is not a regular
//     file (a FIFO would block the open), fails the traversal.
//   - external raw storage (H5Pset_external): checked when the dataset is opened, where
//     libhdf5 will look: relative names against HDF5_EXTFILE_PREFIX or, by default, the
//     server's working directory.
//   - virtual datasets: each mapping's source file is checked as an external link's target
//     (with HDF5_VDS_PREFIX), and its source dataset is opened and checked in turn (nested
//     VDS, external storage, links), to a depth of maxSourceDepth. Source file names with
//     printf-style patterns (%b) are refused: which files they name is not known up front.
//
// A check and libhdf5's open are two steps: a file swapped in between is not seen. The
// Filler's call deadline bounds what that could cost; the rest is the operator's choice of
// roots that untrusted users cannot write to.

// maxSourceDepth bounds the nesting of virtual datasets checked (and refused beyond).
const maxSourceDepth = 4

// linkGuard is what the external-link callback sees: the Guard, and the last refusal (the
// callback can only say "no" to libhdf5; the reason is picked up here).
type linkGuard struct {
	g      *handlers.Guard
	handle cgo.Handle

	mu      sync.Mutex
	refused error // guarded by mu
}

func newLinkGuard(g *handlers.Guard) *linkGuard {
	lg := &linkGuard{g: g}
	lg.handle = cgo.NewHandle(lg)
	return lg
}

func (lg *linkGuard) release() { lg.handle.Delete() }

// take returns and clears the last refusal.
func (lg *linkGuard) take() error {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	err := lg.refused
	lg.refused = nil
	return err
}

// explain returns the refusal behind a failed libhdf5 call, if there was one, else err.
func (lg *linkGuard) explain(err error) error {
	if r := lg.take(); r != nil {
		return r
	}
	return err
}

//export bfsElinkCheck
func bfsElinkCheck(h C.uintptr_t, parent, child *C.char) C.int {
	lg, ok := cgo.Handle(h).Value().(*linkGuard)
	if !ok {
		return -1
	}
	p, c := C.GoString(parent), C.GoString(child)
	if err := checkTargets(lg.g, p, c, "HDF5_EXT_PREFIX"); err != nil {
		lg.mu.Lock()
		lg.refused = fmt.Errorf("external link from %s to %s: %w", p, c, err)
		lg.mu.Unlock()
		return -1
	}
	return 0
}

// checkTargets checks every file libhdf5's H5F_prefix_open_file may open for the name child
// referred to from the file parent: each that exists must pass g.Stat.
func checkTargets(g *handlers.Guard, parent, child, env string) error {
	if child == "" {
		return nil
	}
	dir := filepath.Dir(parent)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	var cands []string
	name := child
	if filepath.IsAbs(child) {
		cands = append(cands, child)
		name = filepath.Base(child)
	}
	if v := os.Getenv(env); v != "" {
		for _, p := range strings.Split(v, ":") {
			p = strings.Replace(p, "${ORIGIN}", dir, 1)
			cands = append(cands, filepath.Join(p, name))
		}
	}
	cands = append(cands, filepath.Join(dir, name), name)
	for _, c := range cands {
		if err := checkIfExists(g, c); err != nil {
			return err
		}
	}
	return nil
}

// checkIfExists checks path with g.Stat when it exists (a missing file, or a dangling
// link, cannot be opened).
func checkIfExists(g *handlers.Guard, path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_, err := g.Stat(path)
	return err
}

// checkSources checks what d reads besides its own file: external raw storage files and
// virtual dataset sources. Call it inside call.
func (d *dataset) checkSources(f *file, cacheBytes, depth int) error {
	var ext C.int
	var virt C.size_t
	if C.bfs_layout(C.hid_t(d.ds.ID()), &ext, &virt) < 0 {
		return h5Err()
	}
	dir := filepath.Dir(f.path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	var buf [4096]C.char
	for i := 0; i < int(ext); i++ {
		if C.bfs_external_name(C.hid_t(d.ds.ID()), C.uint(i), &buf[0], C.size_t(len(buf))) < 0 {
			return h5Err()
		}
		name := C.GoString(&buf[0])
		// H5D__build_file_prefix: HDF5_EXTFILE_PREFIX, else the dataset access property
		// (not set here), else none: relative to the working directory.
		prefix := strings.Replace(os.Getenv("HDF5_EXTFILE_PREFIX"), "${ORIGIN}", dir, 1)
		full := name
		if !filepath.IsAbs(name) && prefix != "" && prefix != "." {
			full = filepath.Join(prefix, name)
		}
		if err := checkIfExists(f.lg.g, full); err != nil {
			return fmt.Errorf("external storage file %s: %w", name, err)
		}
	}
	if virt == 0 {
		return nil
	}
	if depth >= maxSourceDepth {
		return fmt.Errorf("virtual dataset sources nested deeper than %d: %w", maxSourceDepth, handlers.ErrNotAllowed)
	}
	var fileBuf, nameBuf [4096]C.char
	for i := 0; i < int(virt); i++ {
		if C.bfs_virtual_source(C.hid_t(d.ds.ID()), C.size_t(i), &fileBuf[0], &nameBuf[0], C.size_t(len(fileBuf))) < 0 {
			return h5Err()
		}
		src, name := C.GoString(&fileBuf[0]), C.GoString(&nameBuf[0])
		if strings.Contains(src, "%") {
			return fmt.Errorf("virtual dataset source %q: printf-style file names are not supported: %w", src, handlers.ErrNotAllowed)
		}
		if src == "." {
			sd, err := openDatasetDepth(f, name, cacheBytes, depth+1)
			if err != nil {
				return fmt.Errorf("virtual dataset source %s: %w", name, err)
			}
			_ = sd.Close()
			continue
		}
		if err := checkTargets(f.lg.g, f.path, src, "HDF5_VDS_PREFIX"); err != nil {
			return fmt.Errorf("virtual dataset source file %s: %w", src, err)
		}
		// The source dataset may itself read other files: open and check it. libhdf5 opens
		// the source the same way (the first candidate that exists), checked above.
		path := src
		if !filepath.IsAbs(src) {
			path = filepath.Join(dir, src)
		}
		if _, err := os.Stat(path); err != nil {
			continue // missing sources read as fill values, as libhdf5 does
		}
		sf, err := openFile(f.lg.g, path, false)
		if err != nil {
			return fmt.Errorf("virtual dataset source file %s: %w", src, err)
		}
		sd, err := openDatasetDepth(sf, name, cacheBytes, depth+1)
		if err == nil {
			_ = sd.Close()
		}
		_ = sf.Close()
		if err != nil {
			return fmt.Errorf("virtual dataset source %s in %s: %w", name, src, err)
		}
	}
	return nil
}

// maxDataSets bounds the links of an Eiger master's data group that are listed.
const maxDataSets = 1 << 16

// group is a group opened under the file's guard.
type group struct {
	id C.hid_t
	f  *file
}

// openGroup opens the group name, traversing links under the guard. Call it inside call.
func (f *file) openGroup(name string) (*group, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	id := C.bfs_gopen(C.hid_t(f.f.ID()), cname, f.lapl)
	if id < 0 {
		return nil, f.lg.explain(h5Err())
	}
	return &group{id: id, f: f}, nil
}

func (g *group) count() (int, error) {
	var n C.ulonglong
	if C.bfs_gcount(g.id, &n) < 0 {
		return 0, h5Err()
	}
	if uint64(n) > math.MaxInt32 {
		return 0, fmt.Errorf("group of %d links: %w", uint64(n), handlers.ErrTooLarge)
	}
	return int(n), nil
}

func (g *group) name(i int) (string, error) {
	var buf [1024]C.char
	n := C.bfs_gname(g.id, C.ulonglong(i), &buf[0], C.size_t(len(buf)))
	if n < 0 {
		return "", h5Err()
	}
	return C.GoString(&buf[0]), nil
}

func (g *group) Close() { C.H5Gclose(g.id) }
