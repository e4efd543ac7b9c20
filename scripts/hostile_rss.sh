#!/usr/bin/env bash
# Peak RSS of brokerfs for hostile documents (issue 9, item 8): a msgpack and a JSONL run each
# holding an event whose one string value is SIZE bytes (a hole in a sparse file, so no disk),
# beside a bit-flipped page, values nested 600 deep and a ragged page
# (integration/testdata/bad_docs.py). For each format and size it mounts the run alone with
# --no-cache, runs `ls -l` of the stream and reads its files whole, and prints VmHWM from
# /proc/PID/status, the wall time and the log lines about skipped documents. Needs root,
# /dev/fuse and python3-msgpack.
#
#   scripts/hostile_rss.sh [SIZE...]     default: 200000000 1000000000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(200000000 1000000000)
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/brokerfs" ./cmd/brokerfs
mkdir -p "$work/mnt"
printf '| format | value | peak RSS (VmHWM) | ls -l + read all | skipped-document log lines |\n|---|---|---|---|---|\n'
for size in "${sizes[@]}"; do
  for format in msgpack jsonl; do
    rm -rf "$work/cat" && mkdir "$work/cat"
    /usr/bin/python3 integration/testdata/bad_docs.py "$work/cat" "$size" >/dev/null
    find "$work/cat" -type f ! -name "bad.$format" -delete
    "$work/brokerfs" mount --no-cache "$work/cat" "$work/mnt" >"$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
    primary="$work/mnt/bad-$format/primary"
    t0=$(date +%s.%N)
    ls -l "$primary" >/dev/null
    for f in x.npy s.npy time.npy x.csv s.csv; do cat "$primary/$f" >/dev/null; done
    t1=$(date +%s.%N)
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    printf '| %s | %d MB | %d MiB | %.2f s | %d |\n' "$format" $((size / 1000000)) $((hwm / 1024)) "$(echo "$t1 - $t0" | bc)" \
      "$(grep -c 'skipping' "$work/log")"
    umount "$work/mnt"
    wait "$pid"
  done
done
