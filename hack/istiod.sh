#!/usr/bin/env bash
# Builds Istio's pilot-discovery (istiod) from the Go module proxy into the directory given as $1 (default
# bin/istiod). The sandbox runs it against its API server: istiod converts PeerAuthentication and AuthorizationPolicy
# into ztunnel's policies, which the simulated ztunnel enforces (internal/istiod). Skips the build when the binary exists at the
# istio.io/istio version pinned in hack/istiod/go.mod. The first build takes several minutes on two cores; later ones
# hit the Go cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/istiod}

# The wrapper module pins istio.io/istio; its version is the stamp.
mod=$root/hack/istiod
ISTIO_VERSION=$(cd "$mod" && go list -m -f '{{.Version}}' istio.io/istio)
stamp="pilot-discovery istio.io/istio $ISTIO_VERSION"

if [ -x "$out/pilot-discovery" ] && [ "$(cat "$out/VERSION" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

echo "Building pilot-discovery (istio.io/istio $ISTIO_VERSION) into $out (the first build takes several minutes)..."
mkdir -p "$out"
rm -f "$out/VERSION"
(cd "$mod" && go build -ldflags "-s -w" -o "$out/pilot-discovery" .)
echo "$stamp" > "$out/VERSION"
echo "pilot-discovery ready: $out/pilot-discovery (istio.io/istio $ISTIO_VERSION)"
