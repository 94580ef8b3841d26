#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver and etcd) from the Go module proxy into the directory given as $1
# (default bin/k8s). The tests and the sandbox use it through KUBEBUILDER_ASSETS. Skips the build when both binaries
# exist at the pinned versions. The first build takes several minutes on two cores; later ones hit the Go cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/k8s}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
stamp="kube-apiserver $K8S_VERSION etcd $ETCD_VERSION"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ "$(cat "$out/VERSION" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

# The wrapper module pins k8s.io/kubernetes and maps its staging modules to the published v0.x versions.
mod=$root/hack/controlplane
want_k8s=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
want_etcd=$(cd "$mod" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
if [ "$want_k8s" != "$K8S_VERSION" ] || [ "$want_etcd" != "$ETCD_VERSION" ]; then
  echo "hack/controlplane/go.mod pins k8s.io/kubernetes $want_k8s and etcd $want_etcd, expected $K8S_VERSION and $ETCD_VERSION" >&2
  exit 1
fi

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
echo "Building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION into $out (the first build takes several minutes)..."
mkdir -p "$out"
rm -f "$out/VERSION"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
ldflags="$ldflags -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
(cd "$mod" && go build -ldflags "$ldflags" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
(cd "$mod" && go build -ldflags "-s -w" -o "$out/etcd" ./etcd)
echo "$stamp" > "$out/VERSION"
echo "Control plane ready: $("$out/kube-apiserver" --version), etcd $ETCD_VERSION"
