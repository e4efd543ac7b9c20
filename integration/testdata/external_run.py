#!/usr/bin/python3
"""Write runs with external fields, their files and the arrays a mount must show.

Usage: external_run.py DIR

Writes into DIR:

- moved/a/det_1.h5 (chunked + gzip, 6 frames) and moved/b/det_2.h5 (contiguous, 4 frames):
  AD_HDF5 files (dataset /entry/data/data, uint16, frames Y x X), written with h5py.
- cat_msgpack/det.msgpack (suitcase-msgpack: [name, doc] arrays, event_page / datum_page) and
  cat_jsonl/det.jsonl (event and datum documents): the same run, uid in manifest "det_uid".
  Its primary stream has a scalar field x and an external field det: 5 points, frame_per_point
  2, points 0-2 in resource 1 (det_1.h5) and 0-1 in resource 2 (det_2.h5). Both resources
  have root "/beamline/old/root" (which does not exist), so reading needs
  --root-map /beamline/old/root=DIR/moved.
- cat_wrongshape/det.jsonl: the same run, its descriptor giving det the shape (Y, X) and no
  dtype_numpy, as descriptors of real detectors often do.
- expected.npy: det as h5py reads it directly, shape (5, 2, Y, X), uint16.
- cat_nope/nope.jsonl: a run whose external field has a resource of spec "NOPE" (real path).
- myspec/data.bin and cat_myspec/myspec.jsonl: a run of spec "MYSPEC", for
  external_handler.py; myspec_expected.npy is what that handler returns, stacked.
- tiff/scan1/img_00000J.tiff (PIL, uint16) and cat_tiff/tiff.jsonl: an AD_TIFF run of 3
  points with frame_per_point 1; tiff_expected.npy, shape (3, 1, TY, TX).
- moved/c/det_3.h5 (chunked one frame a chunk, no filters, 6 frames) and cat_stored/stored.msgpack:
  a run of 6 points with frame_per_point 2, points 0-2 in det_3.h5 (frames stored as read)
  and 3-5 in det_1.h5 (gzip); stored_expected.npy, shape (6, 2, Y, X), as h5py reads them.
- manifest.json: uids, resource uids, and the real files each run reads.
"""
import json
import os
import sys
import uuid

import h5py
import msgpack
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import external_handler  # noqa: E402

OLD_ROOT = "/beamline/old/root"
Y, X = 64, 48
FPP = 2
TY, TX = 20, 16


def documents(uid, t0, field, key, resources, datums):
    """A run's documents as (name, doc) pairs, event and datum docs.

    resources: resource documents (without run_start); datums: per row, (resource, kwargs).
    """
    start = {"uid": uid, "time": t0, "scan_id": 1, "plan_name": "count", "detectors": [field]}
    desc = {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 0.5, "name": "primary",
            "data_keys": {"x": {"dtype": "number", "shape": [], "source": "SIM:x"},
                          field: key},
            "configuration": {}, "hints": {field: {"fields": [field]}},
            "object_keys": {field: [field], "x": ["x"]}}
    docs = [("start", start), ("descriptor", desc)]
    for r in resources:
        docs.append(("resource", dict(r, run_start=uid)))
    for i, (res, kwargs) in enumerate(datums):
        datum_id = f"{res['uid']}/{i}"
        docs.append(("datum", {"datum_id": datum_id, "resource": res["uid"],
                               "datum_kwargs": kwargs}))
        t = t0 + 1 + i
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": desc["uid"], "time": t,
                               "seq_num": i + 1, "data": {"x": 0.5 * i, field: datum_id},
                               "timestamps": {"x": t, field: t}, "filled": {field: False}}))
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": t0 + 100,
                          "exit_status": "success", "reason": "",
                          "num_events": {"primary": len(datums)}}))
    return docs


