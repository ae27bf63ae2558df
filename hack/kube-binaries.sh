#!/usr/bin/env bash
# Provide kube-apiserver, etcd and kubectl at pinned versions, built from their
# Go modules through the module proxy (the way controller-runtime's envtest
# provides its binaries), and cached so that later runs start at once.
#
# Usage: hack/kube-binaries.sh        # build what is missing; print the folder holding the three
#        hack/kube-binaries.sh helm   # the same for helm alone: print the folder holding it
#        hack/kube-binaries.sh node   # kubelet, kube-scheduler and kube-controller-manager at the
#                                     # same version, built the same way into the same folder; print it
#
# Environment:
#   VAPOR_CACHE          cache root (default: ~/.cache/vapor); Go's build and
#                        module caches live there too, outside the checkout, so
#                        a fresh clone (CI) reuses them.
#   KUBE_VERSION         Kubernetes release (default below)
#   ETCD_VERSION         etcd release (default: the one that release pins)
#   KUBE_APISERVER, ETCD, KUBECTL
#                        use these binaries instead of building; a binary on
#                        PATH is used too when it is exactly the pinned version
#   HELM_VERSION         helm release for `helm` (default below), built from
#                        helm.sh/helm/v3 cmd/helm; HELM names a binary to use
#                        instead, and one on PATH is used when it is exactly
#                        the pinned version, as for the three above
#   COREDNS_VERSION      CoreDNS release for `coredns` (default below)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.4}
HELM_VERSION=${HELM_VERSION:-v3.19.5}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
CACHE=${VAPOR_CACHE:-$HOME/.cache/vapor}
BIN="$CACHE/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"

log() { printf '[kube-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }


mkdir -p "$BIN"
export GOCACHE="$CACHE/go/build" GOMODCACHE="$CACHE/go/mod" GOFLAGS=-mod=mod
export CGO_ENABLED=0
# An older local Go fetches the toolchain these modules need from the module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

# The version a binary reports, as "v1.34.4" / "v3.6.4", or nothing.
version_of() {  # name path
  case $1 in
    kube-apiserver) "$2" --version 2>/dev/null | awk '{print $2}' ;;
    kubectl) "$2" version --client 2>/dev/null | awk '/^Client Version/ {print $3}' ;;
    etcd) "$2" --version 2>/dev/null | awk '/^etcd Version/ {print "v" $3}' ;;
  esac
}
pinned() { [[ $1 == etcd ]] && echo "$ETCD_VERSION" || echo "$KUBE_VERSION"; }

# `helm` apart from the three, so that the control plane never waits for it:
# the environment, else PATH at exactly the pinned version, else our build.
if [[ ${1:-} == helm ]]; then
  helm_bin="$CACHE/bin/helm-$HELM_VERSION"
  helm_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }
  helm_link() {  # path: a folder holding only a link named helm to it
    local dir
    dir="$CACHE/bin/helm-chosen-$(echo "$1" | sha256sum | cut -c1-12)"
    mkdir -p "$dir" && ln -sfn "$1" "$dir/helm" && echo "$dir"
  }
  if [[ -n ${HELM:-} ]]; then
    [[ -x $HELM ]] || { log "HELM=$HELM is not an executable file"; exit 1; }
    helm_link "$(readlink -f "$HELM")"; exit 0
  elif [[ -x $helm_bin/helm ]]; then
    echo "$helm_bin"; exit 0
  elif onpath=$(command -v helm) && [[ $(helm_version "$onpath") == "$HELM_VERSION" ]]; then
    log "using $onpath from PATH ($HELM_VERSION)"
    helm_link "$(readlink -f "$onpath")"; exit 0
  fi
  command -v go >/dev/null || { log "go is needed to build helm"; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  start=$(date +%s)
  log "building helm from helm.sh/helm/v3 $HELM_VERSION (first build: a few minutes)"
  cd "$work"
  go mod init vapor.local/helm-build >/dev/null 2>&1
  go mod edit -require="helm.sh/helm/v3@$HELM_VERSION"
  # Build into a temporary name and move it in place, so that an interrupted
  # build never leaves a binary that the next run would take as finished.
  mkdir -p "$helm_bin"
  # helm's own Makefile stamps the Kubernetes version of its client libraries
  # (used for .Capabilities.KubeVersion and kubeVersion checks when no
  # cluster is asked); without it helm would assume v1.20.
  client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)  # v0.34.2
  kube_minor=$(echo "$client_go" | cut -d. -f2)
  pkg=helm.sh/helm/v3
  go build -trimpath -o "$helm_bin/helm.partial" \
    -ldflags "-s -w -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.gitTreeState=clean
      -X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$kube_minor
      -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$kube_minor" \
    $pkg/cmd/helm
  mv "$helm_bin/helm.partial" "$helm_bin/helm"
  log "built helm in $(( $(date +%s) - start ))s into $helm_bin"
  echo "$helm_bin"; exit 0
