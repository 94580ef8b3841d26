#!/usr/bin/env bash
# Fails when 'make manifests generate' changes the generated files, so what is committed is what the markers say.
set -euo pipefail
cd "$(dirname "$0")/.."
generated=(config/crd/bases config/rbac/role.yaml api/v1alpha1/zz_generated.deepcopy.go)
before=$(find "${generated[@]}" -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum || true)
make -s manifests generate
after=$(find "${generated[@]}" -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum || true)
if [ "$before" != "$after" ]; then
  echo "generated files were out of date; 'make manifests generate' changed them:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi
echo "generated files are up to date"
