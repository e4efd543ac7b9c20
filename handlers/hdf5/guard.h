#ifndef BFS_GUARD_H
#define BFS_GUARD_H
#include <stdint.h>
#include <hdf5.h>
int bfs_guard_plist(hid_t plist, uintptr_t guard, int dapl);
hid_t bfs_plist(int dapl);
int bfs_exists(hid_t loc, const char *name, hid_t lapl);
hid_t bfs_gopen(hid_t loc, const char *name, hid_t lapl);
int bfs_gcount(hid_t g, unsigned long long *n);
long bfs_gname(hid_t g, unsigned long long i, char *buf, size_t cap);
int bfs_file_ino(hid_t f, unsigned long long *dev, unsigned long long *ino);
int bfs_layout(hid_t dset, int *external, size_t *virt);
int bfs_external_name(hid_t dset, unsigned i, char *buf, size_t cap);
int bfs_virtual_source(hid_t dset, size_t i, char *file, char *name, size_t cap);

int bfs_chunk_layout(hid_t dset, int rank, unsigned long long *cdims, int *nfilt, int *ids, int maxf);
int bfs_read_chunk(hid_t dset, const unsigned long long *offset, void *buf, size_t cap, size_t *n, unsigned *mask);
int bfs_raw_layout(hid_t dset, unsigned long long *addr, unsigned long long *size);
int bfs_userblock(hid_t f, unsigned long long *ub);
int bfs_vfd_fd(hid_t f);
int bfs_chunk_addr(hid_t dset, const unsigned long long *offset, unsigned long long *addr, unsigned long long *size, unsigned *mask);
int bfs_dset_file_ino(hid_t dset, unsigned long long *dev, unsigned long long *ino);
#endif
