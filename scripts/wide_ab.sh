#!/usr/bin/env bash
# The wide field's first read (stat + 1 MiB reads of spectrum.npy on a fresh mount, empty cache
# dir) for several brokerfs binaries alternated round by round, beside a plain read of the run
# file (1 MiB preads: what the disk takes) and Python decoding it into numpy (the bench's
# baseline), each cold. Only the run file is evicted from the page cache (fadvise DONTNEED), not
# the whole machine's cache: other sessions' work is left alone. Needs root and the catalog
# `go run ./bench -only wide -cache DIR` generates.
#
#   scripts/wide_ab.sh ROUNDS NAME=BIN[:VAR=VALUE]...   prints one line per read, then medians
#
# CACHE (default /var/tmp/brokerfs-bench-cache) holds the catalog; WORK (default
# /var/tmp/brokerfs-wide-ab) the mount and cache dir.
set -euo pipefail
rounds=$1; shift
cache=${CACHE:-/var/tmp/brokerfs-bench-cache}
work=${WORK:-/var/tmp/brokerfs-wide-ab}
py=/usr/bin/python3
src=$(ls -d "$cache"/wide-8000-4096-p100)
file=$(ls "$src"/*.msgpack)
uid=$(basename "$file" .msgpack)
mnt=$work/mnt
mkdir -p "$mnt"
out=$work/results.txt
: > "$out"
evict() { $py -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$file"; }
cat > "$work/read.py" <<'PY'
import os, sys, time
t = time.perf_counter()
if sys.argv[1] == "mount":
    os.stat(sys.argv[2])
fd, n = os.open(sys.argv[2], os.O_RDONLY), 0
while True:
    b = os.pread(fd, 1 << 20, n)
    if not b:
        break
    n += len(b)
print("%.1f %d" % ((time.perf_counter() - t) * 1000, n))
PY
cat > "$work/decode.py" <<'PY'
import sys, time
import msgpack
import numpy as np
t = time.perf_counter()
def hook(d):
    if d.get(b"nd"):
        return np.frombuffer(d[b"data"], dtype=d[b"type"]).reshape(d[b"shape"])
    return d
xs = []
with open(sys.argv[1], "rb") as f:
    for name, doc in msgpack.Unpacker(f, raw=False, object_hook=hook, max_buffer_size=1 << 30):
        if name == "event_page":
            xs.extend(doc["data"]["spectrum"])
a = np.stack(xs)
assert a.shape == (8000, 4096)
print("%.1f" % ((time.perf_counter() - t) * 1000))
PY
for r in $(seq "$rounds"); do
  for spec in "$@"; do
    name=${spec%%=*}; rest=${spec#*=}; bin=${rest%%:*}; env=()
    [[ $rest == *:* ]] && env=("${rest#*:}")
    rm -rf "$work/cache"; mkdir -p "$work/cache"
    env "${env[@]}" "$bin" mount --list-ttl 2s --cache-dir "$work/cache" "$src" "$mnt" > "$work/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
    ls "$mnt" > /dev/null
    evict
    res=$($py "$work/read.py" mount "$mnt/$uid/primary/spectrum.npy"); ms=${res% *}; bytes=${res#* }
    umount "$mnt"; wait "$pid" || true
    [[ $bytes == 262144128 ]] || { echo "$name read $bytes bytes" >&2; exit 1; }
    echo "$name $ms" | tee -a "$out"
  done
  evict; res=$($py "$work/read.py" file "$file"); echo "disk ${res% *}" | tee -a "$out"
  evict; echo "python $($py "$work/decode.py" "$file")" | tee -a "$out"
done
echo "medians (ms), load $(cut -d' ' -f1-3 /proc/loadavg):"
$py - "$out" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    runs.setdefault(k, []).append(float(v))
for k, v in runs.items():
    print("  %-10s %7.0f  (%.0f-%.0f, %d reads)" % (k, statistics.median(v), min(v), max(v), len(v)))
PY
