#!/usr/bin/env bash
# Builds Prometheus's promtool from the Go module proxy into the file given as $1 (default bin/promtool). It checks
# config/prometheus/rules.yaml and runs its unit tests (rules_test.yaml) with Prometheus's own rule engine. Skips
# the build when the binary exists at the github.com/prometheus/prometheus version pinned in hack/promtool/go.mod.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/promtool}

# The wrapper module pins github.com/prometheus/prometheus (a tool directive); its version is the stamp.
mod=$root/hack/promtool
PROMETHEUS_VERSION=$(cd "$mod" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
stamp="promtool github.com/prometheus/prometheus $PROMETHEUS_VERSION remove_all_sd"

if [ -x "$out" ] && [ "$(cat "$out.version" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

echo "Building promtool (github.com/prometheus/prometheus $PROMETHEUS_VERSION) into $out (the first build takes a few minutes)..."
mkdir -p "$(dirname "$out")"
rm -f "$out.version"
# remove_all_sd leaves out the service-discovery plugins (cloud SDKs): rule checks and tests do not need them.
(cd "$mod" && go build -tags remove_all_sd -ldflags "-s -w" -o "$out" github.com/prometheus/prometheus/cmd/promtool)
echo "$stamp" > "$out.version"
echo "promtool ready: $out (github.com/prometheus/prometheus $PROMETHEUS_VERSION)"
