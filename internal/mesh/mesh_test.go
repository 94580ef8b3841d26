package mesh

import (
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

func entry(kind, spec string) labsv1.JournalEntry {
	return labsv1.JournalEntry{Kind: kind, Namespace: "ns", Name: "n", Spec: &apiextensionsv1.JSON{Raw: []byte(spec)}}
}

func TestDesiredSpecForcesStrictOnlyForPeerAuthentication(t *testing.T) {
	cases := []struct {
		name, kind, spec string
		wantMode         string
	}{
		{"strict stays strict", KindPeerAuthentication, `{"mtls":{"mode":"STRICT"}}`, "STRICT"},
		{"permissive becomes strict", KindPeerAuthentication, `{"mtls":{"mode":"PERMISSIVE"}}`, "STRICT"},
		{"unset becomes strict", KindPeerAuthentication, `{}`, "STRICT"},
		{"null spec becomes strict", KindPeerAuthentication, `null`, "STRICT"},
		{"policy untouched", KindAuthorizationPolicy, `{"action":"ALLOW"}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := desiredSpec(entry(tc.kind, tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			mtls, _ := spec["mtls"].(map[string]any)
			if got, _ := mtls["mode"].(string); got != tc.wantMode {
				t.Errorf("mode = %q, want %q (spec %v)", got, tc.wantMode, spec)
			}
		})
	}
}

func TestDesiredSpecKeepsTheRestOfTheSpec(t *testing.T) {
	spec, err := desiredSpec(entry(KindPeerAuthentication,
		`{"selector":{"matchLabels":{"app":"x"}},"mtls":{"mode":"DISABLE"},"portLevelMtls":{"8080":{"mode":"PERMISSIVE"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := spec["selector"]; !ok {
		t.Error("selector lost")
	}
	if _, ok := spec["portLevelMtls"]; !ok {
		t.Error("portLevelMtls lost")
	}
}

func TestOriginalMode(t *testing.T) {
	for spec, want := range map[string]string{
		`{"mtls":{"mode":"PERMISSIVE"}}`: "PERMISSIVE", `{}`: "", `null`: "", `{"mtls":{}}`: "",
	} {
		if got := OriginalMode(entry(KindPeerAuthentication, spec)); got != want {
			t.Errorf("OriginalMode(%s) = %q, want %q", spec, got, want)
		}
	}
}

func TestHolderParts(t *testing.T) {
	ns, name, uid := NewHolder("demo", "run", "1234").Parts()
	if ns != "demo" || name != "run" || uid != "1234" {
		t.Errorf("Parts = %q %q %q", ns, name, uid)
	}
	if ns, name, uid := Holder("odd").Parts(); ns != "odd" || name != "" || uid != "" {
		t.Errorf("a malformed holder must not panic, got %q %q %q", ns, name, uid)
	}
}

func TestFind(t *testing.T) {
	j := []labsv1.JournalEntry{entry(KindPeerAuthentication, `{}`), entry(KindAuthorizationPolicy, `{}`)}
	if e := Find(j, Ref{Kind: KindAuthorizationPolicy, Namespace: "ns", Name: "n"}); e == nil || e.Kind != KindAuthorizationPolicy {
		t.Errorf("Find returned %v", e)
	}
	if Find(j, Ref{Kind: KindAuthorizationPolicy, Namespace: "other", Name: "n"}) != nil {
		t.Error("Find must match the namespace too")
	}
}
