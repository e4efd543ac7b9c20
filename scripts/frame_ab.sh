#!/usr/bin/env bash
# One AD_HDF5 frame through np.load(mmap_mode='r')[507] on a fresh mount (empty cache dir, page
# cache dropped), for several brokerfs binaries alternated round by round, beside h5py reading the
# frame cold and np.load of a plain .npy of the same shape on the local disk, cold (numpy's own
# floor). Needs root and the catalogs `go run ./bench -only hdf5 -cache DIR` generates.
#
#   scripts/frame_ab.sh ROUNDS BIN...    prints "COMP NAME SECONDS" lines, then medians in ms
#
# CACHE (default /var/tmp/brokerfs-bench-cache) holds the catalogs; WORK (default
# /var/tmp/brokerfs-frame-ab) the mounts, cache dirs and the local .npy (524 MB, sparse).
set -euo pipefail
rounds=$1; shift
cache=${CACHE:-/var/tmp/brokerfs-bench-cache}
work=${WORK:-/var/tmp/brokerfs-frame-ab}
py=/usr/bin/python3
mkdir -p "$work"
cat > "$work/load.py" <<'EOF'
import sys, time
import numpy as np
t1 = time.perf_counter()
if sys.argv[1] == "npy":
    a = np.array(np.load(sys.argv[2], mmap_mode="r")[int(sys.argv[3])])
else:
    import h5py
    t1 = time.perf_counter()
    with h5py.File(sys.argv[2], "r") as f:
        a = f["entry/data/data"][int(sys.argv[3])]
t2 = time.perf_counter()
assert int(a.reshape(-1)[0]) == int(sys.argv[3]), "wrong frame"
print(t2 - t1)
EOF
if [ ! -f "$work/cam.npy" ]; then
  $py -c "
import numpy as np
m = np.lib.format.open_memmap('$work/cam.npy', mode='w+', dtype='<u2', shape=(1000, 1, 512, 512))
m[507] = np.random.randint(0, 1000, (1, 512, 512)); m[507, 0, 0, 0] = 507; m.flush()"
fi
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
frame() { # BIN COMP: a fresh mount of the catalog, one frame
  local src=$cache/hdf5-$2-1000-512 mnt cd pid uid
  mnt=$(mktemp -d "$work/mnt.XXXX"); cd=$(mktemp -d "$work/cache.XXXX")
  "$1" mount --cache-dir "$cd" "$src/runs" "$mnt" > "$cd.log" 2>&1 & pid=$!
  for _ in $(seq 200); do mountpoint -q "$mnt" && break; sleep 0.05; done
  uid=$(basename "$(ls "$src/runs")" .msgpack)
  cold
  $py "$work/load.py" npy "$mnt/$uid/primary/cam_image.npy" 507 || echo nan
  umount "$mnt"; wait $pid || true
  rm -rf "$cd" "$cd.log"; rmdir "$mnt"
}
for _ in $(seq "$rounds"); do
  for comp in raw gzip; do
    for b in "$@"; do echo "$comp $(basename "$b") $(frame "$b" $comp)"; done
    cold; echo "$comp h5py $($py "$work/load.py" h5 "$cache/hdf5-$comp-1000-512/frames/cam_000000.h5" 507)"
  done
  cold; echo "raw local-npy $($py "$work/load.py" npy "$work/cam.npy" 507)"
done | tee "$work/results.txt"
$py - "$work/results.txt" <<'EOF'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    c, b, v = line.split()
    if v != "nan":
        d[(c, b)].append(float(v) * 1000)
for (c, b), v in sorted(d.items()):
    print(f"{c} {b}: median {statistics.median(v):.1f} ms of {len(v)} ({min(v):.0f}-{max(v):.0f})")
EOF
