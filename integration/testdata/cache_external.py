#!/usr/bin/python3
"""Check a mounted external .npy against h5py's frames through np.load(mmap_mode="r").

Usage: cache_external.py EXPECTED.npy MOUNTED.npy all|first-missing

EXPECTED.npy is what h5py read from the HDF5 files (testdata/external_run.py): shape
(5, 2, Y, X), points 0-2 in the first file, 3-4 in the second.
all:            np.load(MOUNTED, mmap_mode="r")[k] equals EXPECTED[k] for every k, each on a
                fresh map, highest k first.
first-missing:  the first file is missing: np.load(MOUNTED, mmap_mode="r") opens (dtype and
                shape right), points 3 and 4 read equal through the map, and a pread of each
                of points 0-2 fails with EIO (never a map access: that would be SIGBUS).
Prints one line; exits 1 with the difference otherwise.
"""
import errno
import os
import sys

import numpy as np


def fail(msg):
    print(msg)
    sys.exit(1)


def main():
    want = np.load(sys.argv[1])
    path, mode = sys.argv[2], sys.argv[3]
    try:
        m = np.load(path, mmap_mode="r")
    except OSError as e:
        fail(f"np.load({path}, mmap_mode='r'): {e}")
    if m.dtype != want.dtype or m.shape != want.shape:
        fail(f"{path}: {m.dtype} {m.shape}, want {want.dtype} {want.shape}")
    offset, row = m.offset, want[0].nbytes
    if offset % 4096:
        print(f"note: data offset {offset} is not 4096-aligned")
    good = range(len(want) - 1, -1, -1) if mode == "all" else (4, 3)
    for k in good:
        m = np.load(path, mmap_mode="r")
        if not np.array_equal(np.asarray(m[k]), want[k]):
            fail(f"{path}: mmap point {k} differs from h5py's frames")
        del m
    if mode == "first-missing":
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            for k in (0, 1, 2):
                try:
                    b = os.pread(fd, row, offset + k * row)
                except OSError as e:
                    if e.errno != errno.EIO:
                        fail(f"{path}: point {k} (its file is missing): {e}, want EIO")
                    continue
                fail(f"{path}: point {k} (its file is missing) read {len(b)} bytes, want EIO")
        finally:
            os.close(fd)
    print(f"{path}: {mode}: mmap points {list(good)} equal h5py's; data at offset {offset}")


if __name__ == "__main__":
    main()
