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

// bfs_chunk_layout reports whether dset is chunked with no filters other than deflate and
// shuffle (then 1: cdims gets the chunk dims, ids the filters in pipeline order, *nfilt their
// number), 0 for any other layout or filter, -1 on error. Such chunks can be read raw
// (H5Dread_chunk) and decoded in Go, outside libhdf5's global lock.
int bfs_chunk_layout(hid_t dset, int rank, unsigned long long *cdims, int *nfilt, int *ids, int maxf) {
	hid_t dcpl = H5Dget_create_plist(dset);
	if (dcpl < 0) return -1;
	int r = 0;
	if (H5Pget_layout(dcpl) != H5D_CHUNKED || H5Pget_chunk(dcpl, rank, (hsize_t *)cdims) != rank) goto out;
	int n = H5Pget_nfilters(dcpl);
	if (n < 0 || n > maxf) goto out;
	for (int i = 0; i < n; i++) {
		unsigned flags, cfg, vals[8];
		size_t nv = 8;
		char name[64];
		H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nv, vals, sizeof name, name, &cfg);
		if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE) goto out;
		ids[i] = (int)id;
	}
	*nfilt = n;
	r = 1;
out:
	H5Pclose(dcpl);
	return r;
}

// bfs_read_chunk reads the raw (still filtered) chunk at offset into buf of cap bytes; *n is
// its size. It returns 0, 1 when the chunk is not allocated or does not fit buf (the caller
// falls back to H5Dread), -1 on error.
int bfs_read_chunk(hid_t dset, const unsigned long long *offset, void *buf, size_t cap, size_t *n, unsigned *mask) {
	// Not H5Dget_chunk_storage_size: for a dataset without filters it gives the nominal size of
	// a chunk never written, which H5Dread_chunk then fails on.
	hsize_t size = 0;
	haddr_t addr = HADDR_UNDEF;
	unsigned fm = 0;
	if (H5Dget_chunk_info_by_coord(dset, (const hsize_t *)offset, &fm, &addr, &size) < 0 || addr == HADDR_UNDEF || size == 0) {
		H5Eclear2(H5E_DEFAULT);
		return 1;
	}
	if (size > cap) {
		*n = (size_t)size;
		return 1;
	}
	uint32_t m = 0;
	if (H5Dread_chunk(dset, H5P_DEFAULT, (const hsize_t *)offset, &m, buf) < 0) return -1;
	*mask = m;
	*n = (size_t)size;
	return 0;
}

// bfs_raw_layout reports how a dataset's bytes are stored when they can be read straight from
// the file: 1 chunked without filters, 2 contiguous and allocated (*addr its address, *size its
// storage size), 0 otherwise (compact, virtual, external storage, filters, not allocated), -1
// on error.
int bfs_raw_layout(hid_t dset, unsigned long long *addr, unsigned long long *size) {
	hid_t dcpl = H5Dget_create_plist(dset);
	if (dcpl < 0) return -1;
	int r = 0;
	H5D_layout_t l = H5Pget_layout(dcpl);
	if (H5Pget_external_count(dcpl) != 0) goto out;
	if (l == H5D_CHUNKED) {
		if (H5Pget_nfilters(dcpl) == 0) r = 1;
	} else if (l == H5D_CONTIGUOUS) {
		haddr_t a = H5Dget_offset(dset);
		if (a == HADDR_UNDEF) {
			H5Eclear2(H5E_DEFAULT);
			goto out;
		}
		*addr = (unsigned long long)a;
		*size = (unsigned long long)H5Dget_storage_size(dset);
		r = 2;
	}
out:
	H5Pclose(dcpl);
	return r;
}

// bfs_userblock gives the size of a file's user block: chunk and dataset addresses are
// relative to its end.
int bfs_userblock(hid_t f, unsigned long long *ub) {
	hid_t fcpl = H5Fget_create_plist(f);
	if (fcpl < 0) return -1;
	hsize_t n = 0;
	herr_t r = H5Pget_userblock(fcpl, &n);
	H5Pclose(fcpl);
	*ub = (unsigned long long)n;
	return r < 0 ? -1 : 0;
}

// bfs_vfd_fd gives the descriptor libhdf5 reads the file through (sec2 driver), or -1.
int bfs_vfd_fd(hid_t f) {
	void *h = NULL;
	hid_t fapl = H5Fget_access_plist(f);
	if (fapl < 0) return -1;
	hid_t drv = H5Pget_driver(fapl);
	H5Pclose(fapl);
	if (drv < 0 || drv != H5FD_SEC2) return -1;
	if (H5Fget_vfd_handle(f, H5P_DEFAULT, &h) < 0 || h == NULL) return -1;
	return *(int *)h;
}

// bfs_chunk_addr gives the file address, stored size and filter mask of the chunk at offset:
// 0, or 1 when the chunk is not allocated (it reads as fill values), -1 on error.
int bfs_chunk_addr(hid_t dset, const unsigned long long *offset, unsigned long long *addr, unsigned long long *size, unsigned *mask) {
	haddr_t a = HADDR_UNDEF;
	hsize_t s = 0;
	unsigned m = 0;
	if (H5Dget_chunk_info_by_coord(dset, (const hsize_t *)offset, &m, &a, &s) < 0) return -1;
	if (a == HADDR_UNDEF || s == 0) return 1;
	*addr = (unsigned long long)a;
	*size = (unsigned long long)s;
	*mask = m;
	return 0;
}

// bfs_dset_file_ino gives the device and inode of the file a dataset is in (which an
// external link makes another than the file it was opened from).
int bfs_dset_file_ino(hid_t dset, unsigned long long *dev, unsigned long long *ino) {
	hid_t f = H5Iget_file_id(dset);
	if (f < 0) return -1;
	int r = bfs_file_ino(f, dev, ino);
	H5Fclose(f);
	return r;
}
