"""Print what a listing shows of each run file's start document, decoded by Python's msgpack.

One JSON line per file argument: [uid, time, has_scan_id, scan_id, plan_name], following
brokerfs's rules (catalog.ParseStart): time is any number (a msgpack timestamp as its Unix
seconds); scan_id counts when it is an integer or an integral float that int64 holds;
plan_name when it is a string, else "". A file whose start lacks a string uid or a numeric
time prints ["error"].
"""
import json
import math
import sys

import msgpack


def summary(doc):
    uid, t = doc.get("uid"), doc.get("time")
    if isinstance(t, msgpack.Timestamp):
        t = t.to_unix()
    if not isinstance(uid, str) or isinstance(t, bool) or not isinstance(t, (int, float)):
        return ["error"]
    scan = doc.get("scan_id")
    has, sid = False, 0
    if isinstance(scan, bool):
        pass
    elif isinstance(scan, int) and -(2**63) <= scan < 2**63:
        has, sid = True, scan
    elif isinstance(scan, float) and math.isfinite(scan) and scan == math.trunc(scan) and -(2**63) <= scan < 2**63:
        has, sid = True, int(scan)
    plan = doc.get("plan_name")
    return [uid, float(t), has, sid, plan if isinstance(plan, str) else ""]


def main(paths):
    for path in paths:
        with open(path, "rb") as f:
            name, doc = next(iter(msgpack.Unpacker(f, raw=False, strict_map_key=False)))
        assert name == "start", name
        print(json.dumps(summary(doc)))


if __name__ == "__main__":
    main(sys.argv[1:])
