// Command crddocs unwraps the descriptions controller-gen copies from Go comments into CRDs: within a paragraph
// the comment's line breaks become spaces, so `kubectl explain`, Argo CD and documentation generators wrap the text
// to their own width instead of breaking mid-sentence where the Go source wrapped. Paragraph breaks, list items,
// indented lines and fenced code blocks are kept. `make manifests` runs it on config/crd/bases after controller-gen.
//
//	go run ./hack/crddocs FILE...
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/ambientlab/labrun-operator/internal/crddocs"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := rewrite(path); err != nil {
			fmt.Fprintf(os.Stderr, "crddocs: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func rewrite(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		return err
	}
	for i := range crd.Spec.Versions {
		if v := crd.Spec.Versions[i].Schema; v != nil && v.OpenAPIV3Schema != nil {
			crddocs.Unwrap(v.OpenAPIV3Schema)
		}
	}
	out, err := marshal(crd)
	if err != nil {
		return err
	}
	if bytes.Equal(out, raw) {
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

// marshal writes the CRD as controller-gen does: a document start, no status and no null creationTimestamp.
func marshal(crd *apiextensionsv1.CustomResourceDefinition) ([]byte, error) {
	j, err := json.Marshal(crd)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	y, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte("---\n"), y...), nil
}
