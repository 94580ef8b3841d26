package report_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// step builds a step that ran from offset start for d.
func step(lab labsv1.LabName, name string, v labsv1.Verdict, start, d time.Duration) labsv1.StepResult {
	s, e := metav1.NewMicroTime(t0.Add(start)), metav1.NewMicroTime(t0.Add(start+d))
	return labsv1.StepResult{Lab: lab, Name: name, Verdict: v, Expected: "allowed (HTTP 200)", Observed: "allowed (HTTP 200)",
		StartTime: &s, CompletionTime: &e}
}

// sampleRun is a run with every verdict: two mtls steps (one failing on one node, with evidence), a
// peer-authentication step that errored and one skipped, and a footprint step that passed.
func sampleRun() *labsv1.LabRun {
	fail := step(labsv1.LabMTLS, "non-mesh-refused", labsv1.VerdictFail, 2*time.Second, 1500*time.Millisecond)
	fail.Expected, fail.Observed = "denied (connection reset, curl 56)", "allowed (HTTP 200)"
	fail.Message = "plaintext from outside the mesh got through on node-2"
	fail.Evidence = []string{`ztunnel node-1: error access connection complete src.addr=10.0.0.9 "connection reset"`, "line <2> & more"}
	fail.EvidenceSources = []labsv1.EvidenceSource{{Namespace: "istio-system", Pod: "ztunnel-a1b2c", Node: "node-1"},
		{Namespace: "istio-system", Pod: "ztunnel-d3e4f", Node: "node-2"}}
	fail.Coverage = []labsv1.NodeResult{
		{Node: "node-1", Role: labsv1.RoleDestination, Endpoint: "backend-0 (10.0.0.7:80)", Observed: "denied", Verdict: labsv1.VerdictPass},
		{Node: "node-2", Role: labsv1.RoleDestination, Endpoint: "backend-1 (10.0.1.7:80)", Observed: "allowed (HTTP 200)", Verdict: labsv1.VerdictFail, Attempts: 3},
	}
	errored := step(labsv1.LabPeerAuthentication, "set-permissive", labsv1.VerdictError, 5*time.Second, time.Second)
	errored.Message, errored.Change = "the probe pod did not start", "mode PERMISSIVE"
	skipped := labsv1.StepResult{Lab: labsv1.LabPeerAuthentication, Name: "restore-strict", Verdict: labsv1.VerdictSkipped,
		Expected: "denied", Message: "an earlier step errored"}
	pass := step(labsv1.LabMTLS, "client-allowed", labsv1.VerdictPass, 0, 250*time.Millisecond)
	pass.Settle = &metav1.Duration{Duration: 1234 * time.Millisecond}
	return &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "r1", UID: "u-1"},
		Spec:       labsv1.LabRunSpec{Mode: labsv1.ModeLab, Scope: labsv1.ScopeWorkload},
		Status: labsv1.LabRunStatus{
			Phase: labsv1.PhaseFailed,
			Steps: []labsv1.StepResult{pass, fail, errored, skipped,
				step(labsv1.LabFootprint, "compare", labsv1.VerdictPass, 8*time.Second, 100*time.Millisecond)},
			Summary: labsv1.Summary{Total: 5, Passed: 2, Failed: 1, Errored: 1, Skipped: 1},
			Conditions: []metav1.Condition{{Type: labsv1.ConditionMeshRestored, Status: metav1.ConditionTrue,
				Reason: labsv1.ReasonRestored, Message: "Restored | all"}},
		},
	}
}

