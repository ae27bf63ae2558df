#!/usr/bin/env bash
# Try Vapor on a local kind cluster: create the cluster (or reuse it), build
# the image, load it into the nodes, install the chart into vapor-system, wait
# for the operator and the gateway, and ask the gateway for /openapi.json
# through a port-forward.
#
# Usage: hack/kind.sh              # needs docker (running), kind, kubectl, helm, curl
#
# Environment:
#   KIND_CLUSTER     cluster name (default: vapor); kubectl and helm use its
#                    context kind-<name> explicitly, never the current one
#   IMAGE            image to build and run (default: vapor:dev)
#   CONTAINERFILE    image definition (default: Containerfile at the top of the repository)
#   LOCAL_PORT       local port of the port-forward (default: 18080)
#
# The agents need libvirtd on their node; kind's nodes have none, so the agent
# pods may not become ready there: the script waits for the operator and the
# gateway only. `kind delete cluster --name vapor` removes everything.
set -euo pipefail

CLUSTER=${KIND_CLUSTER:-vapor}
IMAGE=${IMAGE:-vapor:dev}
CONTAINERFILE=${CONTAINERFILE:-Containerfile}
LOCAL_PORT=${LOCAL_PORT:-18080}
NAMESPACE=vapor-system
RELEASE=vapor
CONTEXT=kind-$CLUSTER

log() { printf '[kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

cd "$(dirname "$0")/.."
for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null || die "$tool is needed on PATH"
done
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer"
[[ -f $CONTAINERFILE ]] || die "no image definition at $CONTAINERFILE (set CONTAINERFILE)"
[[ $IMAGE == *:* ]] || die "IMAGE must be repository:tag, not $IMAGE"

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 180s
fi

log "building $IMAGE from $CONTAINERFILE"
docker build --file "$CONTAINERFILE" --tag "$IMAGE" .
log "loading $IMAGE into the nodes of $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "installing the chart as release $RELEASE in $NAMESPACE"
helm upgrade --install "$RELEASE" charts/vapor --kube-context "$CONTEXT" \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never
# A rebuilt image under the same tag is only picked up by new pods.
kubectl --context "$CONTEXT" -n "$NAMESPACE" rollout restart \
  "deployment/$RELEASE-operator" "deployment/$RELEASE-gateway" >/dev/null
for deployment in operator gateway; do
  kubectl --context "$CONTEXT" -n "$NAMESPACE" rollout status "deployment/$RELEASE-$deployment" --timeout=180s
done

log "smoke test: GET /openapi.json through a port-forward on 127.0.0.1:$LOCAL_PORT"
kubectl --context "$CONTEXT" -n "$NAMESPACE" port-forward "service/$RELEASE-gateway" "$LOCAL_PORT:80" >/dev/null &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
for _ in $(seq 30); do
  if body=$(curl -fsS "http://127.0.0.1:$LOCAL_PORT/openapi.json" 2>/dev/null); then break; fi
  sleep 1
done
[[ ${body:-} == *'"openapi"'* ]] || die "the gateway did not serve its OpenAPI document"
log "the gateway answers: $(printf '%s' "$body" | head -c 120)..."
log "done; kubectl --context $CONTEXT -n $NAMESPACE get pods; helm --kube-context $CONTEXT status $RELEASE -n $NAMESPACE"
