"""A live SWMR writer for handlers/hdf5's AD_HDF5_SWMR test.

usage: swmr_writer.py FILE

Creates FILE (libver latest) with an extendable uint16 dataset /entry/data/data of 16x8
frames, starts SWMR mode, writes 3 frames and prints "ready"; then for each line N read
from stdin appends N frames, flushes and prints "ready". Frame i holds i*1000 + k at flat
position k.
"""
import sys

import h5py
import numpy as np

f = h5py.File(sys.argv[1], "w", libver="latest")
d = f.create_dataset("entry/data/data", shape=(0, 16, 8), maxshape=(None, 16, 8),
                     chunks=(1, 16, 8), dtype="<u2", compression="gzip")
f.swmr_mode = True
n = 0


def append(k):
    global n
    for _ in range(k):
        d.resize((n + 1, 16, 8))
        d[n] = (np.arange(16 * 8) + n * 1000).reshape(16, 8)
        n += 1
    d.flush()
    print("ready", flush=True)


append(3)
for line in sys.stdin:
    append(int(line))
f.close()
