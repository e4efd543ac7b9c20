#!/usr/bin/python3
"""Write runs in which single documents are bad, as suitcase-msgpack and suitcase-jsonl would
hold them after damage or from a hostile writer.

Usage: bad_docs.py DIR HUGE_BYTES

Writes DIR/bad.msgpack and DIR/bad.jsonl (runs bad-msgpack and bad-jsonl). Each holds ten good
events (fields x, a float, and s, a string) and between them six bad documents:

- flip: an event_page with one bit flipped (msgpack: the numpy dtype of a column, "<f8" to "<f:";
  JSONL: a comma of a column to a dot, which makes it ragged);
- deep: an event whose value is lists nested 600 deep (the decoders stop at 512);
- ragged: an event_page whose data column is shorter than its times;
- huge: an event whose string value is HUGE_BYTES long (a hole in a sparse file: no disk);
- types: an event whose seq_num is a string;
- syntax (JSONL): an event with a digit of x turned into a letter ("1.25" to "1.2e");
  timestamps (msgpack): an event whose timestamps is a list.

It prints JSON: {"x": [...], "s": [...], "bad": {"msgpack": {name: offset}, "jsonl": {...}}},
the good events' values and the byte offset of every bad document, for the test to compare
with what the mount serves and logs.
"""

import json
import os
import sys

import msgpack

EVENTS = 10


def good_event(uid, i):
    return {"descriptor": uid + "-d", "uid": "%s-e%d" % (uid, i), "time": 1.7e9 + i, "seq_num": i + 1,
            "data": {"x": i * 1.5, "s": "v%d" % i}, "timestamps": {"x": 1.7e9 + i, "s": 1.7e9 + i},
            "filled": {}}


def head(uid):
    return [("start", {"uid": uid, "time": 1.7e9, "scan_id": 1, "plan_name": "count"}),
            ("descriptor", {"uid": uid + "-d", "run_start": uid, "time": 1.7e9, "name": "primary",
                            "data_keys": {"x": {"dtype": "number", "shape": [], "source": "sim"},
                                          "s": {"dtype": "string", "shape": [], "source": "sim"}}})]


def page(uid, x, s):
    return {"descriptor": uid + "-d", "uid": ["p1", "p2"], "time": [1.7e9 + 20, 1.7e9 + 21], "seq_num": [20, 21],
            "data": {"x": x, "s": s}, "timestamps": {}, "filled": {}}


def deep(uid):
    """An event whose x is the placeholder "DEEP": writers refuse such nesting, so it is spliced in."""
    return {"descriptor": uid + "-d", "time": 1.7e9 + 30, "seq_num": 30, "data": {"x": "DEEP", "s": "deep"}}


def mp_deep(uid):
    return "deep", mp("event", deep(uid)).replace(b"\xa4DEEP", b"\x91" * 600 + b"\x01")


def js_deep(uid):
    return "deep", js("event", deep(uid)).replace(b'"DEEP"', b"[" * 600 + b"1" + b"]" * 600)


def write(path, encode, bad_docs, huge_tail):
    """Writes good events with the bad documents between them; returns the bad ones' offsets."""
    uid = os.path.basename(path).replace(".", "-")
    offsets = {}
    with open(path, "wb") as f:
        for name, doc in head(uid):
            f.write(encode(name, doc))
        for i in range(EVENTS):
            f.write(encode("event", good_event(uid, i)))
            if i < len(bad_docs):
                label, data = bad_docs[i](uid)
                offsets[label] = f.tell()
                f.write(data)
                if label == "huge":
                    f.seek(HUGE, 1)  # the value's bytes: a hole
                    f.write(huge_tail)
        f.write(encode("stop", {"uid": uid + "-stop", "run_start": uid, "time": 1.7e9 + 99,
                                "exit_status": "success", "num_events": {"primary": EVENTS}}))
    return offsets


def mp(name, doc):
    return msgpack.packb([name, doc], use_bin_type=True)


def mp_flip(uid):
    col = {b"nd": True, b"type": "<f8", b"kind": b"", b"shape": [2], b"data": b"\0" * 16}
    b = mp("event_page", page(uid, col, ["a", "b"]))
    i = b.index(b"\xa3<f8")
    return "flip", b[:i + 3] + bytes([b[i + 3] ^ 0x02]) + b[i + 4:]  # "8" (0x38) to ":" (0x3a)


def mp_huge(uid):
    # An event map whose last value is a str32 header; the payload is the hole after it.
    doc = {"descriptor": uid + "-d", "time": 1.7e9 + 40, "seq_num": 40}
    body = b"\x92" + msgpack.packb("event") + b"\x84"
    for k, v in doc.items():
        body += msgpack.packb(k) + msgpack.packb(v)
    body += msgpack.packb("data") + b"\x81" + msgpack.packb("s") + b"\xdb" + HUGE.to_bytes(4, "big")
    return "huge", body


def js(name, doc):
    return (json.dumps([name, doc]) + "\n").encode()


def types(uid):
    return {"descriptor": uid + "-d", "time": 1.7e9 + 50, "seq_num": "50", "data": {"x": 1.0, "s": "t"}}


def js_syntax(uid):
    doc = {"descriptor": uid + "-d", "time": 1.7e9 + 60, "seq_num": 60, "data": {"x": 1.25, "s": "y"}}
    return "syntax", js("event", doc).replace(b"1.25", b"1.2e")


def mp_timestamps(uid):
    doc = {"descriptor": uid + "-d", "time": 1.7e9 + 60, "seq_num": 60, "data": {"x": 1.25, "s": "y"},
           "timestamps": [1.7e9]}
    return "timestamps", mp("event", doc)


def js_flip(uid):
    b = js("event_page", page(uid, [1.0, 2.0], ["a", "b"]))
    i = b.index(b"[1.0, 2.0]") + 4
    return "flip", b[:i] + bytes([b[i] ^ 0x02]) + b[i + 1:]  # "," (0x2c) to "." (0x2e)


def js_huge(uid):
    doc = json.dumps(["event", {"descriptor": uid + "-d", "time": 1.7e9 + 40, "seq_num": 40, "data": {"s": "@"}}])
    return "huge", doc[:doc.index("@")].encode()


def main():
    global HUGE
    out, HUGE = sys.argv[1], int(sys.argv[2])
    bad = {}
    bad["msgpack"] = write(os.path.join(out, "bad.msgpack"), mp, [
        mp_flip, mp_deep,
        lambda u: ("ragged", mp("event_page", page(u, [1.0], ["a", "b"]))), mp_huge,
        lambda u: ("types", mp("event", types(u))), mp_timestamps], b"")
    bad["jsonl"] = write(os.path.join(out, "bad.jsonl"), js, [
        js_flip, js_deep,
        lambda u: ("ragged", js("event_page", page(u, [1.0], ["a", "b"]))), js_huge,
        lambda u: ("types", js("event", types(u))), js_syntax], b'"}}]\n')
    print(json.dumps({"x": [i * 1.5 for i in range(EVENTS)], "s": ["v%d" % i for i in range(EVENTS)], "bad": bad}))


if __name__ == "__main__":
    main()
