#!/usr/bin/python3
"""Check a mounted external field against the array its files hold.

Usage: external_check.py EXPECTED.npy MOUNTED.npy [ROW...]

For each ROW, np.load(MOUNTED, mmap_mode="r")[ROW] must equal EXPECTED[ROW] (checked first,
before anything else of MOUNTED is read); then np.load(MOUNTED) must equal np.load(EXPECTED)
in dtype, shape and values (bit for bit). Prints one line
on success; exits 1 with the difference otherwise.
"""
import sys

import numpy as np


def fail(msg):
    print(msg)
    sys.exit(1)


def main():
    want = np.load(sys.argv[1])
    path = sys.argv[2]
    # The rows through mmap first, while the mount has filled nothing of this file yet.
    for row in map(int, sys.argv[3:]):
        m = np.load(path, mmap_mode="r")
        if m.dtype != want.dtype or m.shape != want.shape:
            fail(f"{path} (mmap): {m.dtype} {m.shape}, want {want.dtype} {want.shape}")
        if not np.array_equal(np.asarray(m[row]), want[row]):
            fail(f"{path}: mmap row {row} differs")
        del m
    got = np.load(path)
    if got.dtype != want.dtype or got.shape != want.shape:
        fail(f"{path}: {got.dtype} {got.shape}, want {want.dtype} {want.shape}")
    if got.tobytes() != want.tobytes():
        bad = np.argwhere(got != want)
        fail(f"{path}: {len(bad)} values differ, first at {bad[0].tolist()}: "
             f"{got[tuple(bad[0])]} != {want[tuple(bad[0])]}")
    print(f"{path}: mmap rows {sys.argv[3:]} equal; {got.dtype} {got.shape} equal")


if __name__ == "__main__":
    main()