def paged(docs):
    """docs with each event as a one-row event_page and each datum as a one-row datum_page."""
    out = []
    for name, d in docs:
        if name == "event":
            out.append(("event_page", {
                "descriptor": d["descriptor"], "uid": [d["uid"]], "time": [d["time"]],
                "seq_num": [d["seq_num"]],
                "data": {k: [v] for k, v in d["data"].items()},
                "timestamps": {k: [v] for k, v in d["timestamps"].items()},
                "filled": {k: [v] for k, v in d["filled"].items()}}))
        elif name == "datum":
            out.append(("datum_page", {
                "datum_id": [d["datum_id"]], "resource": d["resource"],
                "datum_kwargs": {k: [v] for k, v in d["datum_kwargs"].items()}}))
        else:
            out.append((name, d))
    return out


def write_jsonl(path, docs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for name, doc in docs:
            f.write(json.dumps([name, doc]) + "\n")


def write_msgpack(path, docs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        for name, doc in docs:
            f.write(msgpack.packb([name, doc], use_bin_type=True))


def resource(spec, root, rel, **kwargs):
    return {"uid": str(uuid.uuid4()), "spec": spec, "root": root, "resource_path": rel,
            "resource_kwargs": kwargs, "path_semantics": "posix"}


def hdf5_run(out, manifest):
    rng = np.random.default_rng(42)
    moved = os.path.join(out, "moved")
    files = [("a/det_1.h5", 3, dict(chunks=(1, Y, X), compression="gzip", compression_opts=4)),
             ("b/det_2.h5", 2, {})]
    resources, datums, real = [], [], []
    for rel, points, opts in files:
        path = os.path.join(moved, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = rng.integers(0, 65535, size=(points * FPP, Y, X), dtype=np.uint16)
        with h5py.File(path, "w") as f:
            f.create_dataset("/entry/data/data", data=data, **opts)
        res = resource("AD_HDF5", OLD_ROOT, rel, frame_per_point=FPP)
        resources.append(res)
        real.append(path)
        datums += [(res, {"point_number": p}) for p in range(points)]
    # What the mount must show, read by h5py directly (as AD_HDF5 slices a point's frames).
    rows = []
    for res, kw in datums:
        pn = kw["point_number"]
        with h5py.File(os.path.join(moved, res["resource_path"]), "r") as f:
            rows.append(f["/entry/data/data"][pn * FPP:(pn + 1) * FPP])
    expected = np.stack(rows)
    assert expected.dtype == np.uint16 and expected.shape == (5, FPP, Y, X)
    np.save(os.path.join(out, "expected.npy"), expected)

    uid = str(uuid.uuid4())
    key = {"dtype": "array", "shape": [FPP, Y, X], "source": "PV:det",
           "external": "FILESTORE:", "dtype_numpy": "<u2"}
    docs = documents(uid, 1_700_000_000.0, "det", key, resources, datums)
    write_jsonl(os.path.join(out, "cat_jsonl", "det.jsonl"), docs)
    write_msgpack(os.path.join(out, "cat_msgpack", "det.msgpack"), paged(docs))
    # The same run with a descriptor that is wrong, as real ones often are: shape (Y, X), not
    # (FPP, Y, X), and no dtype_numpy. The mount must size det.npy from the files.
    wrong = dict(key, shape=[Y, X])
    del wrong["dtype_numpy"]
    write_jsonl(os.path.join(out, "cat_wrongshape", "det.jsonl"),
                documents(uid, 1_700_000_000.0, "det", wrong, resources, datums))
    manifest.update(det_uid=uid, det_resources=[r["uid"] for r in resources], det_files=real,
                    old_root=OLD_ROOT, moved=moved, frame_shape=[FPP, Y, X])

    # The same files under a spec nobody knows (a real path: only the spec is wrong).
    nope = resource("NOPE", moved, "a/det_1.h5", frame_per_point=FPP)
    uid = str(uuid.uuid4())
    docs = documents(uid, 1_700_001_000.0, "det", key, [nope],
                     [(nope, {"point_number": p}) for p in range(3)])
    write_jsonl(os.path.join(out, "cat_nope", "nope.jsonl"), docs)
    manifest.update(nope_uid=uid, nope_resource=nope["uid"])


def stored_run(out, manifest):
    """A run whose first file keeps its frames as stored bytes (no filters), its second gzip."""
    rng = np.random.default_rng(43)
    moved = os.path.join(out, "moved")
    path = os.path.join(moved, "c/det_3.h5")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=rng.integers(0, 65535, size=(3 * FPP, Y, X), dtype=np.uint16),
                         chunks=(1, Y, X))
    raw = resource("AD_HDF5", OLD_ROOT, "c/det_3.h5", frame_per_point=FPP)
    gz = resource("AD_HDF5", OLD_ROOT, "a/det_1.h5", frame_per_point=FPP)
    datums = [(raw, {"point_number": p}) for p in range(3)] + [(gz, {"point_number": p}) for p in range(3)]
    rows = []
    for res, kw in datums:
        pn = kw["point_number"]
        with h5py.File(os.path.join(moved, res["resource_path"]), "r") as f:
            rows.append(f["/entry/data/data"][pn * FPP:(pn + 1) * FPP])
    np.save(os.path.join(out, "stored_expected.npy"), np.stack(rows))
    uid = str(uuid.uuid4())
    key = {"dtype": "array", "shape": [FPP, Y, X], "source": "PV:det",
           "external": "FILESTORE:", "dtype_numpy": "<u2"}
    docs = documents(uid, 1_700_004_000.0, "det", key, [raw, gz], datums)
    write_msgpack(os.path.join(out, "cat_stored", "stored.msgpack"), paged(docs))
    manifest.update(stored_uid=uid)


def myspec_run(out, manifest):
    root = os.path.join(out, "myspec")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "data.bin"), "wb") as f:
        f.write(bytes([23, 1, 2, 3]))
    res = resource("MYSPEC", root, "data.bin", frame_per_point=2, scale=3)
    datums = [(res, {"point_number": p}) for p in range(4)]
    path = os.path.join(root, "data.bin")
    expected = np.stack([external_handler.frames(path, res["resource_kwargs"], kw)
                         for _, kw in datums])
    np.save(os.path.join(out, "myspec_expected.npy"), expected)
    uid = str(uuid.uuid4())
    key = {"dtype": "array", "shape": list(expected.shape[1:]), "source": "PV:my",
           "external": "FILESTORE:"}
    docs = documents(uid, 1_700_002_000.0, "my", key, [res], datums)
    write_jsonl(os.path.join(out, "cat_myspec", "myspec.jsonl"), docs)
    manifest.update(myspec_uid=uid, myspec_resource=res["uid"])


