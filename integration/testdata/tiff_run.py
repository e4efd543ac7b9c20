#!/usr/bin/python3
"""Write a run whose event documents hold images, and the arrays a mount's .tif must show.

Usage: tiff_run.py DIR

Writes into DIR:

- cat/images.jsonl: one run (suitcase-jsonl) of 4 events in its primary stream, with fields
    frame   int16 5 x 7 (dtype_numpy "<i2"): ImageJ reads it, PIL as mode I
    stack   uint8 2 x 3 x 4 per event: 2 pages per event
    fine    float64 4 x 6 (no dtype_numpy; JSON floats): not an ImageJ dtype
    x.tif   uint16 2 x 2: a field named like another field's .tif
    x       a number, and x.tif's neighbour in the listing
- expected_<field>.npy for each image field: np.array of the values written, in the field's
  dtype, shape (4, ...) -- computed here from the values, not read back from anything.
- manifest.json: {"uid": ..., "fields": [...]}.
"""
import json
import os
import sys
import uuid

import numpy as np

EVENTS = 4


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(11)
    images = {
        "frame": ({"dtype": "array", "shape": [5, 7], "dtype_numpy": "<i2"},
                  rng.integers(-32768, 32767, size=(EVENTS, 5, 7), dtype=np.int16)),
        "stack": ({"dtype": "array", "shape": [2, 3, 4], "dtype_numpy": "|u1"},
                  rng.integers(0, 255, size=(EVENTS, 2, 3, 4), dtype=np.uint8)),
        "fine": ({"dtype": "array", "shape": [4, 6]},
                 rng.integers(-4000, 4000, size=(EVENTS, 4, 6)) / 16.0),
        "x.tif": ({"dtype": "array", "shape": [2, 2], "dtype_numpy": "<u2"},
                  rng.integers(0, 65535, size=(EVENTS, 2, 2), dtype=np.uint16)),
    }
    uid = str(uuid.uuid4())
    t0 = 1_700_010_000.0
    keys = {f: dict(k, source=f"PV:{f}") for f, (k, _) in images.items()}
    keys["x"] = {"dtype": "number", "shape": [], "source": "PV:x"}
    desc = {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 0.5, "name": "primary",
            "data_keys": keys, "configuration": {}, "hints": {}, "object_keys": {}}
    docs = [("start", {"uid": uid, "time": t0, "scan_id": 7, "plan_name": "count"}),
            ("descriptor", desc)]
    for i in range(EVENTS):
        data = {f: a[i].tolist() for f, (_, a) in images.items()}
        data["x"] = 0.5 * i
        t = t0 + 1 + i
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": desc["uid"], "time": t,
                               "seq_num": i + 1, "data": data,
                               "timestamps": {f: t for f in data}, "filled": {}}))
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 100,
                          "exit_status": "success", "num_events": {"primary": EVENTS}}))
    os.makedirs(os.path.join(out, "cat"), exist_ok=True)
    with open(os.path.join(out, "cat", "images.jsonl"), "w") as f:
        for name, doc in docs:
            f.write(json.dumps([name, doc]) + "\n")
    for f, (_, a) in images.items():
        np.save(os.path.join(out, f"expected_{f}.npy"), a)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"uid": uid, "fields": list(images)}, f)


if __name__ == "__main__":
    main()
