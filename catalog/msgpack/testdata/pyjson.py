"""Print each [name, doc] of a msgpack file as JSON, decoded by Python's msgpack (raw=False).

bytes become {"$bytes": hex} and bytes map keys "$b:" + the key, so that a test can check
exactly what a writer stored: str or bin, and which keys msgpack-numpy maps have.
"""
import json
import sys

import msgpack


def conv(v):
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, dict):
        return {("$b:" + k.decode("latin1") if isinstance(k, bytes) else k): conv(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [conv(x) for x in v]
    return v


with open(sys.argv[1], "rb") as f:
    for item in msgpack.Unpacker(f, raw=False):
        print(json.dumps(conv(list(item)), sort_keys=True, ensure_ascii=False))
