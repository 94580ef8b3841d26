#!/usr/bin/env bash
# End to end on a real cluster, as docs/real-cluster.md describes it step by step: a kind cluster (three nodes),
# Istio's ambient profile, the operator's image built by `make image` (no Docker build) and loaded into the nodes,
# the chart installed with Helm, the lab world, the sample LabRun and a Verify LabSchedule. It asserts that the
# manager runs the image just built, that both runs end Succeeded with MeshRestored=True and the mesh as found,
# writes the reports to bin/e2e/, and deletes the cluster (also on failure, unless --keep).
#
# Needs Docker (kind runs its nodes as containers), Go, make, curl and tar; it installs the pinned kind and Helm (go install) and
# fetches the pinned kubectl and istioctl into bin/e2e/tools. The CI workflow
# (.github/workflows/e2e-kind.yaml) runs it on a hosted runner. --dry-run prints every command with the pinned
# versions and runs none (hack/e2ekind's test checks that output).
#
#   hack/e2e-kind.sh [--dry-run] [--keep] [--cluster NAME]
set -euo pipefail

# Versions: pinned here and nowhere else.
KIND_VERSION=v0.32.0
# kind v0.32.0's own node image: Kubernetes 1.36 is the chart's kubeVersion floor (MutatingAdmissionPolicy v1).
KIND_NODE_IMAGE=kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5
KUBECTL_VERSION=v1.36.1
# The release of the istio.io/api module go.mod pins (the sandbox's Istio CRDs).
ISTIO_VERSION=1.32.0

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Helm: the version of go.mod's helm.sh/helm/v4, the library internal/chart's tests install the chart with.
HELM_VERSION=$(go list -m -f '{{.Version}}' helm.sh/helm/v4)

DRY_RUN=""
KEEP=""
CLUSTER=labrun-e2e
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --keep) KEEP=1 ;;
    --cluster) CLUSTER=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "e2e-kind: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

OUT=$root/bin/e2e
TOOLS=$OUT/tools
export PATH=$TOOLS:$PATH
IMAGE_REPOSITORY=labrun-operator
IMAGE_TAG=e2e
ARCHIVE=bin/image/labrun-operator.tar
RUN=ambient-security-labs
SCHEDULE=ambient-security-verify
OS=$(go env GOOS 2>/dev/null || echo linux)
ARCH=$(go env GOARCH 2>/dev/null || echo amd64)

# run prints a command and runs it unless --dry-run; pipe does the same for a pipeline.
run() {
  echo "+ $*"
  [ -n "$DRY_RUN" ] || "$@"
}
pipe() {
  echo "+ $1"
  [ -n "$DRY_RUN" ] || bash -c "$1"
}
step() { echo; echo "== $*"; }

# wait_phase KIND NAME JSONPATH: waits until the field is Succeeded or Failed, then requires Succeeded.
wait_phase() {
  local kind=$1 name=$2 path=$3 phase=""
  echo "+ wait until $kind $name $path is Succeeded or Failed (20m)"
  [ -z "$DRY_RUN" ] || return 0
  for _ in $(seq 1 240); do
    phase=$(kubectl -n demo get "$kind" "$name" -o jsonpath="$path" 2>/dev/null || true)
    case "$phase" in Succeeded|Failed) break ;; esac
    sleep 5
  done
  echo "$kind $name: ${phase:-no phase after 20m}"
  [ "$phase" = Succeeded ]
}

cleanup() {
  local rc=$?
  if [ -n "$KEEP" ]; then
    echo "--keep: cluster $CLUSTER left running (kind delete cluster --name $CLUSTER)"
    return
  fi
  step "Clean up (the LabRuns' finalizers restore anything still changed, so they go before the operator)"
  run kubectl -n demo delete labschedule "$SCHEDULE" --ignore-not-found --wait=true || true
  run kubectl -n demo delete labruns --all --wait=true --timeout=5m || true
  run helm uninstall labrun-operator -n labrun-system --wait || true
  run kind delete cluster --name "$CLUSTER" || true
  exit $rc
}

step "Pinned versions"
echo "kind $KIND_VERSION, node image $KIND_NODE_IMAGE, kubectl $KUBECTL_VERSION, Istio $ISTIO_VERSION, Helm $HELM_VERSION"

