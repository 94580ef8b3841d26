package mesh

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// pa builds a PeerAuthentication; age orders policies (older first wins at one level).
func pa(ns, name string, age int, spec map[string]any) unstructured.Unstructured {
	u := unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(GVK(KindPeerAuthentication))
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetCreationTimestamp(metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Duration(age) * time.Hour)))
	return u
}

func mtls(mode string) map[string]any { return map[string]any{"mtls": map[string]any{"mode": mode}} }

func withSelector(spec map[string]any, labels map[string]any) map[string]any {
	spec["selector"] = map[string]any{"matchLabels": labels}
	return spec
}

func TestEffectiveMode(t *testing.T) {
	backend := map[string]string{"app": "backend", "version": "v1"}
	cases := []struct {
		name      string
		pas       []unstructured.Unstructured
		mode      string
		decidedBy string // namespace/name, "" for Istio's default
		level     string
	}{
		{"no policy: PERMISSIVE by default", nil, "PERMISSIVE", "", LevelDefault},
		{"mesh-wide STRICT", []unstructured.Unstructured{pa("istio-system", "default", 1, mtls("STRICT"))},
			"STRICT", "istio-system/default", LevelMesh},
		{"mesh-wide UNSET is PERMISSIVE", []unstructured.Unstructured{pa("istio-system", "default", 1, mtls("UNSET"))},
			"PERMISSIVE", "", LevelDefault},
		{"root selector {} is not mesh-wide", []unstructured.Unstructured{
			pa("istio-system", "empty-selector", 1, map[string]any{"selector": map[string]any{}, "mtls": map[string]any{"mode": "STRICT"}})},
			"PERMISSIVE", "", LevelDefault},
		{"root selector policies are ignored", []unstructured.Unstructured{pa("istio-system", "default", 2, mtls("STRICT")),
			pa("istio-system", "backend", 1, withSelector(mtls("PERMISSIVE"), map[string]any{"app": "backend"}))},
			"STRICT", "istio-system/default", LevelMesh},
		{"namespace PERMISSIVE over mesh STRICT", []unstructured.Unstructured{pa("istio-system", "default", 2, mtls("STRICT")),
			pa("demo", "relaxed", 1, mtls("PERMISSIVE"))},
			"PERMISSIVE", "demo/relaxed", LevelNamespace},
		{"namespace UNSET inherits the mesh", []unstructured.Unstructured{pa("istio-system", "default", 2, mtls("STRICT")),
			pa("demo", "unset", 1, mtls("UNSET"))},
			"STRICT", "istio-system/default", LevelMesh},
		{"workload PERMISSIVE over namespace STRICT", []unstructured.Unstructured{pa("demo", "ns", 2, mtls("STRICT")),
			pa("demo", "backend", 1, withSelector(mtls("PERMISSIVE"), map[string]any{"app": "backend"}))},
			"PERMISSIVE", "demo/backend", LevelWorkload},
		{"a workload policy for other pods does not apply", []unstructured.Unstructured{pa("istio-system", "default", 2, mtls("STRICT")),
			pa("demo", "frontend", 1, withSelector(mtls("PERMISSIVE"), map[string]any{"app": "frontend"}))},
			"STRICT", "istio-system/default", LevelMesh},
		{"another namespace's policy does not apply", []unstructured.Unstructured{pa("istio-system", "default", 2, mtls("STRICT")),
			pa("shop", "relaxed", 1, mtls("PERMISSIVE"))},
			"STRICT", "istio-system/default", LevelMesh},
		{"port-level PERMISSIVE on the target port", []unstructured.Unstructured{pa("istio-system", "default", 2, mtls("STRICT")),
			pa("demo", "backend", 1, withSelector(map[string]any{"portLevelMtls": map[string]any{"80": map[string]any{"mode": "PERMISSIVE"}}},
				map[string]any{"app": "backend"}))},
			"PERMISSIVE", "demo/backend", LevelWorkload + " port 80"},
		{"port-level on another port does not apply", []unstructured.Unstructured{pa("istio-system", "default", 2, mtls("STRICT")),
			pa("demo", "backend", 1, withSelector(map[string]any{"portLevelMtls": map[string]any{"8080": map[string]any{"mode": "PERMISSIVE"}}},
				map[string]any{"app": "backend"}))},
			"STRICT", "istio-system/default", LevelMesh},
		{"the oldest namespace policy wins", []unstructured.Unstructured{pa("demo", "newer", 1, mtls("STRICT")),
			pa("demo", "older", 5, mtls("PERMISSIVE"))},
			"PERMISSIVE", "demo/older", LevelNamespace},
		{"DISABLE is reported as such", []unstructured.Unstructured{pa("demo", "off", 1, mtls("DISABLE"))},
			"DISABLE", "demo/off", LevelNamespace},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := EffectiveMode(tc.pas, "istio-system", "demo", backend, 80)
			by := ""
			if d.By != nil {
				by = d.By.Namespace + "/" + d.By.Name
			}
			if d.Mode != tc.mode || by != tc.decidedBy || d.Level != tc.level {
				t.Errorf("EffectiveMode = %s by %q at %q; want %s by %q at %q", d.Mode, by, d.Level, tc.mode, tc.decidedBy, tc.level)
			}
		})
	}
}
