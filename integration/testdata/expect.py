#!/usr/bin/python3
"""Reference reader for the brokerfs integration tests.

Decodes suitcase run files (msgpack and JSONL) itself, computes what databroker 1.2's
``run.<stream>.read()`` gives for every stream of every run, and compares that with the files a
brokerfs mount serves. It shares no code with brokerfs: documents are read with the msgpack
package and json.loads, values are built with numpy, files are read back with np.load (whole and
memory-mapped) and pandas.read_csv.

Usage:
    expect.py [options] MOUNTPOINT FILE...     check the mount against the run files
    expect.py --summary FILE...                print one JSON line per run (for `brokerfs ls`)

Options:
    --subset           the mount may list runs other than those of FILE... (bad files in the
                       catalog); the runs of FILE... must still be listed and read correctly
    --query JSON       only runs whose start document matches; equality of (dotted) keys only
    --include GLOB     only fields matching GLOB (repeatable), as `brokerfs mount --include`
    --exclude GLOB     leave out fields matching GLOB (repeatable)
    --transform KIND=MODULE.FUNCTION
                       databroker's transform of KIND documents (start, stop, descriptor,
                       resource), imported from --transform-path (repeatable)
    --transform-path DIR   where --transform's modules are
    --transform-file F     brokerfs's declarative transforms (JSON): per kind a list of
                       {match, patch}; match is equality of (dotted) keys on the stored
                       document, patch an RFC 7396 merge patch applied here
    --parquet-reader DIR  also read every <stream>.parquet with hyparquet installed in DIR
                       (npm install --prefix DIR hyparquet), through node and
                       parquet_read.mjs, and compare its schema, values and metadata

What is checked:
    MOUNTPOINT/                  exactly the runs' uids, by-scan-id and latest
    latest, by-scan-id/<n>       symlinks to the newest run (by start time) overall / with scan_id n
    <uid>/                       start.json, stop.json (absent for a live run), one dir per stream
    <uid>/start.json, stop.json  equal to the documents after json.loads (NaN-aware, types strict)
    <uid>/<stream>.csv           the stream's table: seq_num, time, time_iso, then every field with
                                 one value per event (not external, not unencodable, not complex),
                                 in the descriptors' order (each one's data keys by name); a field
                                 named seq_num, time or time_iso gets "_" appended until unique
    <uid>/<stream>.parquet       the same table as Parquet (PAR1 magic; with --parquet-reader
                                 read by hyparquet: types, values, brokerfs.columns metadata)
    <uid>/<stream>/              exactly the files below
      descriptors.json           a JSON array equal to the stream's descriptors, in stored order
      time.npy, time.csv         event times (float64) and seq_num
      <field>.npy                the field's values: dtype, shape and bits
      <field>.csv                seq_num, time, the value(s); only for 0-D and 1-D fields
      <field>.tif                fields of 2+ dimensions per event (not strings): a multi-page
                                 TIFF read with tifffile, one page per frame (all leading
                                 dimensions flattened), the dtype's own pixels (bool as uint8),
                                 ImageJ metadata exactly for uint8/bool/uint16/int16/float32
      timestamps/<field>.npy     float64 timestamps, NaN where the event has none
      config/<object>.json       the first descriptor's configuration of each object

Transforms: a document is what the function returns, then patched by every matching entry of
the file; a function that raises, or a result with another uid, leaves the document as
stored. The listing (runs, latest, by-scan-id) and --query use the stored start documents.

Value rules (databroker 1.2): several descriptors of a stream are merged and their rows ordered
by event time with a stable sort; one descriptor keeps its stored order. number -> float64;
integer -> int64, float64 if any value is a float (as numpy makes it); boolean -> bool;
string -> <U{longest in code points, at least 1}; array -> dtype_numpy / dtype_str when the data
key declares one (little-endian), else what np.array(values) gives. The shape per event comes
from the data. A missing value is NaN in float fields, 0 / False / ''
elsewhere. A field whose values cannot form an array must fail to read with EIO.
External fields (data keys with "external") need handlers this reader does not have: their
.npy (and .csv when the data key's shape has at most one dimension, .tif when it has two or
more) must be listed and must either read with one row per event (for the .tif: a whole number
of pages per event) or fail with EIO; a run with external keys has files.txt.

Every file is also read with plain read() and its length compared with stat's st_size.
The script prints "checked N runs, M files" and exits 0, or prints the first mismatch and
exits 1.
"""

import argparse
import concurrent.futures
import copy
import datetime
import errno
import fnmatch
import importlib
import json
import math
import os
import subprocess
import sys
import traceback

import msgpack
import numpy as np
import pandas as pd
import tifffile


class Mismatch(Exception):
    """The mount disagrees with the reference."""


class Unencodable(Exception):
    """A field's values cannot form one array; brokerfs must answer EIO."""


# --------------------------------------------------------------------------------------------
# Reading run files


