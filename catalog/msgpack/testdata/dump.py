"""Print a suitcase-msgpack run file as the Go tests compare it, decoded by Python's msgpack.

One line per document for start, descriptor and stop, in file order: "doc NAME JSON" with the
document as json.dumps writes it (key order kept). Then one line per event row, grouped by
descriptor in the order the descriptors come: "row JSON" with
[descriptor, row, time, seq_num, data, timestamps], keys sorted.
"""
import json
import sys

import msgpack


def dumps(v, sort):
    return json.dumps(v, sort_keys=sort, ensure_ascii=False)


def main(path):
    rows = {}  # descriptor uid -> row lines
    with open(path, "rb") as f:
        for name, doc in msgpack.Unpacker(f, raw=False):
            if name in ("start", "descriptor", "stop"):
                print("doc", name, dumps(doc, False))
            if name == "descriptor":
                rows[doc["uid"]] = []
            elif name == "event_page":
                out = rows[doc["descriptor"]]
                for i in range(len(doc["time"])):
                    data = {k: v[i] for k, v in doc["data"].items()}
                    ts = {k: v[i] for k, v in doc["timestamps"].items()}
                    row = [doc["descriptor"], len(out), doc["time"][i], doc["seq_num"][i], data, ts]
                    out.append("row " + dumps(row, True))
            elif name == "event":
                out = rows[doc["descriptor"]]
                row = [doc["descriptor"], len(out), doc["time"], doc["seq_num"], doc["data"], doc["timestamps"]]
                out.append("row " + dumps(row, True))
    for lines in rows.values():
        for line in lines:
            print(line)


if __name__ == "__main__":
    main(sys.argv[1])
