#!/usr/bin/env bash
# Installs what brokerfs needs to build, run and test on Debian/Ubuntu: FUSE 3 (fusermount3 for
# non-root mounts), the Python reference readers the tests use (numpy, pandas, msgpack, tifffile,
# PIL from Debian's packages), HDF5 for the handlers, zsh, fish and groff, with which the tests
# check the completion scripts and the man page, and node with hyparquet (a Parquet reader in pure
# JavaScript, pinned, from the npm registry) for the Parquet tables. Idempotent: installs only
# what is missing.
set -euo pipefail

pkgs=(fuse3 python3 python3-numpy python3-pandas python3-msgpack python3-h5py python3-pymongo python3-pil python3-tifffile nodejs libhdf5-dev hdf5-filter-plugin pkg-config gcc util-linux zsh fish groff-base)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null; then
  echo "setup: Go 1.26 or newer is required (https://go.dev/dl/); /usr/local/go/bin is not on PATH" >&2
  exit 1
fi

# hyparquet reads <stream>.parquet in integration/table_test.go, an independent reader (Debian
# ships no Parquet reader for Python). Pinned; installed once into a cache directory.
HYPARQUET_VERSION=1.33.0
HYPARQUET_DIR="${BROKERFS_HYPARQUET:-${XDG_CACHE_HOME:-$HOME/.cache}/brokerfs/npm}"
if ! grep -qs "\"version\": \"$HYPARQUET_VERSION\"" "$HYPARQUET_DIR/node_modules/hyparquet/package.json"; then
  if ! command -v npm >/dev/null; then
    # Debian's nodejs comes without npm; other builds of nodejs (NodeSource) bundle it and
    # conflict with Debian's npm package, so it is installed only when missing.
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  echo "setup: installing hyparquet $HYPARQUET_VERSION into $HYPARQUET_DIR" >&2
  mkdir -p "$HYPARQUET_DIR"
  npm install --silent --no-audit --no-fund --prefix "$HYPARQUET_DIR" "hyparquet@$HYPARQUET_VERSION" >&2
fi
