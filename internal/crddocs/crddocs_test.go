package crddocs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func TestText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"one paragraph", "Spec says which labs to run against which mesh. Immutable.\nDurations compare as durations.",
			"Spec says which labs to run against which mesh. Immutable. Durations compare as durations."},
		{"paragraphs stay", "First line\nwraps here.\n\nSecond paragraph\nwraps too.", "First line wraps here.\n\nSecond paragraph wraps too."},
		{"list items stay", "Modes:\n- Change: weakens\n  the mesh\n- Verify: changes nothing\n1. first\n10. tenth",
			"Modes:\n- Change: weakens\n  the mesh\n- Verify: changes nothing\n1. first\n10. tenth"},
		{"code stays", "Example:\n```yaml\nspec:\n  labs: [mtls]\n```\nafter\nit.", "Example:\n```yaml\nspec:\n  labs: [mtls]\n```\nafter it."},
		{"a number is not a list item", "Defaults to\n2 minutes.", "Defaults to 2 minutes."},
		{"no line break", "Name of the object.", "Name of the object."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Text(tc.in); got != tc.want {
				t.Errorf("Text(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

// The committed CRDs are unwrapped (make manifests runs hack/crddocs): no description breaks a sentence where the
// Go comment wrapped.
func TestCommittedCRDsAreUnwrapped(t *testing.T) {
	paths, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no CRDs: %v", err)
	}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(raw, crd); err != nil {
			t.Fatal(err)
		}
		for _, v := range crd.Spec.Versions {
			walk(v.Schema.OpenAPIV3Schema, crd.Spec.Names.Kind, func(at, desc string) {
				if Text(desc) != desc {
					t.Errorf("%s: %s: description still wrapped: %q", filepath.Base(path), at, desc)
				}
			})
		}
	}
}

func walk(s *apiextensionsv1.JSONSchemaProps, at string, f func(at, desc string)) {
	if s == nil {
		return
	}
	if strings.TrimSpace(s.Description) != "" {
		f(at, s.Description)
	}
	for k, p := range s.Properties {
		walk(&p, at+"."+k, f)
	}
	if s.Items != nil {
		walk(s.Items.Schema, at+"[]", f)
	}
	if s.AdditionalProperties != nil {
		walk(s.AdditionalProperties.Schema, at+"{}", f)
	}
}