fi

# Which binary to use for each name: one named by the environment, else one
# on PATH that is exactly the pinned version, else our build in $BIN.
declare -A chosen=()
need=()
for name in kube-apiserver kubectl etcd; do
  var=$(echo "$name" | tr 'a-z-' 'A-Z_')
  if [[ -n ${!var:-} ]]; then
    [[ -x ${!var} ]] || { log "$var=${!var} is not an executable file"; exit 1; }
    chosen[$name]=$(readlink -f "${!var}")
  elif [[ -x $BIN/$name ]]; then
    chosen[$name]=$BIN/$name
  elif onpath=$(command -v "$name") && [[ $(version_of "$name" "$onpath") == "$(pinned "$name")" ]]; then
    log "using $onpath from PATH ($(pinned "$name"))"
    chosen[$name]=$(readlink -f "$onpath")
  else
    chosen[$name]=$BIN/$name
    need+=("$name")
  fi
done

# The folder printed holds exactly the chosen three: $BIN itself when all are
# our builds, else a folder of links named after the choice.
print_dir() {
  if [[ ${chosen[kube-apiserver]} == "$BIN/kube-apiserver" && ${chosen[kubectl]} == "$BIN/kubectl" && ${chosen[etcd]} == "$BIN/etcd" ]]; then
    echo "$BIN"; return
  fi
  local key dir
  key=$(printf '%s\n' "${chosen[@]}" | sha256sum | cut -c1-12)
  dir="$CACHE/bin/chosen-$key"
  mkdir -p "$dir"
  for name in kube-apiserver kubectl etcd; do ln -sfn "${chosen[$name]}" "$dir/$name"; done
  echo "$dir"
}

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
  local pkg name t
  for pkg in "$@"; do
    name=${pkg##*/}
    log "  go build $pkg"
    t=$(date +%s)
    # Into a temporary name, moved in place when whole (an interrupted build leaves no binary).
    go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
      -o "$BIN/$name.partial" "$pkg"
    mv "$BIN/$name.partial" "$BIN/$name"
    log "  built $name in $(( $(date +%s) - t ))s"
  done
}

# The node's components (a kubelet with containerd, the scheduler and the
# controller manager) at the control plane's version, into the same folder.
if [[ ${1:-} == node ]]; then
  node_pkgs=()
  for name in kubelet kube-proxy kube-scheduler kube-controller-manager; do
    [[ -x $BIN/$name ]] || node_pkgs+=("k8s.io/kubernetes/cmd/$name")
  done
  if [[ ${#node_pkgs[@]} -gt 0 ]]; then
    command -v go >/dev/null || { log "go is needed to build ${node_pkgs[*]}"; exit 1; }
    start=$(date +%s)
    (build_kube "${node_pkgs[@]}")
    log "built ${node_pkgs[*]##*/} in $(( $(date +%s) - start ))s into $BIN"
  fi
  echo "$BIN"; exit 0
fi

# CoreDNS for the cluster's DNS (the node's image is made from this static binary).
if [[ ${1:-} == coredns ]]; then
  if [[ ! -x $BIN/coredns ]]; then
    command -v go >/dev/null || { log "go is needed to build coredns"; exit 1; }
    start=$(date +%s)
    log "building coredns from github.com/coredns/coredns $COREDNS_VERSION"
    mkdir -p "$work/coredns" && cd "$work/coredns"
    go mod init vapor.local/coredns-build >/dev/null 2>&1
    go mod edit -require="github.com/coredns/coredns@$COREDNS_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$BIN/coredns.partial" github.com/coredns/coredns
    mv "$BIN/coredns.partial" "$BIN/coredns"
    log "built coredns in $(( $(date +%s) - start ))s into $BIN"
  fi
  echo "$BIN"; exit 0
fi

if [[ ${#need[@]} -eq 0 ]]; then print_dir; exit 0; fi
command -v go >/dev/null || { log "go is needed to build ${need[*]}"; exit 1; }

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
print_dir
