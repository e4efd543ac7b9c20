#!/usr/bin/python3
"""An external handler for spec MYSPEC, speaking handlers/external's protocol (exec mode).

brokerfs runs it as --handler 'MYSPEC=/usr/bin/python3 .../external_handler.py': it reads one
JSON request from stdin and answers on stdout. The arrays are deterministic (see frames), so
external_run.py computes what the mount must show by importing this module.

read: the datum's frames as a .npy; describe: their dtype and shape; files: the resource path.
"""
import json
import sys

import numpy as np

Y, X = 4, 3


def frames(path, resource_kwargs, datum_kwargs):
    """The datum's array: int32 (fpp, Y, X), from the first byte of path, a scale and the point."""
    fpp = int(resource_kwargs.get("frame_per_point", 1))
    scale = int(resource_kwargs["scale"])
    pn = int(datum_kwargs["point_number"])
    with open(path, "rb") as f:
        seed = f.read(1)[0]
    a = np.arange(fpp * Y * X, dtype="<i4").reshape(fpp, Y, X) * scale
    return a + 1000 * pn + seed - 7 * (pn % 2)


def main():
    req = json.load(sys.stdin)
    if req.get("protocol") != 1 or req.get("spec") != "MYSPEC":
        print(json.dumps({"error": f"unexpected request {req!r}"}))
        return
    op = req["op"]
    if op == "read":
        try:
            a = frames(req["path"], req["resource_kwargs"], req["datum_kwargs"])
        except FileNotFoundError as e:
            print(e, file=sys.stderr)
            sys.exit(66)
        np.save(sys.stdout.buffer, a)
    elif op == "describe":
        fpp = int(req["resource_kwargs"].get("frame_per_point", 1))
        print(json.dumps({"dtype": "<i4", "shape": [fpp, Y, X]}))
    elif op == "files":
        print(json.dumps({"files": [req["path"]]}))
    else:
        print(json.dumps({"unsupported": True}))


if __name__ == "__main__":
    main()
