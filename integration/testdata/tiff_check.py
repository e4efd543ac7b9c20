#!/usr/bin/python3
"""Check a mounted <field>.tif against the field's array, with tifffile and PIL.

Usage: tiff_check.py EXPECTED.npy MOUNTED.tif [EXPECTED.npy MOUNTED.tif ...]

EXPECTED.npy is the field as h5py or the raw documents give it, shape (events, ..., H, W). The
.tif must be: st_size equal to the bytes a read returns; classic TIFF; one page per frame
(every dimension but the last two flattened, in C order), each page equal to its frame in the
field's dtype (bool as uint8); for the dtypes tifffile writes ImageJ files of (uint8, uint16,
int16, float32) an ImageJ hyperstack: is_imagej, the description tifffile's
imagej_description gives for (frames, H, W) with axes TYX, and a series of that shape; for
others no ImageJ metadata. PIL, for the dtypes it reads, must see as many frames, each equal.
Prints one line per file; exits 1 with the first difference otherwise.
"""
import os
import sys

import numpy as np
import PIL
import tifffile
from PIL import Image

PIL_MODES = {"B": "L", "H": "I;16", "h": "I", "i": "I", "f": "F"}


def fail(msg):
    print(msg)
    sys.exit(1)


def check(want, path):
    frames = want.reshape(-1, *want.shape[-2:])
    if frames.dtype.kind == "b":
        frames = frames.astype(np.uint8)
    with open(path, "rb") as f:
        data = f.read()
    if os.stat(path).st_size != len(data):
        fail(f"{path}: st_size {os.stat(path).st_size}, a read returns {len(data)} bytes")
    imagej = frames.dtype.char in "BHhf"
    with tifffile.TiffFile(path) as tf:
        if tf.is_bigtiff:
            fail(f"{path}: BigTIFF for {len(data)} bytes")
        if tf.is_imagej != imagej:
            fail(f"{path}: is_imagej {tf.is_imagej} for {frames.dtype}")
        if len(tf.pages) != len(frames):
            fail(f"{path}: {len(tf.pages)} pages, want {len(frames)}")
        for k, page in enumerate(tf.pages):
            got = page.asarray()
            if got.dtype != frames.dtype or got.shape != frames[k].shape \
                    or got.tobytes() != frames[k].tobytes():
                fail(f"{path}: page {k}: {got.dtype} {got.shape}, differs from frame {k}")
        series = tf.series[0]
        if imagej:
            # tifffile strips the description's final newline when it reads it.
            desc = tifffile.imagej_description(frames.shape, axes="TYX").strip()
            if tf.pages[0].description != desc:
                fail(f"{path}: description {tf.pages[0].description!r}, want {desc!r}")
            if series.shape != frames.shape or series.axes != "TYX":
                fail(f"{path}: ImageJ series {series.shape} {series.axes}, want {frames.shape} TYX")
        if series.asarray().tobytes() != frames.tobytes():
            fail(f"{path}: series data differs")
    pil = "not read by PIL"
    mode = PIL_MODES.get(frames.dtype.char)
    if mode:
        im = Image.open(path)
        if getattr(im, "n_frames", 1) != len(frames):
            fail(f"{path}: PIL sees {im.n_frames} frames, want {len(frames)}")
        for k in range(len(frames)):
            im.seek(k)
            if im.mode != mode or im.size != frames[k].shape[::-1]:
                fail(f"{path}: PIL frame {k}: mode {im.mode} size {im.size}")
            if not np.array_equal(np.array(im).astype(np.float64), frames[k].astype(np.float64)):
                fail(f"{path}: PIL frame {k} differs")
        pil = f"PIL {PIL.__version__}: {len(frames)} frames, mode {mode}"
    print(f"{os.path.basename(path)}: {len(frames)} pages of {frames.dtype} {frames.shape[1:]} "
          f"equal, is_imagej {imagej}, {len(data)} bytes; {pil}")


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        fail(__doc__)
    for i in range(0, len(args), 2):
        check(np.load(args[i]), args[i + 1])


if __name__ == "__main__":
    main()
