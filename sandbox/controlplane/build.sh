#!/usr/bin/env bash
# Builds the local control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok, kwokctl) from the Go module proxy, into a cache outside
# the repository keyed by version, so that every clone on this machine reuses them.
#
#   sandbox/controlplane/build.sh            build what is missing, print the bin dir
#   sandbox/controlplane/build.sh --print    print the bin dir only (exit 1 if incomplete)
#
# Cache root: $GEODEPLOY_CACHE (default ~/.cache/geodeploy).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${GEODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/geodeploy}

module_version() { # module_version <go.mod> <module path>
  awk -v m="$2" '$1 == "require" {$1 = ""; $0 = $0} $1 == m && $2 ~ /^v/ {print $2; exit}' "$1"
}
kube_version=$(module_version "$here/kube/go.mod" k8s.io/kubernetes)
etcd_version=$(module_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
kwok_version=$(module_version "$here/kwok/go.mod" sigs.k8s.io/kwok)
bin_dir="$cache_root/controlplane/kube-$kube_version-etcd-$etcd_version-kwok-$kwok_version"

binaries=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwokctl)

missing() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || echo "$b"; done
}

if [[ "${1:-}" == "--print" ]]; then
  [[ -z "$(missing)" ]] || exit 1
  echo "$bin_dir"
  exit 0
fi

# Prints one line per 200 compiled packages so a long first build shows it is alive.
progress() {
  local label=$1
  awk -v label="$label" '{n++} n % 200 == 0 {printf "  [%s] %d packages compiled\n", label, n > "/dev/stderr"; fflush("/dev/stderr")}
       END {printf "  [%s] %d packages compiled\n", label, n > "/dev/stderr"}'
}

# build <label> <expected minutes> <module dir> <go packages...>: builds into a scratch
# dir and moves the binaries into the cache only when the whole component succeeded.
build() {
  local label=$1 minutes=$2 dir=$3
  shift 3
  local started=$SECONDS scratch="$bin_dir.partial"
  echo "building $label (about $minutes min on 2 cores when nothing is cached)..." >&2
  rm -rf "$scratch" && mkdir -p "$scratch" "$bin_dir"
  # GOTOOLCHAIN=local: never download a Go toolchain; the machine's Go must do.
  (cd "$dir" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
    go build -v -trimpath -o "$scratch/" -ldflags "-s -w ${LDFLAGS_EXTRA:-}" "$@" 2>&1) | progress "$label"
  # etcd's main package is the module root go.etcd.io/etcd/server/v3, built as "server".
  [[ -f "$scratch/server" ]] && mv "$scratch/server" "$scratch/etcd"
  mv -f "$scratch"/* "$bin_dir/"
  rmdir "$scratch"
  echo "built $label in $((SECONDS - started)) s" >&2
}

todo=$(missing)
if [[ -n "$todo" ]]; then
  echo "control-plane binaries missing from $bin_dir: $(echo $todo)" >&2
  total_started=$SECONDS
  if grep -qE 'kube-(apiserver|controller-manager|scheduler)' <<<"$todo"; then
    minor=${kube_version#v1.}; minor=${minor%%.*}
    LDFLAGS_EXTRA="-X k8s.io/component-base/version.gitVersion=$kube_version \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/client-go/pkg/version.gitVersion=$kube_version" \
      build "kubernetes $kube_version" 6 "$here/kube" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler
  fi
  if grep -qx etcd <<<"$todo"; then
    build "etcd $etcd_version" 1 "$here/etcd" go.etcd.io/etcd/server/v3
  fi
  if grep -qE '^kwok(ctl)?$' <<<"$todo"; then
    build "kwok $kwok_version" 2 "$here/kwok" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
  fi
  echo "control-plane binaries ready in $((SECONDS - total_started)) s" >&2
fi
echo "$bin_dir"
