#!/usr/bin/env bash
# Benchmarks brokerfs through real FUSE mounts and prints a Markdown table of its figures beside
# baselines measured in the same run (see BENCHMARKS.md). Needs root (mounts, drop_caches),
# /dev/fuse, python3-numpy and python3-msgpack; about 10 minutes and 2.5 GB of disk by default.
#
#   scripts/bench.sh                 the full run; results in $OUT (default /tmp/brokerfs-bench)
#   scripts/bench.sh -quick          tiny sizes, one repetition: a smoke run for CI
#   scripts/bench.sh -out DIR ...    any other flag goes to the benchmark program (go run ./bench -h)
#   BENCH_GOTEST=1 scripts/bench.sh  also run the go test benchmarks of encode and catalog
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
./scripts/setup.sh

out=${OUT:-/tmp/brokerfs-bench}
args=()
while (($#)); do
  case "$1" in
    -out|--out) out=$2; shift 2 ;;
    -out=*|--out=*) out=${1#*=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$out"
echo "== go build ./cmd/brokerfs" >&2
go build -o "$out/brokerfs" ./cmd/brokerfs
echo "== go run ./bench -out $out ${args[*]}" >&2
go run ./bench -out "$out" -bin "$out/brokerfs" "${args[@]}"

if [ "${BENCH_GOTEST:-}" = 1 ]; then
  echo "== go test -run XXX -bench . ./encode/ ./catalog/..." >&2
  go test -run XXX -bench . ./encode/ ./catalog/... | tee "$out/gotest-bench.txt"
fi
