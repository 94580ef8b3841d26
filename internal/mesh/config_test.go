package mesh

import (
	"strings"
	"testing"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// TestMeshConfigMismatch: a spec may leave where the mesh lives out or repeat the operator's configuration;
// anything else is named field by field.
func TestMeshConfigMismatch(t *testing.T) {
	cfg := Config{}.WithDefaults()
	sel := func(kv ...string) map[string]labsv1.LabelValue {
		out := map[string]labsv1.LabelValue{}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = labsv1.LabelValue(kv[i+1])
		}
		return out
	}
	cases := []struct {
		name string
		spec labsv1.MeshSpec
		want []string // substrings; none: no mismatch
	}{
		{"nothing named", labsv1.MeshSpec{}, nil},
		{"the operator's values repeated", labsv1.MeshSpec{RootNamespace: "istio-system",
			Ztunnel: labsv1.ZtunnelSpec{Namespace: "istio-system", Selector: sel("app", "ztunnel")}}, nil},
		{"another root namespace", labsv1.MeshSpec{RootNamespace: "team-a"},
			[]string{"mesh.rootNamespace is team-a but the operator's mesh root namespace is istio-system"}},
		{"another ztunnel namespace", labsv1.MeshSpec{Ztunnel: labsv1.ZtunnelSpec{Namespace: "team-a"}},
			[]string{"mesh.ztunnel.namespace is team-a but the operator's ztunnel namespace is istio-system"}},
		{"another selector value", labsv1.MeshSpec{Ztunnel: labsv1.ZtunnelSpec{Selector: sel("app", "fake")}},
			[]string{"mesh.ztunnel.selector is app=fake but the operator's ztunnel selector is app=ztunnel"}},
		{"a wider selector", labsv1.MeshSpec{Ztunnel: labsv1.ZtunnelSpec{Selector: sel("app", "ztunnel", "team", "a")}},
			[]string{"mesh.ztunnel.selector is app=ztunnel,team=a"}},
		{"everything else", labsv1.MeshSpec{RootNamespace: "a", Ztunnel: labsv1.ZtunnelSpec{Namespace: "b", Selector: sel("x", "y")}},
			[]string{"mesh.rootNamespace is a", "mesh.ztunnel.namespace is b", "mesh.ztunnel.selector is x=y",
				"omit these fields or repeat its values"}},
	}
	for _, tc := range cases {
		got := cfg.Mismatch(&tc.spec)
		if len(tc.want) == 0 && got != "" {
			t.Errorf("%s: mismatch %q, want none", tc.name, got)
		}
		if len(tc.want) > 0 && got == "" {
			t.Errorf("%s: no mismatch, want %q", tc.name, tc.want)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q does not say %q", tc.name, got, w)
			}
		}
	}
}

// TestMeshConfigValidate: the manager refuses to start with a configuration that names no namespace or would
// select every pod.
func TestMeshConfigValidate(t *testing.T) {
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Errorf("Istio's defaults: %v", err)
	}
	bad := map[string]Config{
		"root namespace not a name":    {RootNamespace: "Istio_System", ZtunnelNamespace: "x", ZtunnelSelector: map[string]string{"a": "b"}},
		"ztunnel namespace not a name": {RootNamespace: "x", ZtunnelNamespace: "-x", ZtunnelSelector: map[string]string{"a": "b"}},
		"empty selector":               {RootNamespace: "x", ZtunnelNamespace: "x", ZtunnelSelector: map[string]string{}},
		"invalid selector":             {RootNamespace: "x", ZtunnelNamespace: "x", ZtunnelSelector: map[string]string{"a b": "c"}},
	}
	for name, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for in, ok := range map[string]bool{"app=ztunnel": true, "app=ztunnel,k8s-app=z": true, "": false, "app": false, "a b=c": false} {
		if _, err := ParseSelector(in); (err == nil) != ok {
			t.Errorf("ParseSelector(%q): err %v, want ok=%v", in, err, ok)
		}
	}
}
