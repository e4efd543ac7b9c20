#!/usr/bin/python3
"""Write one run full of edge cases, as suitcase-jsonl and as suitcase-msgpack would.

Usage: edge_run.py DIR

Writes DIR/edge.jsonl and DIR/edge.msgpack: the same documents under different uids and
scan_ids (the msgpack run is the newer one). What they hold:

- primary made of two descriptors (the second without a "name", so "primary" by default) whose
  events interleave in time, with a tie; fields that only one descriptor has (missing values);
  events from one descriptor as event documents, from the other as an event_page;
- floats at the edges (NaN, +-Infinity, -0.0, denormals, the largest double, 0.1, 1/3), an int
  in a number field, integer fields with a fractional and an integral float, 2**53+1;
- strings with commas, quotes, line breaks, leading spaces, "NA", non-ASCII and astral
  characters, and empty strings; a field name with spaces and one with a comma;
- arrays: 1-D floats with NaN, 1-D strings, 1-D booleans, 0-length, 2-D (no .csv), a declared
  big-endian dtype_numpy, and a ragged field (EIO);
- an external field with its resource and datums (not served as a file);
- a baseline stream, configuration with a NaN, a start document with NaN metadata.

In the msgpack file some values are numpy arrays and scalars, encoded as msgpack-numpy does
(maps with binary keys nd, type, kind, shape, data), including a big-endian array.
"""

import json
import math
import os
import sys
import uuid

import msgpack
import numpy as np


def key(dtype, shape=(), **extra):
    return {"dtype": dtype, "shape": list(shape), "source": "SIM:" + dtype, **extra}


