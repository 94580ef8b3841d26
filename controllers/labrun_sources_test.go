package controllers

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
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

// TestSkippedStepMessagesAreBounded: a run's message copied into every skipped step never makes the status
// write fail, however long the cause.
func TestSkippedStepMessagesAreBounded(t *testing.T) {
	run := &labsv1.LabRun{Status: labsv1.LabRunStatus{Steps: []labsv1.StepResult{{Verdict: labsv1.VerdictPending}}}}
	skipRemaining(run, "Not run: "+strings.Repeat("refused ", 1000))
	NewWithT(t).Expect(len(run.Status.Steps[0].Message)).To(BeNumerically("<=", steps.MaxEvidenceLine))
}
