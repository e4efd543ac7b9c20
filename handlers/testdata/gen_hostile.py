#!/usr/bin/python3
"""Hostile files for the handlers' --allowed-roots tests: gen_hostile.py DIR makes

DIR/secret/         outside the allowed root (the tests allow DIR/ok only)
  s.h5              /entry/data/data = full((1, 2, 2), 42, uint8), a secret
  passwd            64 bytes of 'S', a secret read as raw storage
  fifo.h5           (made by the test: mkfifo)
DIR/ok/
  good.h5           /entry/data/data = arange(8, uint8).reshape(2, 2, 2)
  target.h5         /entry/data/data = full((1, 2, 2), 7, uint8): an allowed link target
  elink_abs.h5      /entry/data/data is an external link to DIR/secret/s.h5 (absolute)
  elink_rel.h5      the same link, relative: ../secret/s.h5
  elink_group.h5    /entry is an external link to ../secret/s.h5:/entry (an intermediate group)
  elink_ok.h5       /entry/data/data is an external link to target.h5 (inside: allowed)
  elink_fifo.h5     an external link to fifo_target.h5, which the test makes a FIFO
  ext_fifo.h5       external raw storage in fifo.raw, which the test makes a FIFO
  ext_abs.h5        /entry/data/data (1, 4, 4) uint8 in external raw storage DIR/secret/passwd
  ext_rel.h5        the same, relative name ../secret/passwd
  ext_ok.h5         external raw storage raw.bin in ok/ (allowed): bytes 0..15
  vds.h5            /entry/data/data is a virtual dataset over DIR/secret/s.h5
  vds_ok.h5         a virtual dataset over target.h5 (allowed)
  vds_nested.h5     a virtual dataset over ./ext_abs.h5's dataset (external storage outside)
  vds_self.h5       a virtual dataset over a dataset of its own file in external storage outside
"""
import os
import sys

import h5py
import numpy as np

d = sys.argv[1]
secret = os.path.join(d, "secret")
ok = os.path.join(d, "ok")
os.makedirs(secret, exist_ok=True)
os.makedirs(ok, exist_ok=True)
S = os.path.join(secret, "s.h5")
with h5py.File(S, "w") as f:
    f.create_dataset("/entry/data/data", data=np.full((1, 2, 2), 42, np.uint8))
with open(os.path.join(secret, "passwd"), "wb") as f:
    f.write(b"S" * 64)
with h5py.File(os.path.join(ok, "good.h5"), "w") as f:
    f.create_dataset("/entry/data/data", data=np.arange(8, dtype=np.uint8).reshape(2, 2, 2))
with h5py.File(os.path.join(ok, "target.h5"), "w") as f:
    f.create_dataset("/entry/data/data", data=np.full((1, 2, 2), 7, np.uint8))


def link(name, target, obj="/entry/data/data", where="/entry/data/data"):
    with h5py.File(os.path.join(ok, name), "w") as f:
        if where == "/entry":
            f["/entry"] = h5py.ExternalLink(target, obj)
        else:
            f.create_group("/entry/data")
            f[where] = h5py.ExternalLink(target, obj)


link("elink_abs.h5", S)
link("elink_rel.h5", "../secret/s.h5")
link("elink_group.h5", "../secret/s.h5", obj="/entry", where="/entry")
link("elink_ok.h5", "target.h5")
link("elink_fifo.h5", "fifo_target.h5")  # the test makes ok/fifo_target.h5 a FIFO


def external(name, target):
    with h5py.File(os.path.join(ok, name), "w") as f:
        f.create_dataset("/entry/data/data", shape=(1, 4, 4), dtype=np.uint8, external=[(target, 0, 16)])


external("ext_abs.h5", os.path.join(secret, "passwd"))
external("ext_rel.h5", "../secret/passwd")
with open(os.path.join(ok, "raw.bin"), "wb") as f:
    f.write(bytes(range(16)))
external("ext_ok.h5", "raw.bin")
external("ext_fifo.h5", "fifo.raw")  # the test makes ok/fifo.raw a FIFO


def vds(name, src_file, src_name="/entry/data/data", shape=(1, 2, 2), extra=None):
    with h5py.File(os.path.join(ok, name), "w") as f:
        if extra:
            extra(f)
        layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
        layout[:] = h5py.VirtualSource(src_file, src_name, shape=shape)
        f.create_virtual_dataset("/entry/data/data", layout, fillvalue=0)


vds("vds.h5", S)
vds("vds_ok.h5", os.path.join(ok, "target.h5"))
vds("vds_nested.h5", os.path.join(ok, "ext_abs.h5"), shape=(1, 4, 4))


def self_ext(f):
    f.create_dataset("/hidden", shape=(1, 4, 4), dtype=np.uint8, external=[(os.path.join(secret, "passwd"), 0, 16)])


vds("vds_self.h5", ".", src_name="/hidden", shape=(1, 4, 4), extra=self_ext)
