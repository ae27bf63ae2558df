#!/usr/bin/env bash
# Provide kube-apiserver, etcd and kubectl at pinned versions, built from their
# Go modules through the module proxy (the way controller-runtime's envtest
# provides its binaries), and cached so that later runs start at once.
#
# Usage: hack/kube-binaries.sh            # build what is missing, print the bin dir
#        hack/kube-binaries.sh --print-dir
#
# Environment:
#   VAPOR_CACHE          cache root (default: ~/.cache/vapor); Go's build and
#                        module caches live there too, outside the checkout, so
#                        a fresh clone (CI) reuses them.
#   KUBE_VERSION         Kubernetes release (default below)
#   ETCD_VERSION         etcd release (default: the one that release pins)
#   KUBE_APISERVER, ETCD, KUBECTL
#                        use these binaries instead of building
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.4}
CACHE=${VAPOR_CACHE:-$HOME/.cache/vapor}
BIN="$CACHE/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"

log() { printf '[kube-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ ${1:-} == --print-dir ]]; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN"
export GOCACHE="$CACHE/go/build" GOMODCACHE="$CACHE/go/mod" GOFLAGS=-mod=mod
export CGO_ENABLED=0 GOTOOLCHAIN=local

# Prefer a binary named by the environment, then one already built.
link_override() {  # name env-var-value
  local name=$1 path=${2:-}
  [[ -n $path ]] || return 1
  [[ -x $path ]] || { log "$name: $path is not executable"; exit 1; }
  ln -sf "$(readlink -f "$path")" "$BIN/$name"
}

need=()
for name in kube-apiserver kubectl etcd; do
  var=$(echo "$name" | tr 'a-z-' 'A-Z_')
  if link_override "$name" "${!var:-}"; then continue; fi
  [[ -x $BIN/$name ]] || need+=("$name")
done
if [[ ${#need[@]} -eq 0 ]]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "go is needed to build ${need[*]}"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_kube() {  # packages...
  local minor=${KUBE_VERSION#v1.}
  log "building $* from k8s.io/kubernetes $KUBE_VERSION (first build: several minutes)"
  mkdir -p "$work/kube" && cd "$work/kube"
  go mod init vapor.local/kube-build >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
  # k8s.io/kubernetes points its staging modules at ./staging; pin each to
  # the published v0.<minor> release instead, as its go.mod lists them.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | while read -r mod; do
    go mod edit -replace="$mod=$mod@v0.$minor"
  done
  for pkg in "$@"; do
    log "  go build $pkg"
    go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
      -o "$BIN/" "$pkg"
  done
}

build_etcd() {
  log "building etcd from go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init vapor.local/etcd-build >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
}

start=$(date +%s)
kube_pkgs=()
for name in "${need[@]}"; do
  case $name in
    kube-apiserver) kube_pkgs+=(k8s.io/kubernetes/cmd/kube-apiserver) ;;
    kubectl) kube_pkgs+=(k8s.io/kubernetes/cmd/kubectl) ;;
    etcd) (build_etcd) ;;
  esac
done
[[ ${#kube_pkgs[@]} -eq 0 ]] || (build_kube "${kube_pkgs[@]}")
log "built ${need[*]} in $(( $(date +%s) - start ))s into $BIN"
echo "$BIN"
