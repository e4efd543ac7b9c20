#!/usr/bin/python3
"""Write a small catalog for the transform tests.

Usage: transform_run.py DIR

Writes into DIR:

- cat/a.jsonl: run A, plan "scan", scan_id 1, sample "Si", operator "ann". Stream primary:
  3 events of x (number), count (number, integral values: a descriptor transform that makes
  it "integer" makes count.npy int64) and img, external: datums of an npy_FRAMEWISE resource
  whose root "/nonexistent/old" does not exist (a resource transform must move it to
  DIR/files). Stream dark: a descriptor and no events, frame (array, shape [2, 3], <u2).
- cat/b.jsonl: run B, plan "count", scan_id 2, sample "bad", operator "ann": a start
  transform raises for it. Stream primary: 2 events of x and count.
- cat/c.jsonl: run C, plan "scan", scan_id 3, operator "bob" (left out by --query).
- files/frames.npy: img's frames, float64 (3, 2, 3).
- manifest.json: {"a": uid, "b": uid, "c": uid, "old_root": "/nonexistent/old"}.
"""
import json
import os
import sys

import numpy as np

OLD_ROOT = "/nonexistent/old"


def run(uid, t0, scan_id, plan, sample, operator, events, external=False, dark=False):
    start = {"uid": uid, "time": t0, "scan_id": scan_id, "plan_name": plan, "sample": sample,
             "operator": operator, "detectors": ["det"], "num_points": len(events)}
    keys = {"x": {"dtype": "number", "shape": [], "source": "SIM:x"},
            "count": {"dtype": "number", "shape": [], "source": "SIM:count"}}
    if external:
        keys["img"] = {"dtype": "array", "shape": [2, 3], "source": "SIM:img",
                       "external": "FILESTORE:", "dtype_numpy": "<f8"}
    desc = {"uid": uid + "-primary", "run_start": uid, "time": t0 + 0.5, "name": "primary",
            "data_keys": keys, "configuration": {}, "object_keys": {"det": sorted(keys)}}
    docs = [("start", start), ("descriptor", desc)]
    if dark:
        docs.append(("descriptor", {
            "uid": uid + "-dark", "run_start": uid, "time": t0 + 0.6, "name": "dark",
            "data_keys": {"frame": {"dtype": "array", "shape": [2, 3], "source": "SIM:dark",
                                    "dtype_numpy": "<u2"}},
            "configuration": {}, "object_keys": {"det": ["frame"]}}))
    if external:
        res = {"uid": uid + "-res", "spec": "npy_FRAMEWISE", "root": OLD_ROOT,
               "resource_path": "frames.npy", "resource_kwargs": {}, "path_semantics": "posix",
               "run_start": uid}
        docs.append(("resource", res))
    for i, (x, count) in enumerate(events):
        data = {"x": x, "count": count}
        if external:
            datum_id = f"{uid}-res/{i}"
            docs.append(("datum", {"datum_id": datum_id, "resource": uid + "-res",
                                   "datum_kwargs": {"frame_no": i}}))
            data["img"] = datum_id
        t = t0 + 1 + i
        docs.append(("event", {"uid": f"{uid}-e{i}", "descriptor": desc["uid"], "time": t,
                               "seq_num": i + 1, "data": data,
                               "timestamps": {k: t for k in data},
                               "filled": {"img": False} if external else {}}))
    docs.append(("stop", {"uid": uid + "-stop", "run_start": uid, "time": t0 + 100,
                          "exit_status": "success", "reason": "",
                          "num_events": {"primary": len(events)}}))
    return docs


def write_jsonl(path, docs):
    with open(path, "w") as f:
        for name, doc in docs:
            f.write(json.dumps([name, doc]) + "\n")


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "cat"))
    os.makedirs(os.path.join(out, "files"))
    frames = np.arange(3 * 2 * 3, dtype="<f8").reshape(3, 2, 3) * 0.25
    np.save(os.path.join(out, "files", "frames.npy"), frames)
    uids = {"a": "aaaa1111-0000-4000-8000-000000000001",
            "b": "bbbb2222-0000-4000-8000-000000000002",
            "c": "cccc3333-0000-4000-8000-000000000003"}
    write_jsonl(os.path.join(out, "cat", "a.jsonl"),
                run(uids["a"], 1_700_000_000.0, 1, "scan", "Si", "ann",
                    [(0.5, 1), (1.5, 2), (2.5, 3)], external=True, dark=True))
    write_jsonl(os.path.join(out, "cat", "b.jsonl"),
                run(uids["b"], 1_700_000_200.0, 2, "count", "bad", "ann", [(1.0, 5), (2.0, 6)]))
    write_jsonl(os.path.join(out, "cat", "c.jsonl"),
                run(uids["c"], 1_700_000_400.0, 3, "scan", "Ge", "bob", [(1.0, 7)]))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(dict(uids, old_root=OLD_ROOT), f)


if __name__ == "__main__":
    main()
