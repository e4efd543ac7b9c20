"""An independent reader and writer of suitcase run files, for the integration tests.

  docstream.py check FILE...           each file is a [name, doc] stream: start first, stop last
                                       (or none), every name a document type; prints a JSON
                                       line {path, uid, names} per file
  docstream.py strip SRC DST           copies a msgpack run without its stop document; prints
                                       JSON {uid, stream, field, stop}: a scalar field of the
                                       stream that has events, and where the stop was saved
  docstream.py append DST STOPFILE N   appends N event_page documents (one event each) to DST
  docstream.py stop DST STOPFILE       appends the saved stop document
  docstream.py same A B [A B ...]      for each pair, prints "same" when the two run files hold
                                       equal documents in the same order (whatever their formats),
                                       else how many documents of each name each holds
"""
import json
import sys
import uuid

import msgpack

NAMES = {"start", "descriptor", "event", "event_page", "resource", "datum", "datum_page", "stop"}


def read(path):
    if path.endswith(".jsonl"):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    with open(path, "rb") as f:
        return [list(x) for x in msgpack.Unpacker(f, raw=False, strict_map_key=False)]


def check(paths):
    for p in paths:
        docs = read(p)
        names = [d[0] for d in docs]
        assert len(docs) >= 1, p
        for d in docs:
            assert len(d) == 2 and isinstance(d[0], str) and isinstance(d[1], dict), (p, d)
            assert d[0] in NAMES, (p, d[0])
        assert names[0] == "start", (p, names[:3])
        assert "start" not in names[1:], p
        if "stop" in names:
            assert names[-1] == "stop" and names.count("stop") == 1, (p, names[-3:])
            assert docs[-1][1]["run_start"] == docs[0][1]["uid"], p
        print(json.dumps({"path": p, "uid": docs[0][1]["uid"], "names": names}))


def strip(src, dst):
    docs = read(src)
    assert docs[-1][0] == "stop", "the run has no stop"
    descs = {d[1]["uid"]: d[1] for d in docs if d[0] == "descriptor"}
    last = None
    for name, doc in docs:
        if name in ("event", "event_page"):
            last = (name, doc)
    assert last, "the run has no events"
    name, doc = last
    desc = descs[doc["descriptor"]]
    field = None
    for k, v in desc["data_keys"].items():
        if v.get("dtype") == "number" and not v.get("shape") and not v.get("external"):
            field = k
            break
    assert field, "no scalar field"
    with open(dst, "wb") as f:
        for d in docs[:-1]:
            f.write(msgpack.packb(d, use_bin_type=True))
    with open(dst + ".stop", "w") as f:
        json.dump({"stop": docs[-1][1], "last": [name, doc], "field": field}, f)
    print(json.dumps({"uid": docs[0][1]["uid"], "stream": desc.get("name", "primary"), "field": field, "stop": dst + ".stop"}))


def append(dst, stopfile, n):
    with open(stopfile) as f:
        saved = json.load(f)
    name, doc = saved["last"]
    if name == "event_page":
        seq, t, desc = doc["seq_num"][-1], doc["time"][-1], doc["descriptor"]
        data = {k: v[-1] for k, v in doc["data"].items()}
        ts = {k: v[-1] for k, v in doc["timestamps"].items()}
    else:
        seq, t, desc = doc["seq_num"], doc["time"], doc["descriptor"]
        data, ts = dict(doc["data"]), dict(doc["timestamps"])
    with open(dst, "ab") as f:
        for i in range(1, n + 1):
            page = {
                "descriptor": desc, "uid": [str(uuid.uuid4())], "seq_num": [seq + i],
                "time": [t + i], "data": {k: [v] for k, v in data.items()},
                "timestamps": {k: [v + i] for k, v in ts.items()}, "filled": {},
            }
            f.write(msgpack.packb(["event_page", page], use_bin_type=True))
    name, doc = "event_page", page
    saved["last"] = ["event_page", {k: page[k] for k in page}]
    saved["last"][1]["data"] = {k: v for k, v in page["data"].items()}
    with open(stopfile, "w") as f:
        json.dump(saved, f)


def stop(dst, stopfile):
    with open(stopfile) as f:
        saved = json.load(f)
    with open(dst, "ab") as f:
        f.write(msgpack.packb(["stop", saved["stop"]], use_bin_type=True))


def same(a, b):
    da, db = read(a), read(b)
    if da == db:
        print("same")
        return
    count = lambda docs: {n: [d[0] for d in docs].count(n) for n in sorted({d[0] for d in docs})}
    print("differ: %s %s, %s %s" % (a, count(da), b, count(db)))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "check":
        check(sys.argv[2:])
    elif cmd == "strip":
        strip(sys.argv[2], sys.argv[3])
    elif cmd == "append":
        append(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "stop":
        stop(sys.argv[2], sys.argv[3])
    elif cmd == "same":
        for i in range(2, len(sys.argv) - 1, 2):
            same(sys.argv[i], sys.argv[i + 1])
    else:
        sys.exit("unknown command " + cmd)
