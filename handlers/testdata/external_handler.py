"""A test handler for handlers/external, speaking protocol 1 in exec and serve mode.

The resource path is a .npy stack; datum {"index": i} reads stack[i]. Datum kwargs steer
the answer: "order": "F" (Fortran-order output), "endian": ">" (big-endian output),
"fail": "exit" | "json" | "missing" | "sleep" | "garbage" | "crash". Resource kwarg
"no_describe": true makes describe and files unsupported. Each process start appends its pid
to $PIDFILE when set.
"""
import io
import json
import os
import sys
import time

import numpy as np

if os.environ.get("PIDFILE"):
    with open(os.environ["PIDFILE"], "a") as f:
        f.write("%d\n" % os.getpid())

serve = os.environ.get("BROKERFS_HANDLER_MODE") == "serve"
out = sys.stdout.buffer


class Fail(Exception):
    def __init__(self, msg, exit=1):
        super().__init__(msg)
        self.exit = exit


def handle(req):
    """Returns the payload bytes, or None for unsupported."""
    assert req["protocol"] == 1
    rk = req["resource_kwargs"]
    if req["op"] == "files":
        if rk.get("no_describe"):
            return None
        return json.dumps({"files": [req["path"]] + ["%s.%s" % (req["path"], d["index"])
                                                       for d in req["datum_kwargs_list"]]}).encode()
    dk = req["datum_kwargs"]
    fail = dk.get("fail")
    if fail == "exit":
        sys.stderr.write("some noise\nboom: cannot read index %s\n" % dk.get("index"))
        sys.stderr.flush()
        if serve:
            raise Fail("boom", exit=1)
        sys.exit(1)
    if fail == "json":
        raise Fail("no such frame %s in %s" % (dk.get("index"), req["path"]))
    if fail == "missing":
        raise Fail("file %s.missing not found" % req["path"], exit=66)
    if fail == "sleep":
        time.sleep(30)
    if fail == "garbage":
        return b"GARBAGE"
    if fail == "crash":
        os._exit(3)
    stack = np.load(req["path"], mmap_mode="r")
    if req["op"] == "describe":
        if rk.get("no_describe"):
            return None
        # Types as the datum holds them: "scale" (a float) makes float64 frames.
        dt = np.dtype("<f8") if "scale" in dk else stack.dtype
        return json.dumps({"dtype": dt.str, "shape": list(stack.shape[1:])}).encode()
    a = np.array(stack[dk["index"]])
    if "scale" in dk:
        assert isinstance(dk["scale"], float), dk  # 2.0 must arrive as a float
        a = a * dk["scale"]
    if dk.get("order") == "F":
        a = np.asfortranarray(a)
    if dk.get("endian") == ">":
        a = a.astype(a.dtype.newbyteorder(">"))
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


if not serve:
    req = json.load(sys.stdin)
    try:
        body = handle(req)
    except Fail as e:
        if e.exit != 1:
            sys.exit(e.exit)
        out.write(json.dumps({"error": str(e)}).encode())
        sys.exit(0)
    if body is None:
        out.write(b'{"unsupported": true}')
    else:
        out.write(body)
    sys.exit(0)

for line in sys.stdin:
    req = json.loads(line)
    try:
        body = handle(req)
    except Fail as e:
        out.write(json.dumps({"error": str(e), "exit": e.exit}).encode() + b"\n")
        out.flush()
        continue
    if body is None:
        out.write(b'{"error": "unsupported op", "unsupported": true}\n')
    elif body == b"GARBAGE":
        out.write(b"GARBAGE\n")
    else:
        out.write(json.dumps({"size": len(body)}).encode() + b"\n" + body)
    out.flush()
