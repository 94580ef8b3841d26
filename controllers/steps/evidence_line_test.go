package steps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestEvidenceLine: a log line fits status.steps[].evidence whatever its length: cut at a rune boundary, marked,
// and no longer than the CRD's maxLength, which is the same bound.
func TestEvidenceLine(t *testing.T) {
	g := NewWithT(t)
	short := "2026-05-01T10:00:00Z info access connection complete src.workload=frontend"
	g.Expect(EvidenceLine(short)).To(Equal(short))
	exact := strings.Repeat("x", MaxEvidenceLine)
	g.Expect(EvidenceLine(exact)).To(Equal(exact))
	for _, long := range []string{strings.Repeat("x", 300<<10), strings.Repeat("é", MaxEvidenceLine), "a" + strings.Repeat("€", MaxEvidenceLine)} {
		got := EvidenceLine(long)
		g.Expect(len(got)).To(BeNumerically("<=", MaxEvidenceLine))
		g.Expect(len(got)).To(BeNumerically(">", MaxEvidenceLine-8))
		g.Expect(utf8.ValidString(got)).To(BeTrue())
		g.Expect(got).To(HaveSuffix("…"))
		g.Expect(long).To(HavePrefix(strings.TrimSuffix(got, "…")))
	}

	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "labs.ambientlab.io_labruns.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(yaml.Unmarshal(raw, crd)).To(Succeed())
	stepsSchema := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"].Properties["steps"].Items.Schema
	evidence := stepsSchema.Properties["evidence"].Items.Schema
	g.Expect(evidence.MaxLength).NotTo(BeNil(), "status.steps[].evidence[] has a maxLength")
	g.Expect(*evidence.MaxLength).To(BeEquivalentTo(MaxEvidenceLine))
	for _, field := range []string{"observed", "message"} {
		bound := stepsSchema.Properties[field].MaxLength
		g.Expect(bound).NotTo(BeNil(), "status.steps[].%s has a maxLength", field)
		g.Expect(*bound).To(BeEquivalentTo(MaxEvidenceLine), field)
	}
}
