#!/usr/bin/python3
"""Files for handlers/hdf5's stored-read test: gen_stored.py DIR writes DIR/<name>.h5 with
/entry/data/data, DIR/<name>.npy with the array numpy reads from it (h5py's values,
little-endian: the expected bytes) and DIR/manifest.json: {name: {"stored": bool}}, whether
whole frames are kept in the file as those bytes (no filters, little-endian or one-byte, chunks
of whole frames, no user block), which is what handlers/hdf5 reads by pread.

truncated.h5 is raw_frames.h5 cut in the middle of its last chunk, with the superblock's
end-of-file address set to the new size, so that libhdf5 opens it and the last frame's chunk
lies past the end of the file; truncated.npy holds the frames before it."""
import json
import os
import struct
import sys

import h5py
import numpy as np

d = sys.argv[1]
rng = np.random.default_rng(11)
manifest = {}


def save(name, a, stored):
    np.save(os.path.join(d, name + ".npy"), a.astype(a.dtype.newbyteorder("<")))
    manifest[name] = {"stored": stored}


cases = {
    # name: (shape, dtype, create_dataset kwargs, stored)
    "raw_frames": ((7, 33, 17), "<u2", dict(chunks=(1, 33, 17)), True),
    "raw_multi": ((10, 8, 6), "<i4", dict(chunks=(3, 8, 6)), True),  # 3 frames a chunk, an edge chunk
    "contiguous": ((6, 20, 10), "<f8", {}, True),
    "contiguous_u1": ((5, 7, 3), "|u1", {}, True),
    "raw_1d": ((40,), "<u2", dict(chunks=(8,)), True),
    "big_endian": ((5, 9, 4), ">u2", dict(chunks=(1, 9, 4)), False),
    "big_endian_contiguous": ((5, 9, 4), ">i4", {}, False),
    "gzip": ((5, 9, 4), "<u2", dict(chunks=(1, 9, 4), compression="gzip"), False),
    "shuffle": ((5, 9, 4), "<u2", dict(chunks=(1, 9, 4), shuffle=True), False),
    "part_frames": ((4, 32, 16), "<u2", dict(chunks=(1, 16, 8)), False),  # chunks of part frames
}
for name, (shape, dtype, kw, stored) in cases.items():
    a = rng.integers(0, 250, size=shape).astype(dtype)
    with h5py.File(os.path.join(d, name + ".h5"), "w") as f:
        f.create_dataset("/entry/data/data", data=a, **kw)
    with h5py.File(os.path.join(d, name + ".h5"), "r") as f:
        save(name, f["/entry/data/data"][...], stored)

# Chunks written last frame first: they lie in the file in the reverse order of the frames, so
# a range across frames is pieces of the file that are not end to end.
a = rng.integers(0, 60000, size=(6, 9, 7)).astype("<u2")
with h5py.File(os.path.join(d, "reversed.h5"), "w") as f:
    ds = f.create_dataset("/entry/data/data", shape=a.shape, dtype=a.dtype, chunks=(1, 9, 7))
    for k in reversed(range(a.shape[0])):
        ds[k] = a[k]
with h5py.File(os.path.join(d, "reversed.h5"), "r") as f:
    ds = f["/entry/data/data"]
    offs = [ds.id.get_chunk_info_by_coord((k, 0, 0)).byte_offset for k in range(a.shape[0])]
    assert all(offs[k] > offs[k + 1] for k in range(len(offs) - 1)), offs
    save("reversed", ds[...], True)

# A user block before the HDF5 data: addresses are relative to its end (H5Dread then).
a = rng.integers(0, 60000, size=(4, 6, 5)).astype("<u2")
with h5py.File(os.path.join(d, "userblock.h5"), "w", userblock_size=512) as f:
    f.create_dataset("/entry/data/data", data=a, chunks=(1, 6, 5))
with h5py.File(os.path.join(d, "userblock.h5"), "r") as f:
    save("userblock", f["/entry/data/data"][...], False)

# Chunks never written read as the fill value (H5Dread); written ones are stored.
with h5py.File(os.path.join(d, "unwritten.h5"), "w") as f:
    ds = f.create_dataset("/entry/data/data", shape=(6, 4, 4), dtype="<u2", chunks=(1, 4, 4), fillvalue=9)
    ds[0:2] = np.arange(32, dtype="<u2").reshape(2, 4, 4)
    ds[4] = np.full((4, 4), 3, dtype="<u2")
with h5py.File(os.path.join(d, "unwritten.h5"), "r") as f:
    save("unwritten", f["/entry/data/data"][...], True)

# truncated.h5: raw_frames.h5 cut inside its last chunk.
src = os.path.join(d, "raw_frames.h5")
with h5py.File(src, "r") as f:
    ds = f["/entry/data/data"]
    n = ds.shape[0]
    last = ds.id.get_chunk_info_by_coord((n - 1, 0, 0))
    whole = ds[: n - 1]
    end = max(ds.id.get_chunk_info(i).byte_offset + ds.id.get_chunk_info(i).size for i in range(n))
raw = open(src, "rb").read()
assert raw[:8] == b"\x89HDF\r\n\x1a\n" and raw[8] == 0, "want a version 0 superblock"
assert last.byte_offset + last.size == end, "want the last frame's chunk at the end of the data"
cut = last.byte_offset + last.size // 2
b = bytearray(raw[:cut])
struct.pack_into("<Q", b, 40, cut)  # superblock v0: end-of-file address
open(os.path.join(d, "truncated.h5"), "wb").write(bytes(b))
np.save(os.path.join(d, "truncated.npy"), whole)
manifest["truncated"] = {"stored": True, "frames_ok": n - 1}

json.dump(manifest, open(os.path.join(d, "manifest.json"), "w"))
