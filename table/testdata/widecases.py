#!/usr/bin/python3
"""Writes msgpack runs of a wide array field, each with the array the field must read as.

Usage: widecases.py OUTDIR WIDTH. For each case NAME: NAME/run.msgpack (a run file, arrays
stored msgpack-numpy style: maps of nd, type, kind, shape and data, the data a bin of the raw
bytes) and NAME.expect.npy (numpy's own reading of the valid documents: the rows stacked and
converted with astype to the declared dtype). The expected array is computed from the
documents here, independently of brokerfs.
"""
import os
import sys

import msgpack
import numpy as np

UID = "f0000000-0000-4000-8000-00000000000%d"
out, W = sys.argv[1], int(sys.argv[2])


def nd(a, dtype=None, data=None):
    a = np.ascontiguousarray(a, dtype=dtype)
    return {b"nd": True, b"type": a.dtype.str, b"kind": b"", b"shape": list(a.shape),
            b"data": a.tobytes() if data is None else data}


def row(k):
    return k + np.arange(W, dtype=np.float64) / 1024  # exact in float32 too for small k


def page(first, rows, col, note, desc="d1", t0=100.0):
    """An event_page of rows events; col(k) gives row k's value (or the whole column)."""
    n = len(rows)
    return {"time": [t0 + k for k in rows], "uid": ["e%d" % k for k in rows],
            "seq_num": [k + 1 for k in rows], "descriptor": desc,
            # an odd-length string first: the payloads sit at odd file offsets
            "data": {"note": [note] * n, "spec": col},
            "timestamps": {"note": [1.0] * n, "spec": [2.0] * n}, "filled": {}}


def descriptor(uid, d="d1"):
    return ["descriptor", {"uid": d, "run_start": uid, "time": 1.0, "name": "primary",
                           "data_keys": {"spec": {"dtype": "array", "shape": [W], "source": "s", "dtype_numpy": "<f8"},
                                         "note": {"dtype": "string", "shape": [], "source": "s"}}}]


def write(name, i, pages, cut=0, descs=("d1",), late=(), cutmid=0):
    """pages: list of (page document, rows it contributes or None when brokerfs skips it).
    descs are written before the pages, late after the first page; with several descriptors
    the expected rows are in time order (a stable sort of the rows of each descriptor in
    turn, as databroker merges them). cut cuts the file's end (no stop); cutmid cuts the last
    page by as many bytes, the stop following it."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    uid = UID % i
    docs = [["start", {"uid": uid, "time": 1.0}]] + [descriptor(uid, x) for x in descs]
    evs = [["event_page", p] for p, _ in pages]
    docs += evs[:1] + [descriptor(uid, x) for x in late] + evs[1:]
    if not cut:
        docs.append(["stop", {"uid": "s", "run_start": uid, "time": 9.0, "exit_status": "success"}])
    raws = [msgpack.packb(x, use_bin_type=True) for x in docs]
    if cutmid:
        last = max(j for j, x in enumerate(docs) if x[0] == "event_page")
        raws[last] = raws[last][:-cutmid]
    raw = b"".join(raws)
    if cut:
        raw = raw[:-cut]
    with open(os.path.join(d, "run.msgpack"), "wb") as f:
        f.write(raw)
    # numpy's reading of what is valid: every row that a kept page holds, astype '<f8'.
    kept = [(p, rs) for p, rs in pages if rs is not None]
    order = list(descs) + list(late)
    kept.sort(key=lambda x: order.index(x[0]["descriptor"]))  # stable: stored order per descriptor
    rows = [r for _, rs in kept for r in rs]
    times = [t for p, _ in kept for t in p["time"]]
    if len(order) > 1:  # one descriptor's rows stay in stored order
        rows = [rows[j] for j in np.argsort(np.array(times), kind="stable")]
    np.save(os.path.join(out, name + ".expect.npy"), np.stack(rows).astype("<f8"))


def per_row(ks, dtype, note="abc"):
    return page(ks[0], ks, [nd(row(k), dtype) for k in ks], note), [row(k).astype(dtype) for k in ks]


def whole(ks, dtype, note="abcde"):
    a = np.stack([row(k) for k in ks]).astype(dtype)
    return page(ks[0], ks, nd(a), note), list(a)


R = 100  # rows per page: a page of W float64 rows is R*W*8 bytes
pages = lambda start: [list(range(s, s + R)) for s in range(start, start + 3 * R, R)]
p = pages(0)
# Payloads of the field's dtype, one array per row and one array per page.
write("equal", 1, [per_row(p[0], "<f8"), whole(p[1], "<f8"), per_row(p[2], "<f8", "x")])
# Payloads of other dtypes: converted (float32, int32, big-endian float64, uint16).
write("unequal", 2, [per_row(p[0], "<f4"), whole(p[1], ">f8"), per_row(p[2], ">i4"),
                     whole(list(range(3 * R, 4 * R)), "<u2")])
# Page arrays whose lengths lie: 8 bytes over what the shape says, and an array of fewer
# rows than the page: each such page is skipped, the others read.
over = page(0, p[0], nd(np.stack([row(k) for k in p[0]])), "abc")
over["data"]["spec"][b"data"] += b"\0" * 8
few = page(0, p[2], nd(np.stack([row(k) for k in p[2][:-1]])), "abc")
good = per_row(list(range(3 * R, 4 * R)), "<f8")
write("lying", 3, [(over, None), (few, None), good, per_row(p[1], "<f8")])
# One row's array a byte short of its shape: numpy cannot read it, and the field fails (no
# .expect.npy is written).
short = page(R, p[1], [nd(row(k)) for k in p[1]], "abc")
short["data"]["spec"][7][b"data"] = short["data"]["spec"][7][b"data"][:-1]
try:
    np.frombuffer(short["data"]["spec"][7][b"data"], "<f8").reshape(W)
    sys.exit("numpy reads the short row")
except ValueError:
    pass
write("lyingrow", 5, [per_row(p[0], "<f8"), (short, None)])
os.remove(os.path.join(out, "lyingrow.expect.npy"))
# A file cut in the middle of its last page's payload: the complete pages read.
write("truncated", 4, [per_row(p[0], "<f8"), whole(p[1], "<f8"), (per_row(p[2], "<f8")[0], None)], cut=W * 8 * 30)
# Two descriptors of the stream before any event, their pages interleaved in time (rows of
# d2 fall between rows of d1), and a second descriptor that comes after the first page.
def in_desc(ks, desc, t0):
    a = np.stack([row(k) for k in ks])
    return page(ks[0], ks, nd(a), "ab", desc, t0), list(a)


write("several", 6, [in_desc(p[0], "d1", 100.0), in_desc(list(range(500, 600)), "d2", -399.5),
                     in_desc(p[1], "d1", 100.0), in_desc(list(range(600, 700)), "d2", -399.5)],
      descs=("d1", "d2"))
write("late", 7, [in_desc(p[0], "d1", 100.0), in_desc(list(range(500, 600)), "d2", -399.5),
                  in_desc(p[1], "d1", 100.0)], late=("d2",))
# A page cut in the middle of its payload, the stop right after it: the page's length runs into
# the stop, a stretch the index passes over (one log line); the complete pages read.
write("cutmid", 8, [per_row(p[0], "<f8"), whole(p[1], "<f8"), (per_row(p[2], "<f8")[0], None)], cutmid=W * 8 * 30)
