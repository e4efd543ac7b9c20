"""Benchmark files and the h5py baseline for handlers/hdf5's benchmarks.

usage: bench_hdf5.py gen OUTDIR     write raw.h5 (contiguous) and gzip.h5 (chunks of one
                                   frame, gzip level 4): /entry/data/data, 100 frames of
                                   512x512 uint16 (Poisson counts, as detectors give)
       bench_hdf5.py time FILE     print JSON {"frame_ns", "stack100_ns"}: h5py reading one
                                   frame (data[i:i+1], i cycling) and all 100 frames one by one
"""
import json
import os
import sys
import time

import h5py
import numpy as np

if sys.argv[1] == "gen":
    out = sys.argv[2]
    rng = np.random.default_rng(1)
    data = rng.poisson(100, size=(100, 512, 512)).astype("<u2")
    with h5py.File(os.path.join(out, "raw.h5"), "w") as f:
        f.create_dataset("entry/data/data", data=data)
    with h5py.File(os.path.join(out, "gzip.h5"), "w") as f:
        f.create_dataset("entry/data/data", data=data, chunks=(1, 512, 512), compression="gzip", compression_opts=4)
    sys.exit(0)

with h5py.File(sys.argv[2], "r") as f:
    d = f["entry/data/data"]
    n = d.shape[0]
    for i in range(n):  # warm the page cache as the Go benchmark's warm-up does
        d[i:i + 1]
    reps = 300
    t = time.perf_counter()
    for k in range(reps):
        d[k % n:k % n + 1]
    frame = (time.perf_counter() - t) / reps
    rounds = 3
    t = time.perf_counter()
    for _ in range(rounds):
        for i in range(n):
            d[i:i + 1]
    stack = (time.perf_counter() - t) / rounds
print(json.dumps({"frame_ns": frame * 1e9, "stack100_ns": stack * 1e9}))
