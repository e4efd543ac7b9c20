#!/usr/bin/env bash
# The test command: sets up the machine, then vet, gofmt and every test under the race
# detector, integration tests (real FUSE mounts, as root) included.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
./scripts/setup.sh
echo "== go vet" >&2
go vet ./...
echo "== gofmt" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "== go mod tidy -diff" >&2
go mod tidy -diff
echo "== staticcheck" >&2
# Pinned; built once into GOBIN (the module proxy serves it).
STATICCHECK_VERSION=v0.8.2
GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
if ! "$GOBIN/staticcheck" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
  go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
"$GOBIN/staticcheck" ./...
echo "== go test -race" >&2
go test -race -count=1 -timeout 20m ./...