def decode_msgpack_numpy(obj):
    """object_hook for msgpack: turn msgpack-numpy maps (binary keys) into numpy values."""
    if b"nd" not in obj:
        return obj
    dtype = obj[b"type"]
    if isinstance(dtype, bytes):
        dtype = dtype.decode()
    if obj[b"nd"]:
        if dtype == "|O":
            return np.array(obj[b"data"], dtype=object).reshape(obj[b"shape"])
        return np.frombuffer(obj[b"data"], dtype=np.dtype(dtype)).reshape(obj[b"shape"])
    return np.frombuffer(obj[b"data"], dtype=np.dtype(dtype))[0]


def read_documents(path):
    """Return the [name, doc] pairs of one run file, in stored order."""
    with open(path, "rb") as f:
        if path.endswith(".msgpack"):
            unpacker = msgpack.Unpacker(f, raw=False, object_hook=decode_msgpack_numpy,
                                        max_buffer_size=1 << 30)
            return [(name, doc) for name, doc in unpacker]
        docs = []
        for line in f:
            if line.strip():
                name, doc = json.loads(line)
                docs.append((name, doc))
        return docs


class Run:
    """One run file: its start, stop, descriptors and events per descriptor."""

    def __init__(self, path):
        self.path = path
        self.start = None
        self.stop = None
        self.descriptors = []  # stored order
        self.events = {}  # descriptor uid -> [(time, seq_num, data, timestamps)]
        for name, doc in read_documents(path):
            if name == "start" and self.start is None:
                self.start = doc
            elif name == "stop":
                self.stop = doc
            elif name == "descriptor":
                self.descriptors.append(doc)
                self.events.setdefault(doc["uid"], [])
            elif name == "event":
                self.events.setdefault(doc["descriptor"], []).append(
                    (doc["time"], doc["seq_num"], doc["data"], doc["timestamps"]))
            elif name == "event_page":
                rows = self.events.setdefault(doc["descriptor"], [])
                for i in range(len(doc["time"])):
                    rows.append((doc["time"][i], doc["seq_num"][i],
                                 {k: col[i] for k, col in doc["data"].items()},
                                 {k: col[i] for k, col in doc["timestamps"].items()}))
        if self.start is None:
            raise ValueError(f"{path}: no start document")
        self.stored_start = self.start  # what the listing and --query see
        self.uid = self.start["uid"]
        self.time = self.start["time"]


class Stream:
    """One stream of a run as databroker reads it: rows of all its descriptors, merged."""

    def __init__(self, run, name, descriptors, keep_field):
        self.name = name
        self.descriptors = descriptors
        self.keys = {}  # field -> data key of the first descriptor that has it
        for d in descriptors:
            for k, dk in d["data_keys"].items():
                if k not in self.keys and keep_field(k):
                    self.keys[k] = dk
        self.external = {k for k, dk in self.keys.items() if "external" in dk}
        rows = [row for d in descriptors for row in run.events.get(d["uid"], [])]
        self.time = np.array([r[0] for r in rows], dtype="<f8")
        self.seq = np.array([r[1] for r in rows], dtype="<i8")
        order = np.arange(len(rows))
        if len(descriptors) > 1:
            order = np.argsort(self.time, kind="stable")
        self.rows = [rows[i] for i in order]
        self.time = self.time[order]
        self.seq = self.seq[order]

    def values(self, field):
        return [r[2].get(field) for r in self.rows]

    def timestamps(self, field):
        return np.array([r[3].get(field, math.nan) for r in self.rows], dtype="<f8")


def streams_of(run, keep_field):
    by_name = {}
    for d in run.descriptors:
        by_name.setdefault(d.get("name", "primary"), []).append(d)
    return {name: Stream(run, name, descs, keep_field) for name, descs in by_name.items()}


# --------------------------------------------------------------------------------------------
# Expected values


def little_endian(dtype):
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def any_float(values):
    for v in values:
        if isinstance(v, (float, np.floating)):
            return True
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            return True
        if isinstance(v, list) and any_float(v):
            return True
    return False


def missing_value(dtype):
    return {"f": math.nan, "U": ""}.get(dtype.kind, 0)


