"""brokerfs's transform helper (protocol 1): applies databroker transforms to documents.

Started by brokerfs as: PYTHON -c THIS_SCRIPT KIND=package.module.function ...
It imports each function, then answers requests read from stdin, one JSON line each, with
the framing of package helperproc: {"size": N}\\n and N bytes of JSON, or {"error": "..."}\\n.

  {"protocol": 1, "op": "hello"}
      -> {"protocol": 1, "digest": HEX, "python": VERSION}: HEX is a SHA-256 over each
         function's name and the bytes of the source file of its module; an import that
         failed is an error answer naming it
  {"protocol": 1, "op": "transform", "kind": "start", "doc": {...}}
      -> the document the function returned (a dict), as JSON; an exception is an error
         answer "TypeName: message"

Nothing else may write to the protocol: stdout is moved to stderr before any import, so a
print() in a transform goes to stderr, which brokerfs logs.
"""
import sys

# The current directory is not searched: modules come from PYTHONPATH and the interpreter's
# own paths, as for a daemon (and a json.py in the directory cannot shadow the stdlib's).
if sys.path and sys.path[0] == "":
    del sys.path[0]

import collections.abc  # noqa: E402
import hashlib  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

PROTOCOL = 1


def _setup_streams():
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def _import(path):
    module, _, name = path.replace(":", ".").rpartition(".")
    if not module:
        raise ImportError("%r is not an import path package.module.function" % path)
    fn = getattr(importlib.import_module(module), name)
    if not callable(fn):
        raise TypeError("%s is not callable" % path)
    return fn


def _source_digest(h, path, fn):
    h.update(path.encode() + b"\0")
    try:
        src = inspect.getsourcefile(fn) or inspect.getfile(fn)
        with open(src, "rb") as f:
            h.update(f.read())
    except (TypeError, OSError):
        h.update(repr(fn).encode())
    h.update(b"\0")


def _default(o):
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    if isinstance(o, collections.abc.Mapping):
        return dict(o)
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    raise TypeError("%s is not JSON serializable" % type(o).__name__)


def _answer(out, payload=None, error=None):
    if error is not None:
        out.write(json.dumps({"error": error}).encode() + b"\n")
    else:
        out.write(b'{"size": %d}\n' % len(payload))
        out.write(payload)
    out.flush()


def main():
    out = _setup_streams()
    funcs, failed = {}, []
    h = hashlib.sha256()
    for arg in sys.argv[1:]:
        kind, _, path = arg.partition("=")
        try:
            funcs[kind] = _import(path)
            _source_digest(h, arg, funcs[kind])
        except BaseException as e:  # an import may raise anything, SystemExit included
            failed.append("%s=%s: %s: %s" % (kind, path, type(e).__name__, e))
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            op = req.get("op")
        except ValueError as e:
            _answer(out, error="bad request: %s" % e)
            continue
        if op == "hello":
            if failed:
                _answer(out, error="; ".join(failed))
            else:
                _answer(out, json.dumps({"protocol": PROTOCOL, "digest": h.hexdigest(),
                                         "python": sys.version.split()[0]}).encode())
            continue
        if op != "transform":
            _answer(out, error="unknown op %r" % (op,))
            continue
        fn = funcs.get(req.get("kind"))
        if fn is None:
            _answer(out, error="no transform for kind %r" % (req.get("kind"),))
            continue
        try:
            doc = fn(req["doc"])
            if not isinstance(doc, collections.abc.Mapping):
                raise TypeError("the transform returned %s, not a dict" % type(doc).__name__)
            payload = json.dumps(doc, default=_default).encode()
        except BaseException as e:  # a transform's failure is that document's, not the helper's
            if isinstance(e, KeyboardInterrupt):
                raise
            _answer(out, error="%s: %s" % (type(e).__name__, e))
            continue
        _answer(out, payload)


main()