def tiff_run(out, manifest):
    from PIL import Image
    rng = np.random.default_rng(7)
    root = os.path.join(out, "tiff")
    os.makedirs(os.path.join(root, "scan1"), exist_ok=True)
    template, filename = "%s%s_%6.6d.tiff", "img"
    res = resource("AD_TIFF", root, "scan1", template=template, filename=filename,
                   frame_per_point=1)
    frames = []
    for j in range(3):
        fr = rng.integers(0, 65535, size=(TY, TX), dtype=np.uint16)
        path = template % (os.path.join(root, "scan1") + "/", filename, j)
        Image.fromarray(fr).save(path)
        back = np.array(Image.open(path))
        assert back.dtype == np.uint16 and (back == fr).all(), path
        frames.append(fr)
    expected = np.stack(frames)[:, None]  # (points, fpp, TY, TX)
    np.save(os.path.join(out, "tiff_expected.npy"), expected)
    uid = str(uuid.uuid4())
    key = {"dtype": "array", "shape": [1, TY, TX], "source": "PV:tiff",
           "external": "FILESTORE:"}
    docs = documents(uid, 1_700_003_000.0, "img", key, [res],
                     [(res, {"point_number": p}) for p in range(3)])
    write_jsonl(os.path.join(out, "cat_tiff", "tiff.jsonl"), docs)
    manifest.update(tiff_uid=uid, tiff_resource=res["uid"])


def main():
    out = os.path.abspath(sys.argv[1])
    manifest = {}
    hdf5_run(out, manifest)
    stored_run(out, manifest)
    myspec_run(out, manifest)
    tiff_run(out, manifest)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
