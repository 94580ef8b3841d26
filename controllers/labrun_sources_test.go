package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// TestEvidenceSources: the pods read are ordered by node and name, named once each, and bounded by the API's
// MaxItems; no pods read leaves the field empty.
func TestEvidenceSources(t *testing.T) {
	many := make([]ztunnel.Source, 0, maxEvidenceSources+6)
	for i := range maxEvidenceSources + 6 {
		many = append(many, ztunnel.Source{Namespace: "istio-system", Pod: fmt.Sprintf("ztunnel-%03d", i), Node: fmt.Sprintf("node-%03d", i)})
	}
	for _, tc := range []struct {
		name string
		in   []ztunnel.Source
		want []labsv1.EvidenceSource
		n    int
	}{
		{name: "none", in: nil, want: nil},
		{name: "ordered by node, once each", in: []ztunnel.Source{
			{Namespace: "istio-system", Pod: "ztunnel-b", Node: "node-2"},
			{Namespace: "istio-system", Pod: "ztunnel-a", Node: "node-1"},
			{Namespace: "istio-system", Pod: "ztunnel-b", Node: "node-2"},
		}, want: []labsv1.EvidenceSource{
			{Namespace: "istio-system", Pod: "ztunnel-a", Node: "node-1"},
			{Namespace: "istio-system", Pod: "ztunnel-b", Node: "node-2"},
		}},
		{name: "bounded", in: many, n: maxEvidenceSources},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := evidenceSources(tc.in)
			if tc.n > 0 {
				g.Expect(got).To(HaveLen(tc.n))
				g.Expect(got[0].Node).To(Equal("node-000"))
				return
			}
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

// TestEvidenceLine: a log line fits status.steps[].evidence whatever its length: cut at a rune boundary, marked,
// and no longer than the CRD's maxLength, which is the same bound.
func TestEvidenceLine(t *testing.T) {
	g := NewWithT(t)
	short := "2026-05-01T10:00:00Z info access connection complete src.workload=frontend"
	g.Expect(evidenceLine(short)).To(Equal(short))
	exact := strings.Repeat("x", maxEvidenceLine)
	g.Expect(evidenceLine(exact)).To(Equal(exact))
	for _, long := range []string{strings.Repeat("x", 300<<10), strings.Repeat("é", maxEvidenceLine), "a" + strings.Repeat("€", maxEvidenceLine)} {
		got := evidenceLine(long)
		g.Expect(len(got)).To(BeNumerically("<=", maxEvidenceLine))
		g.Expect(len(got)).To(BeNumerically(">", maxEvidenceLine-8))
		g.Expect(utf8.ValidString(got)).To(BeTrue())
		g.Expect(got).To(HaveSuffix("…"))
		g.Expect(long).To(HavePrefix(strings.TrimSuffix(got, "…")))
	}

	raw, err := os.ReadFile(filepath.Join("..", "config", "crd", "bases", "labs.ambientlab.io_labruns.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(yaml.Unmarshal(raw, crd)).To(Succeed())
	steps := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"].Properties["steps"].Items.Schema
	evidence := steps.Properties["evidence"].Items.Schema
	g.Expect(evidence.MaxLength).NotTo(BeNil(), "status.steps[].evidence[] has a maxLength")
	g.Expect(*evidence.MaxLength).To(BeEquivalentTo(maxEvidenceLine))
	for _, field := range []string{"observed", "message"} {
		bound := steps.Properties[field].MaxLength
		g.Expect(bound).NotTo(BeNil(), "status.steps[].%s has a maxLength", field)
		g.Expect(*bound).To(BeEquivalentTo(maxEvidenceLine), field)
	}
}

// TestSkippedStepMessagesAreBounded: a run's message copied into every skipped step never makes the status
// write fail, however long the cause.
func TestSkippedStepMessagesAreBounded(t *testing.T) {
	run := &labsv1.LabRun{Status: labsv1.LabRunStatus{Steps: []labsv1.StepResult{{Verdict: labsv1.VerdictPending}}}}
	skipRemaining(run, "Not run: "+strings.Repeat("refused ", 1000))
	NewWithT(t).Expect(len(run.Status.Steps[0].Message)).To(BeNumerically("<=", maxEvidenceLine))
}
