#!/usr/bin/env bash
# Builds FerretDB (a MongoDB-compatible server with an embedded SQLite backend) from the Go module proxy into
# a cache directory, once. Prints the binary's path as the last line of stdout. Safe to run repeatedly and
# concurrently.
#
#   bash tools/test-servers/build-ferretdb.sh
#
# Environment: FERRETDB_VERSION (default v1.24.2), CAGEY_CACHE_DIR (default ~/.cache/cagey-sessions),
# GO (default: go on PATH, else /usr/local/go/bin/go).
#
# Why not `go install github.com/FerretDB/FerretDB/cmd/ferretdb@<version>`: it builds, but the binary panics at
# start because build/version/version.txt, which FerretDB's release tooling generates, is not part of the
# module. So the module source is copied from the module cache, version.txt is written, and cmd/ferretdb is
# built from that copy with the module's own go.mod and go.sum (checksums verified by the Go toolchain).
set -euo pipefail

version="${FERRETDB_VERSION:-v1.24.2}"
cache_dir="${CAGEY_CACHE_DIR:-${HOME}/.cache/cagey-sessions}"
out_dir="${cache_dir}/ferretdb-${version}"
binary="${out_dir}/ferretdb"

log() { echo "build-ferretdb: $*" >&2; }

works() { [ -x "$binary" ] && "$binary" --version >/dev/null 2>&1; }

if works; then
  echo "$binary"
  exit 0
fi

go_bin="${GO:-}"
if [ -z "$go_bin" ]; then
  if command -v go >/dev/null 2>&1; then go_bin="$(command -v go)"; else go_bin=/usr/local/go/bin/go; fi
fi
if [ ! -x "$go_bin" ]; then
  log "no Go toolchain found (looked for go on PATH and /usr/local/go/bin/go); install Go >= 1.24 or set GO=..."
  exit 1
fi

mkdir -p "$cache_dir"
# Two concurrent runs (CI and a developer, two test packages) must not build into the same place at once.
exec 9>"${cache_dir}/ferretdb-${version}.lock"
flock -w 1200 9 || { log "timed out waiting for another build of FerretDB ${version}"; exit 1; }
if works; then
  echo "$binary"
  exit 0
fi

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/build-ferretdb.XXXXXX")"
trap 'chmod -R u+w "$work_dir" 2>/dev/null || true; rm -rf "$work_dir"' EXIT

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log "downloading github.com/FerretDB/FerretDB@${version} with $("$go_bin" version)"
module_dir="$(cd "$work_dir" && "$go_bin" mod download -json "github.com/FerretDB/FerretDB@${version}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [ -z "$module_dir" ] || [ ! -d "$module_dir" ]; then
  log "go mod download did not report a module directory"
  exit 1
fi

cp -R "$module_dir" "$work_dir/src"
chmod -R u+w "$work_dir/src"
echo "$version" >"$work_dir/src/build/version/version.txt"

log "building cmd/ferretdb (takes a few minutes the first time)"
(cd "$work_dir/src" && "$go_bin" build -trimpath -o "$work_dir/ferretdb" ./cmd/ferretdb)
"$work_dir/ferretdb" --version >&2

mkdir -p "$out_dir"
mv -f "$work_dir/ferretdb" "$binary.tmp.$$"
mv -f "$binary.tmp.$$" "$binary"
log "built $binary"
echo "$binary"
