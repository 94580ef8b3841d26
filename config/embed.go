// Package config holds the manifests the operator ships (kustomize bases, samples, monitoring). Files embeds
// them so the manager can compare what is installed on its cluster with what was shipped (the admission
// policies of config/admission, as config/default installs them).
package config

import "embed"

// Files is this directory, rooted here: default/kustomization.yaml, admission/…, and so on.
//
//go:embed *
var Files embed.FS