step "Tools into $TOOLS"
run mkdir -p "$TOOLS"
run env GOBIN="$TOOLS" go install "sigs.k8s.io/kind@$KIND_VERSION"
run env GOBIN="$TOOLS" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
pipe "curl -fsSLo '$TOOLS/kubectl' https://dl.k8s.io/release/$KUBECTL_VERSION/bin/$OS/$ARCH/kubectl && chmod +x '$TOOLS/kubectl'"
pipe "curl -fsSL https://github.com/istio/istio/releases/download/$ISTIO_VERSION/istioctl-$ISTIO_VERSION-$OS-$ARCH.tar.gz | tar -xz -C '$TOOLS' istioctl"
run kind version
run istioctl version --remote=false

step "1. A kind cluster: one control plane, two workers (Verify mode covers every node)"
[ -n "$DRY_RUN" ] || trap cleanup EXIT
pipe "printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n- role: worker\n' | kind create cluster --name $CLUSTER --image $KIND_NODE_IMAGE --wait 3m --config -"
run kubectl cluster-info --context "kind-$CLUSTER"
run kubectl version

step "2. Istio in ambient mode"
run istioctl install --set profile=ambient --skip-confirmation
run kubectl -n istio-system rollout status deploy/istiod --timeout=5m
run kubectl -n istio-system rollout status ds/istio-cni-node --timeout=5m
run kubectl -n istio-system rollout status ds/ztunnel --timeout=5m

step "3. The lab world"
run kubectl apply -k config/samples/world
run kubectl -n demo rollout status deploy/frontend --timeout=5m
run kubectl -n demo rollout status deploy/backend --timeout=5m
run kubectl label namespace istio-system labs.ambientlab.io/enabled=true --overwrite

step "4. The image: make image (no container engine), then into every node"
run make image IMAGE_REPOSITORY="$IMAGE_REPOSITORY" IMAGE_TAG="$IMAGE_TAG"
run kind load image-archive "$ARCHIVE" --name "$CLUSTER"

step "5. The operator, with Helm (the probe pods use the same image)"
run helm install labrun-operator charts/labrun-operator -n labrun-system --create-namespace \
  --set image.repository="$IMAGE_REPOSITORY" --set image.tag="$IMAGE_TAG" --wait --timeout 5m
run kubectl -n labrun-system rollout status deploy/labrun-controller-manager --timeout=5m
# The manager must run the image make image built: kind's containerd reports the config digest of the node's
# platform (or a digest of the index) as the pod's imageID.
pipe "digests=\$(grep -o 'sha256:[0-9a-f]*' bin/image/image.json | sort -u); for id in \$(kubectl -n labrun-system get pods -l control-plane=controller-manager -o jsonpath='{.items[*].status.containerStatuses[0].imageID}'); do echo \"manager imageID \$id\"; echo \"\$digests\" | grep -qx \"\${id##*@}\" || { echo 'not the image make image built' >&2; exit 1; }; done"

step "6. The sample LabRun (Lab mode: weakens the target for a bounded window, restores it)"
run kubectl apply -f config/samples/labs_v1alpha1_labrun.yaml
wait_phase labrun "$RUN" '{.status.phase}'
run kubectl -n demo wait labrun "$RUN" --for=condition=MeshRestored=True --timeout=1m
run kubectl -n demo get labrun "$RUN" -o wide

step "7. A Verify LabSchedule (the sample's, every minute instead of every 15): its first run"
pipe "sed 's/@every 15m/@every 1m/' config/samples/labs_v1alpha1_labschedule.yaml | kubectl apply -f -"
wait_phase labschedule "$SCHEDULE" '{.status.lastRun.phase}'
pipe "kubectl -n demo wait labrun \"\$(kubectl -n demo get labschedule $SCHEDULE -o jsonpath='{.status.lastRun.name}')\" --for=condition=MeshRestored=True --timeout=1m"
run kubectl -n demo get labschedule "$SCHEDULE" -o wide

step "8. The mesh as found, and the reports"
pipe "test \"\$(kubectl -n istio-system get peerauthentication default -o jsonpath='{.spec.mtls.mode}')\" = STRICT"
run kubectl -n demo get authorizationpolicy backend-allow-frontend-only
pipe "! kubectl get namespaces -o name | grep labrun-non-mesh-"
run make plugin
run mkdir -p "$OUT"
run bin/kubectl-labrun report "$RUN" -n demo --format junit -o "$OUT/labrun-junit.xml"
run bin/kubectl-labrun report "$RUN" -n demo --format markdown -o "$OUT/labrun.md"
pipe "kubectl -n demo get labruns -o yaml > '$OUT/labruns.yaml'"
echo
echo "e2e-kind: passed (reports in $OUT)"
