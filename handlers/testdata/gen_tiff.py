"""Write AD_TIFF frame series for handlers/tiff tests.

usage: gen_tiff.py OUTDIR

Series written by Pillow (8/16-bit unsigned, 32-bit signed and float frames; none, LZW,
Deflate and PackBits; predictors 2 and 3; RGB) and by a minimal TIFF writer below (what
Pillow cannot write: uint32, big-endian int16, float64, several strips, BigTIFF), plus broken
files. Each series <name> has frames template % (OUTDIR + "/", <name>, j), its frames
stacked as little-endian C-order bytes in OUTDIR/<name>.stack.bin, and an entry
{"name", "template", "dtype", "frame_shape", "frames"} in OUTDIR/manifest.json.
"""
import json
import os
import struct
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
rng = np.random.default_rng(5)
manifest = []
H, W, N = 24, 20, 6


def series(name, template, frames, write):
    for j, fr in enumerate(frames):
        write(template % (out + "/", name, j), fr)
    stack = np.stack(frames)
    stack = stack.astype(stack.dtype.newbyteorder("<"))
    with open(os.path.join(out, name + ".stack.bin"), "wb") as f:
        f.write(stack.tobytes())
    manifest.append({"name": name, "template": template, "dtype": stack.dtype.str,
                     "frame_shape": list(stack.shape[1:]), "frames": len(frames)})


def pil(compression=None, **kw):
    def write(path, fr):
        Image.fromarray(fr).save(path, compression=compression, **kw)
        back = np.array(Image.open(path))
        assert back.shape == fr.shape and (back == fr).all(), path
    return write


def frames(dtype, lo, hi, shape=(H, W)):
    if np.dtype(dtype).kind == "f":
        return [(rng.random(shape) * (hi - lo) + lo).astype(dtype) for _ in range(N)]
    return [rng.integers(lo, hi, size=shape).astype(dtype) for _ in range(N)]


T1, T2 = "%s%s_%05d.tiff", "%s%s_%6.6d.tif"
for comp in [None, "tiff_lzw", "tiff_adobe_deflate", "packbits"]:
    c = comp or "raw"
    series("pil_u2_" + c, T1, frames("<u2", 0, 65535), pil(comp))
    series("pil_i4_" + c, T2, frames("<i4", -2**31, 2**31 - 1), pil(comp))
    series("pil_f4_" + c, T1, frames("<f4", -1e3, 1e3), pil(comp))
    series("pil_u1_" + c, T1, frames("u1", 0, 255), pil(comp))
series("pil_u2_pred2", T1, frames("<u2", 0, 65535), pil("tiff_lzw", tiffinfo={317: 2}))
series("pil_f4_pred3", T1, frames("<f4", -1e3, 1e3), pil("tiff_adobe_deflate", tiffinfo={317: 3}))
series("pil_rgb", T1, frames("u1", 0, 255, (H, W, 3)), pil())


def raw_tiff(order="<", rps=None, big=False, pages=1, tiled=False):
    """A minimal uncompressed single-sample TIFF writer."""
    def write(path, fr):
        h, w = fr.shape
        a = fr.astype(fr.dtype.newbyteorder(order))
        bo = b"II" if order == "<" else b"MM"
        e = order
        data = a.tobytes()
        r = rps or h
        rowb = w * a.dtype.itemsize
        strips = [data[i * rowb:min(i + r, h) * rowb] for i in range(0, h, r)]
        fmt = {"u": 1, "i": 2, "f": 3}[a.dtype.kind]
        head = 16 if big else 8
        offs, pos = [], head
        for s in strips:
            offs.append(pos)
            pos += len(s)
        LONG, SHORT, LONG8 = 4, 3, 16
        ot = LONG8 if big else LONG
        tags = [(256, LONG, [w]), (257, LONG, [h]), (258, SHORT, [a.dtype.itemsize * 8]), (259, SHORT, [1]),
                (262, SHORT, [1]), (273, ot, offs), (277, SHORT, [1]), (278, LONG, [r]),
                (279, ot, [len(s) for s in strips]), (339, SHORT, [fmt])]
        if tiled:
            tags.append((322, LONG, [16]))
        tags.sort()
        ifd = pos
        esz, csz, nsz, vsz = (20, 8, 8, 8) if big else (12, 2, 4, 4)
        extra = ifd + csz + len(tags) * esz + nsz
        body, tail = b"", b""
        size = {SHORT: 2, LONG: 4, LONG8: 8}
        code = {SHORT: "H", LONG: "I", LONG8: "Q"}
        for tag, typ, vals in tags:
            raw = struct.pack(e + code[typ] * len(vals), *vals)
            if len(raw) <= vsz:
                val = raw.ljust(vsz, b"\0")
            else:
                val = struct.pack(e + ("Q" if big else "I"), extra + len(tail))
                tail += raw
            if big:
                body += struct.pack(e + "HHQ", tag, typ, len(vals)) + val
            else:
                body += struct.pack(e + "HHI", tag, typ, len(vals)) + val
        nxt = extra + len(tail) if pages > 1 else 0
        with open(path, "wb") as f:
            if big:
                f.write(bo + struct.pack(e + "HHHQ", 43, 8, 0, ifd))
            else:
                f.write(bo + struct.pack(e + "HI", 42, ifd))
            f.write(b"".join(strips))
            f.write(struct.pack(e + ("Q" if big else "H"), len(tags)) + body + struct.pack(e + ("Q" if big else "I"), nxt))
            f.write(tail)
            if pages > 1:  # a second IFD, a copy of the first (its values still point back)
                f.write(struct.pack(e + ("Q" if big else "H"), len(tags)) + body + struct.pack(e + ("Q" if big else "I"), 0))
    return write


series("raw_u4_strips", T1, frames("<u4", 0, 2**32 - 1), raw_tiff(rps=5))
series("raw_i2_be", T2, frames(">i2", -2**15, 2**15 - 1), raw_tiff(order=">", rps=7))
series("raw_f8", T1, frames("<f8", -1, 1), raw_tiff())
series("raw_u2_bigtiff", T1, frames("<u2", 0, 65535), raw_tiff(big=True, rps=10))
series("raw_f4_be_bigtiff", T1, frames(">f4", -5, 5), raw_tiff(order=">", big=True))
raw_tiff(pages=2)(os.path.join(out, "multipage.tiff"), frames("<u2", 0, 9)[0])
raw_tiff(tiled=True)(os.path.join(out, "tiled.tiff"), frames("<u2", 0, 9)[0])
with open(os.path.join(out, "truncated.tiff"), "wb") as f:
    f.write(open(os.path.join(out, "pil_u2_raw_00000.tiff"), "rb").read()[:300])
with open(os.path.join(out, "notatiff.tiff"), "wb") as f:
    f.write(b"P5\n20 24\n255\n" + bytes(480))

# Python's %-formatting of file-name templates, for the PyFormat test.
cases = []
for t in ["%s%s_%05d.tiff", "%s%s_%6.6d.tif", "%s%s_%d", "%s%s_%5.3d", "%s%s_%-6d|", "%s%s_%+04d",
          "%s%s_% d", "%s%s_%x_%%", "%s%s_%#o", "%s%s_%08.3d", "%s%s_%-08d|", "%.3s%s%i", "%10s%s%u",
          "%r%s%d", "%s%s%3.1d"]:
    for j in [0, 7, 123456, -42]:
        cases.append({"template": t, "j": j, "want": t % ("/d/", "f", j)})
with open(os.path.join(out, "pyformat.json"), "w") as f:
    json.dump(cases, f)

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f)
