package hdf5

// The little libhdf5 that gonum.org/v1/hdf5 does not wrap: the per-thread error stack (a
// thread-safe libhdf5 keeps one per OS thread, and gonum only silences the thread its init
// ran on), type byte order and sign, SWMR open, H5Drefresh and external-link targets.

/*
#cgo pkg-config: hdf5
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <hdf5.h>

static void bfs_quiet(void) {
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	H5Eclear2(H5E_DEFAULT);
}

typedef struct { char *buf; size_t cap; size_t len; int n; } bfs_walk;

static herr_t bfs_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
	bfs_walk *w = data;
	if (w->n >= 4 || e->desc == NULL || e->desc[0] == 0) return 0;
	size_t dl = strlen(e->desc);
	// Skip a description already collected (stacks repeat "not found").
	if (w->len > 0 && strstr(w->buf, e->desc) != NULL) return 0;
	if (w->len + dl + 3 >= w->cap) return 0;
	if (w->len > 0) { memcpy(w->buf + w->len, "; ", 2); w->len += 2; }
	memcpy(w->buf + w->len, e->desc, dl);
	w->len += dl;
	w->buf[w->len] = 0;
	w->n++;
	return 0;
}

// bfs_errstack writes the calling thread's error stack, innermost first, into buf.
static void bfs_errstack(char *buf, size_t cap) {
	bfs_walk w = {buf, cap, 0, 0};
	buf[0] = 0;
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, bfs_walk_cb, &w);
	H5Eclear2(H5E_DEFAULT);
}

// bfs_read reads the selection file of dset into buf through mem, in the dataset's own type
// (no conversion), and on failure writes the error stack into err before any other call
// clears it.
static int bfs_read(hid_t dset, hid_t mem, hid_t file, void *buf, char *err, size_t cap) {
	hid_t t = H5Dget_type(dset);
	if (t < 0) {
		bfs_errstack(err, cap);
		return -1;
	}
	herr_t r = H5Dread(dset, t, mem, file, H5P_DEFAULT, buf);
	if (r < 0) bfs_errstack(err, cap);
	H5Tclose(t);
	return r < 0 ? -1 : 0;
}

static unsigned bfs_swmr_read(void) { return H5F_ACC_RDONLY | H5F_ACC_SWMR_READ; }

// bfs_dtype describes a dataset's type: class (H5T_class_t), size, big endian, signed.
static int bfs_dtype(hid_t dset, int *cls, size_t *size, int *big, int *sgn) {
	hid_t t = H5Dget_type(dset);
	if (t < 0) return -1;
	H5T_class_t c = H5Tget_class(t);
	*cls = c;
	*size = H5Tget_size(t);
	*big = H5Tget_order(t) == H5T_ORDER_BE;
	*sgn = c == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2;
	H5Tclose(t);
	return 0;
}

// bfs_elink reports whether name in loc is an external link and, if so, its file.
static int bfs_elink(hid_t loc, const char *name, char *file, size_t cap) {
	H5L_info_t info;
	if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0) return -1;
	if (info.type != H5L_TYPE_EXTERNAL) return 0;
	void *val = malloc(info.u.val_size);
	if (val == NULL) return -1;
	if (H5Lget_val(loc, name, val, info.u.val_size, H5P_DEFAULT) < 0) { free(val); return -1; }
	const char *f = NULL, *o = NULL;
	unsigned flags;
	if (H5Lunpack_elink_val(val, info.u.val_size, &flags, &f, &o) < 0) { free(val); return -1; }
	snprintf(file, cap, "%s", f);
	free(val);
	return 1;
}

#include "guard.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"unsafe"
)

// call runs fn with the goroutine locked to its OS thread, so that libhdf5's per-thread
// error stack, read by h5Err, is the one fn's calls wrote, and with automatic error printing
// off on that thread.
func call(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	C.bfs_quiet()
	return fn()
}

// errH5 is what a failed libhdf5 call wraps; gonum itself says only "code -1".
var errH5 = errors.New("libhdf5")

// h5Err returns the error of the libhdf5 call that just failed, with the descriptions on
// the thread's error stack (innermost first). Call it inside call and before any other
// libhdf5 call, which would clear the stack. A file another process holds locked wraps
// EAGAIN, so callers retry it.
func h5Err() error {
	var buf [1024]C.char
	C.bfs_errstack(&buf[0], C.size_t(len(buf)))
	return stackError(C.GoString(&buf[0]))
}

func stackError(msg string) error {
	switch {
	case msg == "":
		return fmt.Errorf("%w: call failed", errH5)
	case strings.Contains(msg, "unable to lock file"):
		return fmt.Errorf("%w: %s (%w)", errH5, msg, syscall.EAGAIN)
	}
	return fmt.Errorf("%w: %s", errH5, msg)
}

// readSelection reads the selection fsp of dset through msp into buf.
func readSelection(dset, msp, fsp int64, buf []byte) error {
	var msg [1024]C.char
	if C.bfs_read(C.hid_t(dset), C.hid_t(msp), C.hid_t(fsp), unsafe.Pointer(&buf[0]), &msg[0], C.size_t(len(msg))) < 0 {
		return stackError(C.GoString(&msg[0]))
	}
	return nil
}

// typeInfo returns the numpy descr (little-endian form) of a dataset's type, its element
// size, and whether its data is big-endian.
func typeInfo(dset int64) (descr string, size int, big bool, err error) {
	var cls, b, sgn C.int
	var sz C.size_t
	if C.bfs_dtype(C.hid_t(dset), &cls, &sz, &b, &sgn) < 0 {
		return "", 0, false, h5Err()
	}
	size = int(sz)
	var kind byte
	switch {
	case cls == C.H5T_INTEGER && sgn != 0:
		kind = 'i'
	case cls == C.H5T_INTEGER:
		kind = 'u'
	case cls == C.H5T_FLOAT && (size == 2 || size == 4 || size == 8):
		kind = 'f'
	default:
		name := fmt.Sprintf("class %d", cls)
		if cls >= 0 && int(cls) < len(typeClasses) {
			name = typeClasses[cls]
		}
		return "", 0, false, fmt.Errorf("%s of %d bytes: want integers or floats: %w", name, size, ErrType)
	}
	if kind != 'f' && size != 1 && size != 2 && size != 4 && size != 8 {
		return "", 0, false, fmt.Errorf("%d-byte integers are not supported: %w", size, ErrType)
	}
	if size == 1 {
		return fmt.Sprintf("|%c1", kind), 1, false, nil
	}
	return fmt.Sprintf("<%c%d", kind, size), size, b != 0, nil
}

// typeClasses names H5T_class_t values.
var typeClasses = []string{"integer", "float", "time", "string", "bitfield", "opaque", "compound",
	"reference", "enum", "variable-length", "array"}

// ErrType means a dataset's type is not one handlers return (integers and floats).
var ErrType = errors.New("unsupported HDF5 datatype")

func refresh(dset int64) error {
	if C.H5Drefresh(C.hid_t(dset)) < 0 {
		return h5Err()
	}
	return nil
}

// externalFile returns the file an external link name in group loc points to ("" when name
// is not an external link).
func externalFile(loc int64, name string) (string, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var buf [4096]C.char
	switch C.bfs_elink(C.hid_t(loc), cname, &buf[0], C.size_t(len(buf))) {
	case 1:
		return C.GoString(&buf[0]), nil
	case 0:
		return "", nil
	}
	return "", fmt.Errorf("link %s: %w", name, h5Err())
}

var swmrReadFlags = int(C.bfs_swmr_read())
