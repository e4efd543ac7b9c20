#!/usr/bin/env bash
# Builds FerretDB v1.24.2 (the MongoDB wire protocol over SQLite; tools/ferretdb wraps it in a
# module of its own) once, caches the binary and prints its path. Fast and idempotent when
# cached; safe to run concurrently (the build is serialized by a lock and renamed into place).
# The cache key includes a hash of tools/ferretdb, so editing the wrapper rebuilds it.
#
# Run the binary with:
#   ferretdb --listen-addr=127.0.0.1:PORT --handler=sqlite --sqlite-url=file:DIR/ \
#            --debug-addr=- --telemetry=disable --log-level=error
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/tools/ferretdb
export PATH="$PATH:/usr/local/go/bin"

version=v1.24.2
hash=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/brokerfs
bin=$cache/ferretdb-$version-$hash

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/ferretdb.lock"
flock 9
if [ ! -x "$bin" ]; then
  echo "ferretdb.sh: building FerretDB $version into $bin (a few minutes, once)" >&2
  tmp=$(mktemp "$bin.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  (cd "$src" && GOWORK=off go build -trimpath -o "$tmp" .) >&2
  mv -f "$tmp" "$bin"
  trap - EXIT
  # Older builds of the wrapper (running servers keep their unlinked binary).
  find "$cache" -maxdepth 1 -name 'ferretdb-v*' ! -name "$(basename "$bin")" ! -name '*.lock' -delete
fi
echo "$bin"
