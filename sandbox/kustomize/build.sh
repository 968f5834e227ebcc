#!/usr/bin/env bash
# Builds kustomize from the Go module proxy (the version go.mod names) into a cache
# outside the repository, so every clone on this machine reuses it; prints its path.
#
#   sandbox/kustomize/build.sh            build it if missing, print the binary's path
#   sandbox/kustomize/build.sh --print    print the path only (exit 1 if not built)
#
# Cache root: $GEODEPLOY_CACHE (default ~/.cache/geodeploy).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${GEODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/geodeploy}
version=$(awk '$1 == "sigs.k8s.io/kustomize/kustomize/v5" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
bin_dir="$cache_root/kustomize-$version"

if [[ -x "$bin_dir/kustomize" ]]; then
  echo "$bin_dir/kustomize"
  exit 0
fi
[[ "${1:-}" == "--print" ]] && exit 1

echo "building kustomize $version (under a minute on 2 cores)..." >&2
scratch="$bin_dir.partial"
rm -rf "$scratch" && mkdir -p "$scratch"
# GOTOOLCHAIN=local: never download a Go toolchain; the machine's Go must do.
(cd "$here" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
  go build -trimpath -o "$scratch/" -ldflags "-s -w" sigs.k8s.io/kustomize/kustomize/v5)
rm -rf "$bin_dir" && mv "$scratch" "$bin_dir"
echo "$bin_dir/kustomize"