def documents(scan_id, t0, numpy_values):
    """The run's documents as (name, doc) pairs; numpy_values: use numpy arrays and scalars."""
    nd = (lambda v, dt: np.array(v, dtype=dt)) if numpy_values else (lambda v, dt: v)
    uid = str(uuid.uuid4())
    start = {"uid": uid, "time": t0, "scan_id": scan_id, "plan_name": "edge",
             "sample": "edge cases", "temperature": math.nan, "motors": ["x"]}
    keys1 = {
        "x": key("number"),
        "n": key("integer"),
        "nf": key("integer"),
        "nf_integral": key("integer"),
        "big": key("integer"),
        "flag": key("boolean"),
        "label": key("string"),
        "Ion Ch 1": key("number"),
        "a,b": key("number"),
        "vec": key("array", [3]),
        "words": key("array", [2]),
        "bits": key("array", [2]),
        "empty": key("array", [0]),
        "img": key("array", [2, 2]),
        "u16": key("array", [2], dtype_numpy=">u2"),
        "be": key("array", [2]),
        "ragged": key("array", [2]),
        "cam": key("array", [2, 2], external="FILESYSTEM:"),
    }
    config = {"det": {"data": {"det_gain": 4, "det_offset": math.nan},
                      "timestamps": {"det_gain": t0, "det_offset": t0},
                      "data_keys": {"det_gain": key("integer"), "det_offset": key("number")}}}
    d1 = {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 1, "name": "primary",
          "data_keys": keys1, "configuration": config, "hints": {"det": {"fields": ["x"]}},
          "object_keys": {"det": sorted(keys1)}}
    d2 = {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 1.5,
          "data_keys": {"x": key("number"), "y": key("number")},
          "configuration": {}, "object_keys": {"sim": ["x", "y"]}}
    base = {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 0.5, "name": "baseline",
            "data_keys": {"temp": key("number"), "mode": key("string")}, "configuration": {}}
    resource = {"uid": str(uuid.uuid4()), "spec": "NPY_SEQ", "root": "/nonexistent",
                "resource_path": "cam", "resource_kwargs": {}, "path_semantics": "posix",
                "run_start": uid}

    floats = [1.5, math.nan, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3]
    labels = ["a,b", 'quote "q"', "line\nbreak", "", "  lead", "NA", "ünïcødé ✓ 🙂"]
    rows1 = []  # (time, data)
    for i in range(7):
        data = {
            "x": floats[i] if i != 3 else 2,  # an int in a number field
            "nf": [1, 2.5, 3][i % 3],
            "nf_integral": [1, 3.0][i % 2],
            "big": 2**53 + 1 - i,
            "flag": i % 2 == 0,
            "label": labels[i],
            "Ion Ch 1": [math.inf, -math.inf, 7.25][i % 3],
            "a,b": float(i),
            "vec": nd([0.5 * i, math.nan if i == 2 else i, -1.0], "<f8"),
            "words": ["w%d" % i, "x" * (i % 3)],
            "bits": [i % 2 == 0, True],
            "empty": [],
            "img": nd([[i, 2], [3, 4]], "<u2"),
            "u16": [i, 65535],
            "be": nd([i, -i], ">i4"),
            "ragged": [1] * (2 if i < 4 else 3),
            "cam": f"{resource['uid']}/{i}",
        }
        if i != 4:  # event 4 lacks n: 0 in an integer field
            data["n"] = np.int64(-i) if numpy_values else -i
        if i == 5:
            del data["label"]  # missing: '' in a string field
        rows1.append((t0 + 2 + i, data))
    # descriptor 2: times interleave with descriptor 1's, one ties with row 2 (t0 + 4)
    times2 = [t0 + 2.5, t0 + 4, t0 + 100, t0 + 3.5]
    page = {"descriptor": d2["uid"], "uid": [str(uuid.uuid4()) for _ in times2],
            "time": times2, "seq_num": [1, 2, 3, 4],
            "data": {"x": [10.0, 20.0, 30.0, 40.0], "y": nd([-1.0, -2.0, math.nan, -4.0], "<f8")},
            "timestamps": {"x": [t - 0.01 for t in times2], "y": [t - 0.02 for t in times2]},
            "filled": {}}

    docs = [("start", start), ("descriptor", base), ("descriptor", d1), ("resource", resource)]
    for i, (t, data) in enumerate(rows1):
        ts = {k: t - 0.001 * (j + 1) for j, k in enumerate(sorted(data)) if k != "flag"}
        docs.append(("datum", {"datum_id": data["cam"], "resource": resource["uid"],
                               "datum_kwargs": {"index": i}}))
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": d1["uid"], "time": t,
                               "seq_num": i + 1, "data": data, "timestamps": ts,
                               "filled": {"cam": False}}))
        if i == 1:
            docs.append(("descriptor", d2))
            docs.append(("event_page", page))
    for i in range(2):
        t = t0 + 0.6 + 20 * i
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": base["uid"], "time": t,
                               "seq_num": i + 1,
                               "data": {"temp": 295.0 + i, "mode": ["auto", "manuel"][i]},
                               "timestamps": {"temp": t, "mode": t}, "filled": {}}))
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 200,
                          "exit_status": "success", "reason": "",
                          "num_events": {"primary": 11, "baseline": 2}}))
    return docs


def to_json(v):
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    if isinstance(v, (np.ndarray, np.generic)):
        return v.tolist()
    return v


def msgpack_numpy(obj):
    """msgpack default hook: numpy values as msgpack-numpy encodes them."""
    if isinstance(obj, np.ndarray):
        return {b"nd": True, b"type": obj.dtype.str, b"kind": b"", b"shape": list(obj.shape),
                b"data": obj.tobytes()}
    if isinstance(obj, np.generic):
        return {b"nd": False, b"type": obj.dtype.str, b"kind": b"", b"data": obj.tobytes()}
    raise TypeError(f"cannot pack {type(obj)}")


def main():
    out = sys.argv[1]
    t0 = 1_700_000_000.25
    with open(os.path.join(out, "edge.jsonl"), "w") as f:
        for name, doc in documents(7001, t0, numpy_values=False):
            f.write(json.dumps([name, to_json(doc)]) + "\n")
    with open(os.path.join(out, "edge.msgpack"), "wb") as f:
        for name, doc in documents(7002, t0 + 1000, numpy_values=True):
            f.write(msgpack.packb([name, doc], default=msgpack_numpy, use_bin_type=True))


if __name__ == "__main__":
    main()
