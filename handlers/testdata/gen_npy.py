"""Write .npy files for handlers/npy tests, each beside the bytes numpy says it holds.

usage: gen_npy.py OUTDIR

Writes OUTDIR/<case>.npy through numpy (np.save or np.lib.format.write_array) and
OUTDIR/<case>.bin, the same values as little-endian C-order bytes, plus OUTDIR/manifest.json:
[{"name", "dtype" (little-endian descr), "shape"}]. NPY_SEQ files seq_<i>.npy are written too.
"""
import json
import os
import sys

import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(7)
cases = []


def le(a):
    """a as the handlers return it: little-endian, C order."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def add(name, arr, version=None):
    path = os.path.join(out, name + ".npy")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version, allow_pickle=False)
    e = le(arr)
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(e.tobytes(order="C"))
    cases.append({"name": name, "dtype": e.dtype.str, "shape": list(arr.shape)})


add("u2_c", rng.integers(0, 65535, size=(3, 5, 7)).astype("<u2"))
add("u2_be", rng.integers(0, 65535, size=(3, 5, 7)).astype(">u2"))
add("f4_fortran", np.asfortranarray(rng.random((4, 6, 5)).astype("<f4")))
add("f8_be_fortran", np.asfortranarray(rng.random((3, 4)).astype(">f8")))
add("i8_v2", rng.integers(-2**40, 2**40, size=(10,)).astype("<i8"), version=(2, 0))
add("i4_v3", rng.integers(-2**30, 2**30, size=(2, 3)).astype(">i4"), version=(3, 0))
add("u1", rng.integers(0, 255, size=(8, 8)).astype("u1"))
add("b1", rng.random((5,)) > 0.5)
add("c16_be", (rng.random((2, 3)) + 1j * rng.random((2, 3))).astype(">c16"))
add("f2", rng.random((4,)).astype("<f2"))
add("scalar", np.array(3.5))
add("empty", np.zeros((0, 4), dtype="<u4"))
for i in range(3):
    np.save(os.path.join(out, "seq_%d.npy" % i), np.full((4, 4), i, dtype="<u2"))

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(cases, f)
