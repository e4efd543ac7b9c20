#!/usr/bin/python3
"""Chunked files for handlers/hdf5's direct chunk read test: gen_chunks.py DIR writes
DIR/<name>.h5 with /entry/data/data and DIR/<name>.npy with the same array (numpy's values,
the expected bytes), for chunk layouts the direct path must get right."""
import os
import sys

import h5py
import numpy as np

d = sys.argv[1]
rng = np.random.default_rng(7)
cases = {
    # name: (shape, dtype, chunks, filters)
    "gzip_frame": ((7, 5, 6), "<u2", (1, 5, 6), dict(compression="gzip")),
    "gzip_shuffle": ((7, 5, 6), "<i4", (1, 5, 6), dict(compression="gzip", shuffle=True)),
    "shuffle_only": ((5, 4, 3), "<f8", (2, 4, 3), dict(shuffle=True)),
    "multi_frame_edges": ((9, 7, 5), "<u2", (4, 3, 2), dict(compression="gzip", compression_opts=9, shuffle=True)),
    "big_endian": ((6, 4, 4), ">u4", (3, 2, 4), dict(compression="gzip", shuffle=True)),
    "plain_chunks": ((6, 3, 3), "<f4", (2, 2, 2), {}),
    "lzf": ((4, 3, 3), "<u2", (1, 3, 3), dict(compression="lzf")),  # not deflate: H5Dread
    "one_byte": ((5, 3, 3), "|u1", (2, 3, 3), dict(compression="gzip", shuffle=True)),
}
for name, (shape, dtype, chunks, filters) in cases.items():
    a = rng.integers(0, 60000, size=shape).astype(dtype)
    with h5py.File(os.path.join(d, name + ".h5"), "w") as f:
        f.create_dataset("/entry/data/data", data=a, chunks=chunks, **filters)
    np.save(os.path.join(d, name + ".npy"), a.astype(a.dtype.newbyteorder("<")))
# Missing chunks: only the first frames written; the rest reads as the fill value 7.
with h5py.File(os.path.join(d, "sparse.h5"), "w") as f:
    ds = f.create_dataset("/entry/data/data", shape=(6, 3, 3), dtype="<u2", chunks=(1, 3, 3), compression="gzip", fillvalue=7)
    ds[0:2] = np.arange(18, dtype="<u2").reshape(2, 3, 3)
    a = ds[...]
np.save(os.path.join(d, "sparse.npy"), a)