// parsed is JUnit as a CI tool reads it, declared apart from the package's own types.
type parsed struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []struct {
		Name      string `xml:"name,attr"`
		Tests     int    `xml:"tests,attr"`
		Failures  int    `xml:"failures,attr"`
		Errors    int    `xml:"errors,attr"`
		Skipped   int    `xml:"skipped,attr"`
		Time      string `xml:"time,attr"`
		Timestamp string `xml:"timestamp,attr"`
		Cases     []struct {
			Name       string `xml:"name,attr"`
			Classname  string `xml:"classname,attr"`
			Time       string `xml:"time,attr"`
			Properties []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestJUnitParsesBackWithCountsAndMessages(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	g.Expect(report.WriteJUnit(&buf, sampleRun())).To(Succeed())
	g.Expect(buf.String()).To(HavePrefix(xml.Header))
	var doc parsed
	g.Expect(xml.Unmarshal(buf.Bytes(), &doc)).To(Succeed(), buf.String())

	g.Expect([]int{doc.Tests, doc.Failures, doc.Errors, doc.Skipped}).To(Equal([]int{5, 1, 1, 1}))
	g.Expect(doc.Suites).To(HaveLen(3))
	names := []string{doc.Suites[0].Name, doc.Suites[1].Name, doc.Suites[2].Name}
	g.Expect(names).To(Equal([]string{"mtls", "peer-authentication", "footprint"}), "labs in the order they ran")

	mtls := doc.Suites[0]
	g.Expect([]int{mtls.Tests, mtls.Failures, mtls.Errors, mtls.Skipped}).To(Equal([]int{2, 1, 0, 0}))
	g.Expect(mtls.Time).To(Equal("1.750"))
	g.Expect(mtls.Timestamp).To(Equal("2026-11-27T10:00:00"))
	failed := mtls.Cases[1]
	g.Expect(failed.Name).To(Equal("non-mesh-refused"))
	g.Expect(failed.Classname).To(Equal("mtls"))
	g.Expect(failed.Time).To(Equal("1.500"))
	g.Expect(failed.Failure).NotTo(BeNil())
	g.Expect(failed.Failure.Message).To(Equal("plaintext from outside the mesh got through on node-2"))
	g.Expect(failed.Failure.Type).To(Equal("Fail"))
	g.Expect(failed.Failure.Text).To(ContainSubstring("node: Destination node-2 backend-1 (10.0.1.7:80): Fail"))
	g.Expect(failed.Failure.Text).NotTo(ContainSubstring("node-1"), "only failing nodes in the failure body")
	g.Expect(failed.SystemOut).To(Equal(sampleRun().Status.Steps[1].Evidence[0] + "\nline <2> & more"))
	props := map[string]string{}
	var sources []string
	for _, p := range failed.Properties {
		props[p.Name] = p.Value
		if p.Name == "evidenceSource" {
			sources = append(sources, p.Value)
		}
	}
	g.Expect(sources).To(Equal([]string{"istio-system/ztunnel-a1b2c on node-1", "istio-system/ztunnel-d3e4f on node-2"}),
		"the ztunnel pods whose logs the step read")
	g.Expect(props).To(HaveKeyWithValue("expected", "denied (connection reset, curl 56)"))
	g.Expect(props).To(HaveKeyWithValue("observed", "allowed (HTTP 200)"))
	g.Expect(props).To(HaveKeyWithValue("coverage.destination.node-2",
		"Destination node-2 backend-1 (10.0.1.7:80): Fail, observed allowed (HTTP 200), 3 attempts"))
	g.Expect(mtls.Cases[0].Failure).To(BeNil())
	g.Expect(mtls.Cases[0].Error).To(BeNil())

	pa := doc.Suites[1]
	g.Expect([]int{pa.Tests, pa.Failures, pa.Errors, pa.Skipped}).To(Equal([]int{2, 0, 1, 1}))
	g.Expect(pa.Cases[0].Error.Message).To(Equal("the probe pod did not start"))
	g.Expect(pa.Cases[1].Skipped.Message).To(Equal("an earlier step errored"))
	g.Expect(pa.Cases[1].Time).To(Equal("0.000"), "a step that never ran took no time")
}

func TestJUnitOfAnUnfinishedRunSkipsStepsWithoutVerdict(t *testing.T) {
	g := NewWithT(t)
	run := sampleRun()
	run.Status.Steps[4].Verdict = labsv1.VerdictRunning
	var buf bytes.Buffer
	g.Expect(report.WriteJUnit(&buf, run)).To(Succeed())
	var doc parsed
	g.Expect(xml.Unmarshal(buf.Bytes(), &doc)).To(Succeed())
	g.Expect(doc.Skipped).To(Equal(2))
	g.Expect(doc.Suites[2].Cases[0].Skipped.Message).To(ContainSubstring("Running"))
}

func TestJSONKeepsEveryStepByLab(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	g.Expect(report.Write(&buf, sampleRun(), report.FormatJSON)).To(Succeed())
	var doc report.Document
	g.Expect(json.Unmarshal(buf.Bytes(), &doc)).To(Succeed())
	g.Expect(doc.Version).To(Equal(report.JSONVersion))
	g.Expect(doc.Run).To(Equal(report.RunRef{Namespace: "demo", Name: "r1", UID: "u-1"}))
	g.Expect(doc.MeshRestored).To(Equal("True"))
	g.Expect(doc.Labs).To(HaveLen(3))
	g.Expect(doc.Labs[0].Steps).To(HaveLen(2))
	g.Expect(doc.Labs[0].Steps[1].Coverage).To(HaveLen(2))
	g.Expect(doc.Labs[0].Steps[1].EvidenceSources).To(Equal(sampleRun().Status.Steps[1].EvidenceSources))
	g.Expect(buf.String()).To(ContainSubstring(`"evidenceSources": [`))
	g.Expect(buf.String()).To(ContainSubstring(`"pod": "ztunnel-d3e4f"`))
	g.Expect(doc.Summary.Failed).To(Equal(int32(1)))
}

func TestMarkdownHasATablePerLab(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	g.Expect(report.Write(&buf, sampleRun(), report.FormatMarkdown)).To(Succeed())
	md := buf.String()
	g.Expect(strings.Count(md, "| Step | Expected |")).To(Equal(3))
	g.Expect(md).To(ContainSubstring("## peer-authentication"))
	g.Expect(md).To(ContainSubstring("| non-mesh-refused | denied (connection reset, curl 56) | allowed (HTTP 200) | **Fail** |"))
	g.Expect(md).To(ContainSubstring("| client-allowed | allowed (HTTP 200) | allowed (HTTP 200) | Pass | 1.234s |"))
	g.Expect(md).To(ContainSubstring("- Destination node-2 backend-1 (10.0.1.7:80): Fail"))
	g.Expect(md).To(ContainSubstring("non-mesh-refused: evidence read from the logs of ztunnel " +
		"istio-system/ztunnel-a1b2c on node-1, istio-system/ztunnel-d3e4f on node-2."))
	g.Expect(md).To(ContainSubstring(`Restored \| all`), "pipes in text are escaped")
}

func TestUnknownFormatIsRefused(t *testing.T) {
	g := NewWithT(t)
	err := report.Write(&bytes.Buffer{}, sampleRun(), "yaml")
	g.Expect(err).To(MatchError(ContainSubstring(`unknown report format "yaml"`)))
}
