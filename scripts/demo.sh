#!/usr/bin/env bash
# Sets up the machine, builds brokerfs and mounts its demo catalog on ./brokerfs-demo (or $1)
# in the foreground; Ctrl-C unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
./scripts/setup.sh
go build -o bin/brokerfs ./cmd/brokerfs
if [ "$(id -u)" -ne 0 ] && ! command -v fusermount3 >/dev/null; then
  echo "demo: mounting as a non-root user needs fusermount3 (package fuse3)" >&2
  exit 1
fi
exec bin/brokerfs demo "${1:-brokerfs-demo}"
