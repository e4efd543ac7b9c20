#!/usr/bin/python3
"""Write one suitcase run file for the cache tests (msgpack or JSONL, by the extension).

Usage: cache_run.py OUT --uid UID [--events N] [--width W] [--seed S] [--page P] [--t0 T]

The run: a start document, a primary stream (x float64, y integer of 200..249, s a 5-character
string, and with W > 0 a float64[W] field "wide"), in event_page documents of P rows (P = 0:
one event document per event), a baseline stream of two events, and a stop document. Every
value depends on the seed; the byte size of a msgpack file does not (floats are always
float64, y always a uint8, strings of one length), so the same uid, events and width with
another seed rewrite the file with the same size and other values.

Prints one JSON line: {"offsets": [byte offset of each document], "names": [their names]},
so that tests can cut the file at document boundaries (drop the stop, keep k events).
"""
import argparse
import json

import msgpack
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--uid", required=True)
    p.add_argument("--events", type=int, default=20)
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--page", type=int, default=0)
    p.add_argument("--t0", type=float, default=1_700_000_000.0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    uid, t0 = a.uid, a.t0
    desc = "d" + uid[1:]
    base = "b" + uid[1:]
    dks = {"x": {"dtype": "number", "shape": [], "source": "SIM:x"},
           "y": {"dtype": "integer", "shape": [], "source": "SIM:y"},
           "s": {"dtype": "string", "shape": [], "source": "SIM:s"}}
    if a.width:
        dks["wide"] = {"dtype": "array", "shape": [a.width], "source": "SIM:wide"}
    docs = [("start", {"uid": uid, "time": t0, "scan_id": 7, "plan_name": "count"}),
            ("descriptor", {"uid": desc, "run_start": uid, "time": t0 + 0.25, "name": "primary",
                            "data_keys": dks, "configuration": {}, "hints": {},
                            "object_keys": {}}),
            ("descriptor", {"uid": base, "run_start": uid, "time": t0 + 0.5, "name": "baseline",
                            "data_keys": {"T": {"dtype": "number", "shape": [],
                                                "source": "SIM:T"}},
                            "configuration": {}, "hints": {}, "object_keys": {}})]
    docs.append(("event", {"uid": "e" + uid[1:-4] + "b000", "descriptor": base, "time": t0 + 0.75,
                           "seq_num": 1, "data": {"T": float(rng.random())},
                           "timestamps": {"T": t0 + 0.75}, "filled": {}}))
    events = []
    for i in range(a.events):
        t = t0 + 1 + i
        data = {"x": float(rng.normal()), "y": int(rng.integers(200, 250)),
                "s": "s%04d" % rng.integers(0, 10000)}
        if a.width:
            data["wide"] = rng.normal(size=a.width).tolist()
        events.append({"uid": "e" + uid[1:-4] + "%04d" % i, "descriptor": desc, "time": t,
                       "seq_num": i + 1, "data": data,
                       "timestamps": {k: t for k in data}, "filled": {}})
    if a.page:
        for i in range(0, len(events), a.page):
            page = events[i:i + a.page]
            docs.append(("event_page", {
                "descriptor": desc, "uid": [e["uid"] for e in page],
                "time": [e["time"] for e in page], "seq_num": [e["seq_num"] for e in page],
                "data": {k: [e["data"][k] for e in page] for k in page[0]["data"]},
                "timestamps": {k: [e["timestamps"][k] for e in page] for k in page[0]["data"]},
                "filled": {}}))
    else:
        docs += [("event", e) for e in events]
    docs.append(("event", {"uid": "e" + uid[1:-4] + "b001", "descriptor": base,
                           "time": t0 + a.events + 2, "seq_num": 2,
                           "data": {"T": float(rng.random())},
                           "timestamps": {"T": t0 + a.events + 2}, "filled": {}}))
    docs.append(("stop", {"uid": "f" + uid[1:], "run_start": uid, "time": t0 + a.events + 3,
                          "exit_status": "success", "reason": "",
                          "num_events": {"primary": a.events, "baseline": 2}}))
    offsets, names = [], []
    with open(a.out, "wb") as f:
        for name, doc in docs:
            offsets.append(f.tell())
            names.append(name)
            if a.out.endswith(".jsonl"):
                f.write((json.dumps([name, doc]) + "\n").encode())
            else:
                f.write(msgpack.packb([name, doc], use_bin_type=True))
    print(json.dumps({"offsets": offsets, "names": names}))


if __name__ == "__main__":
    main()
