package mesh

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Istio's defaults for where the mesh lives, used when the operator is configured with nothing else.
const (
	DefaultRootNamespace    = "istio-system"
	DefaultZtunnelNamespace = "istio-system"
)

// DefaultZtunnelSelector is the label set of Istio's ztunnel pods.
func DefaultZtunnelSelector() map[string]string { return map[string]string{"app": "ztunnel"} }

// Config says where the mesh lives: the mesh root namespace and the ztunnel pods. It is the operator's
// configuration (the manager's flags), not a LabRun's: a name in a spec proves nothing (DESIGN.md, "Integrity"),
// and a run that could point the operator at another "ztunnel" would choose its own evidence. A spec may repeat
// these values, and a run whose spec names others ends Failed at preflight with nothing changed.
type Config struct {
	// RootNamespace is Istio's root namespace, where the mesh-wide PeerAuthentication lives.
	RootNamespace string
	// ZtunnelNamespace and ZtunnelSelector locate the ztunnel pods whose readiness and logs the runs read.
	ZtunnelNamespace string
	ZtunnelSelector  map[string]string
}

// WithDefaults fills what c leaves empty with Istio's defaults.
func (c Config) WithDefaults() Config {
	if c.RootNamespace == "" {
		c.RootNamespace = DefaultRootNamespace
	}
	if c.ZtunnelNamespace == "" {
		c.ZtunnelNamespace = DefaultZtunnelNamespace
	}
	if len(c.ZtunnelSelector) == 0 {
		c.ZtunnelSelector = DefaultZtunnelSelector()
	}
	return c
}

// Mismatch says how spec's mesh differs from c (already defaulted), or "" when every value it names matches.
// Values a spec leaves empty are the operator's.
func (c Config) Mismatch(spec *labsv1.MeshSpec) string {
	var out []string
	if ns := spec.RootNamespace; ns != "" && ns != c.RootNamespace {
		out = append(out, fmt.Sprintf("mesh.rootNamespace is %s but the operator's mesh root namespace is %s", ns, c.RootNamespace))
	}
	if ns := spec.Ztunnel.Namespace; ns != "" && ns != c.ZtunnelNamespace {
		out = append(out, fmt.Sprintf("mesh.ztunnel.namespace is %s but the operator's ztunnel namespace is %s", ns, c.ZtunnelNamespace))
	}
	if sel := spec.Ztunnel.Labels(); len(sel) > 0 && !maps.Equal(sel, c.ZtunnelSelector) {
		out = append(out, fmt.Sprintf("mesh.ztunnel.selector is %s but the operator's ztunnel selector is %s",
			SelectorString(sel), SelectorString(c.ZtunnelSelector)))
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "; ") + " (where the mesh lives is the operator's configuration: omit these fields or repeat its values)"
}

// Validate refuses a configuration that names no valid namespace or an empty or invalid selector: an empty
// selector would match every pod of the namespace.
func (c Config) Validate() error {
	for flag, ns := range map[string]string{"mesh root namespace": c.RootNamespace, "ztunnel namespace": c.ZtunnelNamespace} {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("the %s %q is not a namespace name: %s", flag, ns, strings.Join(errs, "; "))
		}
	}
	if len(c.ZtunnelSelector) == 0 {
		return fmt.Errorf("the ztunnel selector is empty: it would select every pod of namespace %s", c.ZtunnelNamespace)
	}
	if _, err := labels.ValidatedSelectorFromSet(c.ZtunnelSelector); err != nil {
		return fmt.Errorf("the ztunnel selector: %w", err)
	}
	return nil
}

// ParseSelector reads a label set written key=value[,key=value] (the --ztunnel-selector flag).
func ParseSelector(s string) (map[string]string, error) {
	set, err := labels.ConvertSelectorToLabelsMap(s)
	if err != nil {
		return nil, err
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("%q names no label", s)
	}
	if _, err := labels.ValidatedSelectorFromSet(set); err != nil {
		return nil, err
	}
	return set, nil
}

// SelectorString writes a label set as a selector, keys sorted: app=ztunnel,x=y.
func SelectorString(set map[string]string) string {
	keys := slices.Sorted(maps.Keys(set))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + set[k]
	}
	return strings.Join(parts, ",")
}
