#!/usr/bin/python3
"""Small real files for the hostile-catalog and fuzz tests of handlers/builtin:
gen_hostile_small.py DIR makes

DIR/ok/                         the allowed root in the tests
  img_000000.tiff ...5          AD_TIFF frames, 3x4 uint16, frame j holds j*100 + arange(12)
  sub/x_dir/                    a directory, so that "dir/../../" style indices resolve
  seq_0.npy seq_1.npy           NPY_SEQ files, (2, 3) float32, value index*10 + arange(6)
  whole.npy                     (4, 2, 3) <i2 arange(24)
  big.npy                       (3, 2) >u4 (big-endian) arange(6) * 70000
  ad.h5                         /entry/data/data (6, 3, 4) uint16 j*100+arange(12), gzip+shuffle chunks of one frame
  tpx.h5                        /entry/instrument/detector/data (4, 2, 2) float32
  xsp3.h5                       entry/instrument/detector/data (3, 2, 5) float64
  eiger_1_master.h5             entry/data/data_000001 -> eiger_1_data_000001.h5 (external link), (2, 2, 2) uint32
DIR/secret/
  img_000000.tiff               a TIFF outside the root (value 4242)
  secret.npy                    (1,) int64 [4242]
"""
import os
import sys

import h5py
import numpy as np
from PIL import Image

d = sys.argv[1]
ok = os.path.join(d, "ok")
secret = os.path.join(d, "secret")
os.makedirs(os.path.join(ok, "sub", "x_dir"), exist_ok=True)
os.makedirs(secret, exist_ok=True)
for j in range(6):
    Image.fromarray((j * 100 + np.arange(12)).reshape(3, 4).astype(np.uint16)).save(os.path.join(ok, "img_%6.6d.tiff" % j))
Image.fromarray(np.full((3, 4), 4242, np.uint16)).save(os.path.join(secret, "img_000000.tiff"))
for i in range(2):
    np.save(os.path.join(ok, "seq_%d.npy" % i), (i * 10 + np.arange(6)).reshape(2, 3).astype(np.float32))
np.save(os.path.join(ok, "whole.npy"), np.arange(24, dtype="<i2").reshape(4, 2, 3))
np.save(os.path.join(ok, "big.npy"), (np.arange(6, dtype=">u4") * 70000).reshape(3, 2))
np.save(os.path.join(secret, "secret.npy"), np.array([4242], dtype=np.int64))
with h5py.File(os.path.join(ok, "ad.h5"), "w") as f:
    data = (np.arange(6)[:, None, None] * 100 + np.arange(12).reshape(3, 4)).astype(np.uint16)
    f.create_dataset("/entry/data/data", data=data, chunks=(1, 3, 4), compression="gzip", shuffle=True)
with h5py.File(os.path.join(ok, "tpx.h5"), "w") as f:
    f.create_dataset("/entry/instrument/detector/data", data=np.arange(16, dtype=np.float32).reshape(4, 2, 2))
with h5py.File(os.path.join(ok, "xsp3.h5"), "w") as f:
    f.create_dataset("entry/instrument/detector/data", data=np.arange(30, dtype=np.float64).reshape(3, 2, 5))
with h5py.File(os.path.join(ok, "eiger_1_data_000001.h5"), "w") as f:
    f.create_dataset("entry/data/data", data=np.arange(8, dtype=np.uint32).reshape(2, 2, 2))
with h5py.File(os.path.join(ok, "eiger_1_master.h5"), "w") as f:
    f.create_group("entry/data")
    f["entry/data/data_000001"] = h5py.ExternalLink("eiger_1_data_000001.h5", "entry/data/data")
