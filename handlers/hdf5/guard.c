// C side of guard.go: property lists whose external-link callback asks Go, and the
// layout queries (external storage, virtual sources) libhdf5 has no Go wrapper for.
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <hdf5.h>
#include "guard.h"
#include "_cgo_export.h"

// The guard: every link traversal, dataset and group open of this package goes through a
// property list whose external-link callback asks Go (bfsElinkCheck) whether the target
// file may be opened; a refusal fails the traversal.

static herr_t bfs_elink_cb(const char *parent_file_name, const char *parent_group_name,
		const char *child_file_name, const char *child_object_name, unsigned *acc_flags,
		hid_t fapl_id, void *op_data) {
	*acc_flags &= ~(unsigned)H5F_ACC_RDWR; // never write through a link
	if (bfsElinkCheck((uintptr_t)op_data, (char *)parent_file_name, (char *)child_file_name) != 0) {
		return -1;
	}
	return 0;
}

// bfs_guard_plist sets the external-link callback on a link, group or dataset access
// property list. (The external raw storage prefix is left alone: libhdf5 refuses to open a
// dataset already open with another prefix, which a virtual dataset's sources would hit.)
int bfs_guard_plist(hid_t plist, uintptr_t guard, int dapl) {
	if (H5Pset_elink_cb(plist, bfs_elink_cb, (void *)guard) < 0) return -1;
	return 0;
}

hid_t bfs_plist(int dapl) {
	return H5Pcreate(dapl ? H5P_DATASET_ACCESS : H5P_LINK_ACCESS);
}

int bfs_exists(hid_t loc, const char *name, hid_t lapl) {
	return H5Lexists(loc, name, lapl) > 0;
}

hid_t bfs_gopen(hid_t loc, const char *name, hid_t lapl) {
	hid_t gapl = H5Pcreate(H5P_GROUP_ACCESS);
	if (gapl < 0) return -1;
	H5L_elink_traverse_t cb;
	void *op;
	if (H5Pget_elink_cb(lapl, &cb, &op) < 0 || H5Pset_elink_cb(gapl, cb, op) < 0) {
		H5Pclose(gapl);
		return -1;
	}
	hid_t g = H5Gopen2(loc, name, gapl);
	H5Pclose(gapl);
	return g;
}

int bfs_gcount(hid_t g, unsigned long long *n) {
	H5G_info_t info;
	if (H5Gget_info(g, &info) < 0) return -1;
	*n = info.nlinks;
	return 0;
}

long bfs_gname(hid_t g, unsigned long long i, char *buf, size_t cap) {
	return (long)H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)i, buf, cap, H5P_DEFAULT);
}

// bfs_file_ino gives the device and inode of the file libhdf5 opened (sec2 driver).
int bfs_file_ino(hid_t f, unsigned long long *dev, unsigned long long *ino) {
	void *h = NULL;
	if (H5Fget_vfd_handle(f, H5P_DEFAULT, &h) < 0 || h == NULL) return -1;
	struct stat st;
	if (fstat(*(int *)h, &st) < 0) return -1;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

// bfs_layout describes what a dataset reads besides its own file: the number of external
// raw storage files (H5Pset_external) and of virtual mappings (VDS).
int bfs_layout(hid_t dset, int *external, size_t *virt) {
	hid_t dcpl = H5Dget_create_plist(dset);
	if (dcpl < 0) return -1;
	*external = H5Pget_external_count(dcpl);
	*virt = 0;
	if (H5Pget_layout(dcpl) == H5D_VIRTUAL && H5Pget_virtual_count(dcpl, virt) < 0) {
		H5Pclose(dcpl);
		return -1;
	}
	H5Pclose(dcpl);
	return *external < 0 ? -1 : 0;
}

int bfs_external_name(hid_t dset, unsigned i, char *buf, size_t cap) {
	hid_t dcpl = H5Dget_create_plist(dset);
	if (dcpl < 0) return -1;
	off_t off;
	hsize_t size;
	buf[0] = 0;
	herr_t r = H5Pget_external(dcpl, i, cap, buf, &off, &size);
	H5Pclose(dcpl);
	buf[cap - 1] = 0;
	return r < 0 ? -1 : 0;
}

// bfs_virtual_source gives the file and dataset names of virtual mapping i.
int bfs_virtual_source(hid_t dset, size_t i, char *file, char *name, size_t cap) {
	hid_t dcpl = H5Dget_create_plist(dset);
	if (dcpl < 0) return -1;
	ssize_t a = H5Pget_virtual_filename(dcpl, i, file, cap);
	ssize_t b = H5Pget_virtual_dsetname(dcpl, i, name, cap);
	H5Pclose(dcpl);
	if (a < 0 || b < 0 || (size_t)a >= cap || (size_t)b >= cap) return -1;
	return 0;
}