def expected_field(dk, values):
    """The array databroker gives for one field, from its data key and one value per row."""
    present = [v for v in values if v is not None]
    kind = dk.get("dtype")
    try:
        if kind == "number":
            dtype = np.dtype("<f8")
        elif kind == "integer":
            dtype = np.dtype("<f8" if any_float(present) else "<i8")
        elif kind == "boolean":
            dtype = np.dtype("|b1")
        elif kind == "string":
            dtype = np.dtype(f"<U{max([len(v) for v in present] + [1])}")
        elif dk.get("dtype_numpy") or dk.get("dtype_str"):
            dtype = little_endian(np.dtype(dk.get("dtype_numpy") or dk.get("dtype_str")))
        elif present:
            dtype = little_endian(np.array(present).dtype)
        else:
            dtype = np.dtype("<f8")
        if dtype.kind == "O":
            raise Unencodable(f"values of mixed types {dtype}")
        if present:
            shape = np.array(present[0]).shape
        elif kind == "array":
            shape = tuple(dk.get("shape", []))
        else:
            shape = ()
        rows = [np.full(shape, missing_value(dtype), dtype) if v is None else v for v in values]
        arr = np.array(rows, dtype=dtype) if rows else np.zeros((0, *shape), dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise Unencodable(str(e)) from e
    if arr.shape != (len(values), *shape):
        raise Unencodable(f"values form shape {arr.shape}, not {(len(values), *shape)}")
    return arr


# --------------------------------------------------------------------------------------------
# Comparisons


class Checker:
    def __init__(self, mnt):
        self.mnt = mnt
        self.files = 0
        self.runs = 0
        self.parquet_reader = ""

    def rel(self, path):
        return os.path.relpath(path, self.mnt)

    def fail(self, path, msg):
        raise Mismatch(f"{self.rel(path)}: {msg}")

    def read(self, path):
        """Read a whole file; its length must be what stat says."""
        with open(path, "rb") as f:
            data = f.read()
        size = os.stat(path).st_size
        if size != len(data):
            self.fail(path, f"stat says {size} bytes, a read returns {len(data)}")
        self.files += 1
        return data

    def listing(self, path, want, subset=False):
        got = set(os.listdir(path))
        missing, extra = set(want) - got, got - set(want)
        if missing or (extra and not subset):
            self.fail(path, f"listing differs: missing {sorted(missing)}, "
                            f"unexpected {sorted(extra)}")

    def json_file(self, path, want):
        data = self.read(path)
        try:
            got = json.loads(data)
        except ValueError as e:
            self.fail(path, f"not JSON: {e}: {data[:200]!r}")
        where = json_diff(got, plain(want))
        if where is not None:
            self.fail(path, f"differs from the document at {where}")

    def same_array(self, path, what, got, want):
        if got.dtype != want.dtype:
            self.fail(path, f"{what}: dtype {got.dtype.str}, want {want.dtype.str}")
        if got.shape != want.shape:
            self.fail(path, f"{what}: shape {got.shape}, want {want.shape}")
        if want.dtype.kind == "f":
            gnan, wnan = np.isnan(got), np.isnan(want)
            if not np.array_equal(gnan, wnan):
                self.fail(path, f"{what}: NaN at {np.argwhere(gnan != wnan)[:5].tolist()}")
            # Bits, not ==: -0.0 must stay -0.0 and a float must survive to the last bit.
            bits = f"u{want.dtype.itemsize}"
            differ = (got.view(bits) != want.view(bits)) & ~wnan
        else:
            differ = np.asarray(got != want)
        if differ.any():
            first = int(np.argwhere(differ.reshape(len(got), -1).any(axis=1))[0][0]) \
                if got.ndim else 0
            g, w = (got[first], want[first]) if got.ndim else (got, want)
            self.fail(path, f"{what}: values differ, first at row {first}: got {g!r}, want {w!r}")

    def npy(self, path, want):
        """Check a .npy file: header, size, np.load, np.load(mmap_mode='r'), a few mmap rows."""
        size = len(self.read(path))
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                self.fail(path, f"npy format version {version}")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            _, fortran, _ = read_header(f)
            if fortran:
                self.fail(path, "fortran_order is True")
            if size != f.tell() + want.nbytes:
                self.fail(path, f"{size} bytes, want a {f.tell()}-byte header + {want.nbytes}")
        self.same_array(path, "np.load", np.load(path), want)
        mm = np.load(path, mmap_mode="r")
        self.same_array(path, "np.load(mmap_mode='r')", np.asarray(mm), want)
        for k in sorted({0, len(want) // 2, len(want) - 1}):
            if 0 <= k < len(want):
                self.same_array(path, f"mmap row {k}", np.asarray(mm[k:k + 1]), want[k:k + 1])

    def csv(self, path, columns, seq, time):
        """Check a .csv with pandas: columns (name, values), seq_num, time, exact values."""
        self.read(path)
        names = [name for name, _ in columns]
        is_str = any(w.dtype.kind == "U" for _, w in columns)
        # round_trip: pandas' default float parser may be off by one ulp.
        df = pd.read_csv(path, float_precision="round_trip", keep_default_na=not is_str,
                         dtype={c: str for c in names} if is_str else None)
        if list(df.columns) != ["seq_num", "time"] + names:
            self.fail(path, f"columns {list(df.columns)}, want {['seq_num', 'time'] + names}")
        if len(df) != len(seq):
            self.fail(path, f"{len(df)} rows, want {len(seq)}")
        if len(df) == 0:
            return
        self.same_array(path, "seq_num column", df["seq_num"].to_numpy(), seq)
        self.same_array(path, "time column", df["time"].to_numpy(), time)
        for name, w in columns:
            g = df[name].to_numpy()
            if g.dtype.kind != w.dtype.kind and not (g.dtype.kind == "O" and w.dtype.kind == "U") \
                    and not (g.dtype.kind in "iu" and w.dtype.kind in "iu"):
                self.fail(path, f"column {name!r}: pandas reads {g.dtype}, want {w.dtype}")
            self.same_array(path, f"column {name!r}", g.astype(w.dtype), w)

    def tif(self, path, want):
        """Check a .tif with tifffile: one page per frame of want (every dimension but the
        last two flattened), each equal to its frame in the dtype's own pixels (bool as
        uint8), and ImageJ metadata exactly for the dtypes tifffile writes ImageJ files of."""
        data = self.read(path)
        frames = want.reshape(-1, *want.shape[-2:]) if want.size else want.reshape(0, 1, 1)
        if want.dtype.kind == "b":
            frames = frames.astype(np.uint8)
        if len(frames) == 0:
            if data != b"II*\0\0\0\0\0":
                self.fail(path, f"no frames: {data[:16]!r}, want a TIFF header of no images")
            return
        with tifffile.TiffFile(path) as tf:
            imagej = frames.dtype.char in "BHhf"
            if tf.is_imagej != imagej:
                self.fail(path, f"is_imagej {tf.is_imagej} for {want.dtype}")
            # tifffile strips the description's final newline when it reads it.
            if imagej and tf.pages[0].description != \
                    tifffile.imagej_description(frames.shape, axes="TYX").strip():
                self.fail(path, f"ImageJ description {tf.pages[0].description!r}")
            if len(tf.pages) != len(frames):
                self.fail(path, f"{len(tf.pages)} pages, want {len(frames)}")
            for k, page in enumerate(tf.pages):
                got = page.asarray()
                if got.dtype != frames.dtype or got.shape != frames[k].shape \
                        or got.tobytes() != frames[k].tobytes():
                    self.fail(path, f"page {k}: {got.dtype} {got.shape} differs from frame {k} "
                                    f"({frames.dtype} {frames[k].shape})")

    def external(self, path, rows):
        """Check an external field's .npy or .tif: the reference has no handlers, so its
        values are not checked, but it must either read (as many rows as events; for a .tif a
        whole number of pages per event) or fail with EIO."""
        try:
            self.read(path)
        except OSError as e:
            if e.errno != errno.EIO:
                self.fail(path, f"reading fails with {e}, want success or EIO")
            return
        if path.endswith(".npy") and len(np.load(path, mmap_mode="r")) != rows:
            self.fail(path, f"{len(np.load(path, mmap_mode='r'))} rows, want {rows}")
        if path.endswith(".tif") and rows:
            with tifffile.TiffFile(path) as tf:
                if len(tf.pages) % rows:
                    self.fail(path, f"{len(tf.pages)} pages for {rows} events")

    def expect_eio(self, path):
        try:
            with open(path, "rb") as f:
                f.read()
        except OSError as e:
            if e.errno == errno.EIO:
                self.files += 1
                return
            self.fail(path, f"reading fails with {e}, want EIO")
        self.fail(path, "reads fine, want EIO (values that cannot form one array)")


def plain(v):
    """Documents as JSON would hold them: numpy values become lists and Python numbers."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (np.ndarray, np.generic)):
        return v.tolist()
    return v


def json_diff(got, want, where="$"):
    """Return the path of the first difference (NaN equals NaN; bool, int, float distinct)."""
    if type(got) is not type(want):
        return f"{where} ({type(got).__name__} {got!r:.80} vs {type(want).__name__} {want!r:.80})"
    if isinstance(want, dict):
        if set(got) != set(want):
            return f"{where} (keys {sorted(set(got) ^ set(want))[:5]})"
        for k in want:
            d = json_diff(got[k], want[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(want, list):
        if len(got) != len(want):
            return f"{where} (length {len(got)} vs {len(want)})"
        for i, (g, w) in enumerate(zip(got, want)):
            d = json_diff(g, w, f"{where}[{i}]")
            if d:
                return d
        return None
    if isinstance(want, float) and math.isnan(want) and math.isnan(got):
        return None
    if got != want:
        return f"{where} ({got!r:.80} vs {want!r:.80})"
    return None


# --------------------------------------------------------------------------------------------
# The tree


def newest(runs):
    return max(runs, key=lambda r: (r.time, r.uid))


def check_root(c, runs, subset):
    c.listing(c.mnt, [r.uid for r in runs] + ["by-scan-id", "latest"], subset)
    if runs:
        check_link(c, os.path.join(c.mnt, "latest"), newest(runs).uid)
    by_scan = {}
    for r in runs:
        sid = r.stored_start.get("scan_id")
        if isinstance(sid, int) and not isinstance(sid, bool):
            by_scan.setdefault(sid, []).append(r)
    scan_dir = os.path.join(c.mnt, "by-scan-id")
    c.listing(scan_dir, [str(s) for s in by_scan], subset)
    for sid, rs in by_scan.items():
        check_link(c, os.path.join(scan_dir, str(sid)), newest(rs).uid)


def check_link(c, path, uid):
    if not os.path.islink(path):
        c.fail(path, "is not a symlink")
    target = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    if target != os.path.join(c.mnt, uid):
        c.fail(path, f"points to {c.rel(target)}, want {uid}")


# File names of names from documents, as the README's "Names" section states them (written
# here from that text, not from brokerfs's code).
ROOT_RESERVED = {"latest", "by-scan-id"}
RUN_RESERVED = {"start.json", "stop.json", "files.txt"}
STREAM_RESERVED = {"descriptors.json", "time.npy", "time.csv", "timestamps", "config", "time"}


def escape_name(name):
    if name == "":
        return "%"
    if name in (".", ".."):
        return "%2E" * len(name)
    out = []
    raw = name.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25 or b == 0x2F or b < 0x20 or b == 0x7F:
            out.append("%%%02X" % b)
            i += 1
            continue
        if b < 0x80:
            out.append(chr(b))
            i += 1
            continue
        for n in (4, 3, 2):
            try:
                out.append(raw[i:i + n].decode("utf-8"))
                i += n
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append("%%%02X" % b)
            i += 1
    return "".join(out)


def file_names(names, reserved):
    out, groups = {}, {}
    for n in names:
        e = escape_name(n)
        if e.lower() in reserved and not e.startswith("%"):
            e = "%%%02X" % ord(e[0]) + e[1:]
        out[n] = e
        groups.setdefault(e.lower(), []).append(n)
    for group in groups.values():
        group.sort(key=lambda n: (sum(ch.isascii() and ch.isupper() for ch in out[n]), n.encode()))
        for n in group[1:]:
            out[n] = "".join("%%%02X" % ord(ch) if "A" <= ch <= "Z" else ch for ch in out[n])
    return out


TABLE_EXTS = (".csv", ".parquet")


def stream_dir_names(names):
    """Directory names of a run's streams: a name ending in .csv or .parquet (any case) has
    that '.' written %2E, so that it is never another stream's table."""
    out = file_names(names, RUN_RESERVED)
    for n, e in out.items():
        for ext in TABLE_EXTS:
            if len(e) >= len(ext) and e[-len(ext):].lower() == ext:
                out[n] = e[:-len(ext)] + "%2E" + e[-len(ext) + 1:]
                break
    return out


def field_reserved():
    return STREAM_RESERVED | {r[:-4] for r in STREAM_RESERVED if r.endswith((".npy", ".csv", ".tif"))}


def check_run(c, run, keep_field):
    rdir = os.path.join(c.mnt, file_names([run.uid], ROOT_RESERVED)[run.uid])
    streams = streams_of(run, keep_field)
    sname = stream_dir_names(list(streams))
    want = ["start.json"] + [sname[n] + x for n in streams for x in ("",) + TABLE_EXTS] + \
        (["stop.json"] if run.stop is not None else [])
    if any("external" in dk for d in run.descriptors for dk in d["data_keys"].values()):
        want.append("files.txt")
        c.external(os.path.join(rdir, "files.txt"), None)
    c.listing(rdir, want)
    c.json_file(os.path.join(rdir, "start.json"), run.start)
    if run.stop is not None:
        c.json_file(os.path.join(rdir, "stop.json"), run.stop)
    elif os.path.exists(os.path.join(rdir, "stop.json")):
        c.fail(os.path.join(rdir, "stop.json"), "exists for a live run")
    c.runs += 1
    # The streams are checked by the caller, in parallel: the time goes in waiting for the
    # mount (open, read, close), not in Python.
    return [(os.path.join(rdir, sname[s.name]), s) for s in streams.values()]


def iso_time(t):
    """time_iso of an event time: Python's own UTC date-time of it, "" where it has none."""
    try:
        if not math.isfinite(t):
            return ""
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="microseconds")
    except (OverflowError, ValueError, OSError):
        return ""


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def iso_micros(t):
    """The Parquet timestamp of an event time: microseconds since the epoch, or None."""
    if iso_time(t) == "":
        return None
    return (datetime.datetime.fromtimestamp(t, datetime.timezone.utc) - EPOCH) // datetime.timedelta(microseconds=1)


def table_columns(s, expected):
    """The stream table's field columns: (name, field, expected array, data key metadata)."""
    order, seen = [], set()
    for d in s.descriptors:
        for k in sorted(d["data_keys"]):
            if k in s.keys and k not in seen:
                seen.add(k)
                order.append(k)
    used = {"seq_num", "time", "time_iso"} | set(order)
    cols = []
    for f in order:
        arr = expected.get(f)
        if arr is None or arr.ndim != 1 or arr.dtype.kind == "c":
            continue  # external, unencodable, not one value per event, complex
        name = f
        if name in ("seq_num", "time", "time_iso"):
            while name in used:
                name += "_"
            used.add(name)
        dk = next(d["data_keys"][f] for d in s.descriptors if f in d["data_keys"])
        meta = {k: dk[k] for k in ("units", "source", "dtype") if isinstance(dk.get(k), str)}
        cols.append((name, f, arr, meta))
    return cols


def from_text(path, c, what, texts, dtype):
    """Values written as text (CSV, or JavaScript's number text) as an array of dtype."""
    try:
        if dtype.kind == "f":
            return np.array([float(x) for x in texts], dtype="<f8").astype(dtype)
        if dtype.kind in "iu":
            return np.array([int(x) for x in texts], dtype=dtype)
        if dtype.kind == "b":
            bad = [x for x in texts if x not in ("True", "False", True, False)]
            if bad:
                c.fail(path, f"{what}: not a boolean: {bad[0]!r}")
            return np.array([x in ("True", True) for x in texts], dtype=dtype)
    except (ValueError, TypeError) as e:
        c.fail(path, f"{what}: {e}")
    return None


def check_table(c, rdir, stem, s, expected):
    """<stream>.csv and <stream>.parquet."""
    cols = table_columns(s, expected)
    names = ["seq_num", "time", "time_iso"] + [n for n, _, _, _ in cols]
    iso = [iso_time(t) for t in s.time]

    path = os.path.join(rdir, stem + ".csv")
    c.read(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(df.columns) != names:
        c.fail(path, f"columns {list(df.columns)}, want {names}")
    if len(df) != len(s.seq):
        c.fail(path, f"{len(df)} rows, want {len(s.seq)}")
    c.same_array(path, "seq_num", from_text(path, c, "seq_num", df["seq_num"], s.seq.dtype), s.seq)
    c.same_array(path, "time", from_text(path, c, "time", df["time"], s.time.dtype), s.time)
    if list(df["time_iso"]) != iso:
        i = next(i for i, (g, w) in enumerate(zip(df["time_iso"], iso)) if g != w)
        c.fail(path, f"time_iso row {i}: {df['time_iso'][i]!r}, want {iso[i]!r}")
    for name, f, w, _ in cols:
        if w.dtype.kind == "U":
            if list(df[name]) != [str(v) for v in w]:
                c.fail(path, f"column {name!r}: strings differ")
            continue
        c.same_array(path, f"column {name!r}", from_text(path, c, name, df[name], w.dtype), w)
    # As a user reads it: pandas' defaults, the time_iso column parsed as dates.
    df = pd.read_csv(path, parse_dates=["time_iso"])
    if list(df.columns) != names or len(df) != len(s.seq):
        c.fail(path, f"pandas.read_csv defaults: columns {list(df.columns)}, {len(df)} rows")

    path = os.path.join(rdir, stem + ".parquet")
    data = c.read(path)
    if data[:4] != b"PAR1" or data[-4:] != b"PAR1":
        c.fail(path, "not a Parquet file (no PAR1 magic)")
    if c.parquet_reader:
        check_parquet(c, path, s, cols, names)


PARQUET_TYPES = {"f8": ("DOUBLE", None), "f4": ("FLOAT", None), "f2": ("FLOAT", None), "b1": ("BOOLEAN", None),
                 "i8": ("INT64", (64, True)), "i4": ("INT32", (32, True)), "i2": ("INT32", (16, True)),
                 "i1": ("INT32", (8, True)), "u8": ("INT64", (64, False)), "u4": ("INT32", (32, False)),
                 "u2": ("INT32", (16, False)), "u1": ("INT32", (8, False))}


def check_parquet(c, path, s, cols, names):
    """Read a <stream>.parquet with hyparquet and compare it with the documents."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "parquet_read.mjs")
    p = subprocess.run(["node", script, c.parquet_reader, path], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        c.fail(path, f"hyparquet cannot read it: {p.stderr.strip()[-2000:]}")
    got = json.loads(p.stdout)
    schema = {e["name"]: e for e in got["schema"]}
    if [e["name"] for e in got["schema"]] != names:
        c.fail(path, f"columns {[e['name'] for e in got['schema']]}, want {names}")
    if int(got["num_rows"]) != len(s.seq):
        c.fail(path, f"{got['num_rows']} rows, want {len(s.seq)}")
    want_types = {"seq_num": ("INT64", (64, True)), "time": ("DOUBLE", None)}
    for name, _, w, _ in cols:
        want_types[name] = ("BYTE_ARRAY", "STRING") if w.dtype.kind == "U" else PARQUET_TYPES[w.dtype.str[1:]]
    for name, (typ, logical) in want_types.items():
        e = schema[name]
        lt = e["logical"] or {}
        if isinstance(logical, tuple):
            glog = (lt.get("bitWidth"), lt.get("isSigned")) if lt.get("type") == "INTEGER" else None
            ok = e["type"] == typ and (glog == logical or (glog is None and logical == (64, True)))
        elif logical == "STRING":
            ok = e["type"] == typ and (lt.get("type") == "STRING" or e["converted"] == "UTF8")
        else:
            ok = e["type"] == typ and not lt
        if not ok or e["repetition"] != "REQUIRED":
            c.fail(path, f"column {name!r}: type {e}, want {typ} {logical} REQUIRED")
    e = schema["time_iso"]
    if e["type"] != "INT64" or (e["logical"] or {}).get("type") != "TIMESTAMP" or e["logical"].get("unit") != "MICROS" \
            or e["logical"].get("isAdjustedToUTC") is not True or e["repetition"] != "OPTIONAL":
        c.fail(path, f"column time_iso: type {e}, want an optional INT64 TIMESTAMP(MICROS, UTC)")

    values = got["columns"]
    c.same_array(path, "seq_num", from_text(path, c, "seq_num", values["seq_num"], s.seq.dtype), s.seq)
    c.same_array(path, "time", from_text(path, c, "time", values["time"], s.time.dtype), s.time)
    want_us = [iso_micros(t) for t in s.time]
    got_us = [None if v is None else int(v) for v in values["time_iso"]]
    if got_us != want_us:
        i = next(i for i, (g, w) in enumerate(zip(got_us, want_us)) if g != w)
        c.fail(path, f"time_iso row {i}: {got_us[i]}, want {want_us[i]}")
    for name, _, w, _ in cols:
        if w.dtype.kind == "U":
            if values[name] != [str(v) for v in w]:
                c.fail(path, f"column {name!r}: strings differ")
            continue
        c.same_array(path, f"column {name!r}", from_text(path, c, name, values[name], w.dtype), w)

    meta = json.loads(got["kv"].get("brokerfs.columns", "null"))
    want_meta = {name: m for name, _, _, m in cols if m}
    if meta != want_meta:
        c.fail(path, f"brokerfs.columns metadata {meta}, want {want_meta}")


def check_stream(c, sdir, s):
    fields = sorted(s.keys)
    config = s.descriptors[0].get("configuration") or {}
    want = {"descriptors.json", "time.npy", "time.csv"}
    if fields:
        want.add("timestamps")
    if config:
        want.add("config")
    expected, unencodable = {}, set()
    fname = file_names(fields, field_reserved())
    for f in fields:
        want.add(fname[f] + ".npy")
        if f in s.external:
            if len(s.keys[f].get("shape", [])) <= 1:
                want.add(fname[f] + ".csv")
            else:
                want.add(fname[f] + ".tif")
            continue
        try:
            expected[f] = expected_field(s.keys[f], s.values(f))
            if expected[f].ndim <= 2:
                want.add(fname[f] + ".csv")
            elif expected[f].dtype.kind != "U":
                want.add(fname[f] + ".tif")
        except Unencodable:
            unencodable.add(f)
    got = set(os.listdir(sdir))
    # An unencodable field may or may not list a .csv or .tif (its shape is unknown); either
    # way it fails.
    got -= {fname[f] + ext for f in unencodable for ext in (".csv", ".tif")}
    if got != want:
        c.fail(sdir, f"listing differs: missing {sorted(want - got)}, "
                     f"unexpected {sorted(got - want)}")

    c.json_file(os.path.join(sdir, "descriptors.json"), s.descriptors)
    c.npy(os.path.join(sdir, "time.npy"), s.time)
    c.csv(os.path.join(sdir, "time.csv"), [], s.seq, s.time)
    check_time_csv_defaults(c, os.path.join(sdir, "time.csv"), s)
    for f, arr in expected.items():
        c.npy(os.path.join(sdir, fname[f] + ".npy"), arr)
        if arr.ndim == 1:
            c.csv(os.path.join(sdir, fname[f] + ".csv"), [(f, arr)], s.seq, s.time)
        elif arr.ndim == 2:
            cols = [(f"{f}[{i}]", arr[:, i]) for i in range(arr.shape[1])]
            c.csv(os.path.join(sdir, fname[f] + ".csv"), cols, s.seq, s.time)
        if fname[f] + ".tif" in want:
            c.tif(os.path.join(sdir, fname[f] + ".tif"), arr)
    for f in sorted(s.external):
        for ext in (".npy", ".csv", ".tif"):
            if fname[f] + ext in want:
                c.external(os.path.join(sdir, fname[f] + ext), len(s.rows))
    for f in sorted(unencodable):
        c.expect_eio(os.path.join(sdir, fname[f] + ".npy"))
        for ext in (".csv", ".tif"):
            if os.path.exists(os.path.join(sdir, fname[f] + ext)):
                c.expect_eio(os.path.join(sdir, fname[f] + ext))
    if fields:
        tdir = os.path.join(sdir, "timestamps")
        tname = file_names(fields, set())
        c.listing(tdir, [tname[f] + ".npy" for f in fields])
        for f in fields:
            c.npy(os.path.join(tdir, tname[f] + ".npy"), s.timestamps(f))
    if config:
        cdir = os.path.join(sdir, "config")
        cname = file_names(list(config), set())
        c.listing(cdir, [cname[obj] + ".json" for obj in config])
        for obj, conf in config.items():
            c.json_file(os.path.join(cdir, cname[obj] + ".json"), conf)
    return expected


def check_time_csv_defaults(c, path, s):
    """time.csv with pandas' defaults, as a user would read it."""
    df = pd.read_csv(path)
    if list(df.columns) != ["seq_num", "time"] or len(df) != len(s.time):
        c.fail(path, f"pandas.read_csv defaults: columns {list(df.columns)}, {len(df)} rows")
    if len(df) and not np.allclose(df["time"].to_numpy(), s.time, rtol=1e-15, atol=0):
        c.fail(path, "pandas.read_csv defaults: times differ")


# --------------------------------------------------------------------------------------------
# Command line


def matches(start, query):
    """Equality of (dotted) keys: the subset of Mongo queries the tests use."""
    for key, want in query.items():
        if key.startswith("$") or isinstance(want, dict):
            raise SystemExit(f"expect.py: --query supports only equality, not {key}: {want}")
        v = start
        for part in key.split("."):
            if not isinstance(v, dict) or part not in v:
                return False
            v = v[part]
        if v != want:
            return False
    return True


def merge_patch(target, patch):
    """RFC 7396, as its section 2 writes it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    target = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def transformer(funcs, path, rules_file):
    """A function (kind, stored document) -> the document a mount must show."""
    if path:
        sys.path.insert(0, path)
    fns = {}
    for spec in funcs:
        kind, _, dotted = spec.partition("=")
        module, _, name = dotted.rpartition(".")
        fns[kind] = getattr(importlib.import_module(module), name)
    rules = {}
    if rules_file:
        with open(rules_file) as f:
            rules = json.load(f)

    def apply(kind, stored):
        try:
            doc = copy.deepcopy(stored)
            if kind in fns:
                doc = fns[kind](doc)
            for rule in rules.get(kind, []):
                if matches(stored, rule.get("match") or {}):
                    doc = merge_patch(doc, rule["patch"])
        except Exception:
            return stored
        return doc if doc.get("uid") == stored.get("uid") else stored
    return apply


def transform_run(run, apply):
    run.start = apply("start", run.stored_start)
    if run.stop is not None:
        run.stop = apply("stop", run.stop)
    run.descriptors = [apply("descriptor", d) for d in run.descriptors]


def field_filter(include, exclude):
    def keep(name):
        if include and not any(fnmatch.fnmatchcase(name, g) for g in include):
            return False
        return not any(fnmatch.fnmatchcase(name, g) for g in exclude)
    return keep


def summary(runs):
    for r in sorted(runs, key=lambda r: (r.time, r.uid)):
        print(json.dumps({"path": r.path, "uid": r.uid, "scan_id": r.start.get("scan_id"),
                          "plan_name": r.start.get("plan_name"), "time": r.time,
                          "exit_status": r.stop["exit_status"] if r.stop else "live"}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", action="store_true")
    p.add_argument("--subset", action="store_true")
    p.add_argument("--query", type=json.loads, default={})
    p.add_argument("--include", action="append", default=[])
    p.add_argument("--exclude", action="append", default=[])
    p.add_argument("--transform", action="append", default=[])
    p.add_argument("--transform-path")
    p.add_argument("--transform-file")
    p.add_argument("--parquet-reader", default="")
    p.add_argument("paths", nargs="+", metavar="MOUNTPOINT FILE")
    a = p.parse_args()
    if a.summary:
        summary([Run(f) for f in a.paths])
        return 0
    mnt, files = os.path.abspath(a.paths[0]), a.paths[1:]
    runs = [r for r in (Run(f) for f in files) if matches(r.start, a.query)]
    if a.transform or a.transform_file:
        apply = transformer(a.transform, a.transform_path, a.transform_file)
        for r in runs:
            transform_run(r, apply)
    keep = field_filter(a.include, a.exclude)
    c = Checker(mnt)
    c.parquet_reader = a.parquet_reader

    def one_stream(task):
        sc = Checker(mnt)
        sc.parquet_reader = a.parquet_reader
        sdir, s = task
        expected = check_stream(sc, sdir, s)
        # The stream's tables sit beside its directory, named after it.
        check_table(sc, os.path.dirname(sdir), os.path.basename(sdir), s, expected)
        return sc.files

    try:
        check_root(c, runs, a.subset)
        tasks = []
        for r in runs:
            tasks += check_run(c, r, keep)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            # In order, so that the first mismatch reported is the same on every run.
            for n in pool.map(one_stream, tasks):
                c.files += n
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    except Exception:  # an error reading the mount: report it with where it happened
        traceback.print_exc()
        print("ERROR: the check failed with an exception (above)", file=sys.stderr)
        return 1
    print(f"checked {c.runs} runs, {c.files} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
