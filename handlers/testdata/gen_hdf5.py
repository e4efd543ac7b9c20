"""Write the HDF5 files handlers/hdf5 tests read, as detector writers lay them out.

usage: gen_hdf5.py OUTDIR

Each case's values also go to OUTDIR/<name>.full.bin (the whole dataset or Eiger stack as
little-endian C-order bytes, as numpy holds it) and OUTDIR/manifest.json lists
{"name", "file", "dtype", "shape"} so tests compare what they read with numpy's values.
Eiger series: eiger_<kind>_<seq>_master.h5 linking eiger_<kind>_<seq>_data_00000N.h5, with
kind raw, lz4 (filter 32004, Debian's hdf5-filter-plugin) and bslz4 (filter 32008,
bitshuffle + LZ4, chunks encoded here with numpy and liblz4 and written with
write_direct_chunk, as Dectris' firmware writes them).
"""
import ctypes
import json
import os
import struct
import sys

import h5py
import numpy as np

out = sys.argv[1]
if not h5py.h5z.filter_avail(32004):
    sys.exit("gen_hdf5.py: libhdf5 has no LZ4 filter (32004): apt-get install hdf5-filter-plugin")
rng = np.random.default_rng(11)
manifest = []


def expect(name, fname, arr):
    a = np.ascontiguousarray(arr)
    a = a.astype(a.dtype.newbyteorder("<"))
    with open(os.path.join(out, name + ".full.bin"), "wb") as f:
        f.write(a.tobytes())
    manifest.append({"name": name, "file": fname, "dtype": a.dtype.str, "shape": list(a.shape)})


def ad(name, key, data, **kw):
    fname = name + ".h5"
    with h5py.File(os.path.join(out, fname), "w") as f:
        f.create_dataset(key, data=data, **kw)
    expect(name, fname, data)


frames_u2 = rng.integers(0, 65535, size=(10, 64, 48), dtype=np.uint16)
ad("ad_raw_u2", "entry/data/data", frames_u2)  # contiguous
ad("ad_gzip_u2", "entry/data/data", frames_u2, chunks=(1, 64, 48), compression="gzip", compression_opts=4)
ad("ad_gzip_f4", "entry/data/data", rng.random((9, 32, 40), dtype=np.float32),
   chunks=(1, 32, 40), compression="gzip")
# Chunks that span frames and cut frames, with the shuffle filter too.
ad("ad_multichunk_i4", "entry/data/data", rng.integers(-2**31, 2**31 - 1, size=(11, 20, 30), dtype=np.int32),
   chunks=(3, 7, 16), compression="gzip", shuffle=True)
ad("ad_be_i2", "entry/data/data", rng.integers(-2**15, 2**15 - 1, size=(5, 6, 7)).astype(">i2"))
ad("ad_u1_1d", "entry/data/data", rng.integers(0, 255, size=(12,), dtype=np.uint8))
ad("tpx_u2", "entry/instrument/detector/data", frames_u2[:4])
ad("xsp3_f8", "entry/instrument/detector/data", rng.random((7, 4, 256)) * 1000)
ad("xsp3_onebin", "entry/instrument/detector/data", rng.random((3, 2, 1)))
with h5py.File(os.path.join(out, "no_dataset.h5"), "w") as f:
    f["entry/other"] = np.zeros(3)
# Chunks through a filter no libhdf5 here has (id 32999): the header reads, the data does not.
with h5py.File(os.path.join(out, "unknown_filter.h5"), "w") as f:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((1, 8, 8))
    dcpl.set_filter(32999, h5py.h5z.FLAG_OPTIONAL, ())
    g = f.require_group("entry/data")
    ds = h5py.h5d.create(g.id, b"data", h5py.h5t.py_create(np.dtype("<u2")),
                         h5py.h5s.create_simple((4, 8, 8), (4, 8, 8)), dcpl=dcpl)
    for k in range(4):
        ds.write_direct_chunk((k, 0, 0), b"not really compressed")
with h5py.File(os.path.join(out, "strings.h5"), "w") as f:
    f["entry/data/data"] = np.array([b"a", b"b"])

# Eiger series.
lz4 = ctypes.CDLL("liblz4.so.1")
lz4.LZ4_compressBound.argtypes = [ctypes.c_int]
lz4.LZ4_compress_default.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]


def lz4_block(b):
    cap = lz4.LZ4_compressBound(len(b))
    dst = ctypes.create_string_buffer(cap)
    n = lz4.LZ4_compress_default(b, dst, len(b), cap)
    assert n > 0
    return dst.raw[:n]


def bitshuffle(b, n, elem):
    """bitshuffle's bit transpose of n elements (n % 8 == 0): for each byte j of an element
    and bit k of it, one row of n bits, LSB first."""
    m = np.frombuffer(b, np.uint8).reshape(n, elem)
    bits = np.unpackbits(m, axis=1, bitorder="little")  # column j*8+k
    return np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little").tobytes()


def bslz4_chunk(arr):
    raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    elem, size = arr.dtype.itemsize, arr.size
    block = max(8192 // elem // 8 * 8, 128)
    out = struct.pack(">QI", len(raw), block * elem)
    pos = 0

    def one(n):
        nonlocal out, pos
        c = lz4_block(bitshuffle(raw[pos * elem:(pos + n) * elem], n, elem))
        out += struct.pack(">I", len(c)) + c
        pos += n

    for _ in range(size // block):
        one(block)
    last = size % block - size % block % 8
    if last:
        one(last)
    out += raw[pos * elem:]
    assert pos * elem + (size % 8) * elem == len(raw)
    return out


def eiger(kind, seq, per_file, total, shape, dtype):
    prefix = "eiger_%s" % kind
    stack = rng.integers(0, 2**20, size=(total,) + shape).astype(dtype)
    master = "%s_%d_master.h5" % (prefix, seq)
    with h5py.File(os.path.join(out, master), "w") as m:
        m["entry/instrument/detector/count_time"] = 0.1
        for i, start in enumerate(range(0, total, per_file)):
            part = stack[start:start + per_file]
            dname = "%s_%d_data_%06d.h5" % (prefix, seq, i + 1)
            with h5py.File(os.path.join(out, dname), "w") as d:
                if kind == "raw":
                    d.create_dataset("entry/data/data", data=part, chunks=(1,) + shape)
                elif kind == "lz4":
                    d.create_dataset("entry/data/data", data=part, chunks=(1,) + shape, compression=32004)
                else:
                    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                    dcpl.set_chunk((1,) + shape)
                    dcpl.set_filter(32008, h5py.h5z.FLAG_OPTIONAL, (0, 2, part.dtype.itemsize, 0, 2))
                    space = h5py.h5s.create_simple(part.shape, part.shape)
                    tid = h5py.h5t.py_create(part.dtype)
                    g = d.require_group("entry/data")
                    ds = h5py.h5d.create(g.id, b"data", tid, space, dcpl=dcpl)
                    for k in range(part.shape[0]):
                        ds.write_direct_chunk((k,) + (0,) * len(shape), bslz4_chunk(part[k]))
            m["entry/data/data_%06d" % (i + 1)] = h5py.ExternalLink(dname, "/entry/data/data")
    expect("eiger_%s_%d" % (kind, seq), master, stack)


eiger("raw", 3, 5, 12, (37, 61), "<u4")
eiger("lz4", 3, 5, 12, (37, 61), "<u4")
eiger("bslz4", 3, 5, 12, (37, 61), "<u4")
eiger("bslz4", 4, 4, 4, (64, 64), "<u2")

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f)
