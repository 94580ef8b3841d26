package sandbox_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

func TestMainRejectsBadFlag(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(sandbox.Main([]string{"--bad-flag"}, &out, &errOut, nil)).To(Equal(2))
	g.Expect(out.String()).To(BeEmpty(), "nothing started")
	g.Expect(errOut.String()).To(ContainSubstring("flag provided but not defined: -bad-flag"))
	g.Expect(errOut.String()).To(ContainSubstring("-apply-sample"), "the usage lists the flags")
}

func TestMainRejectsAnUnknownFault(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(sandbox.Main([]string{"--node-fault=node-2=sometimes"}, &out, &errOut, nil)).To(Equal(2))
	g.Expect(out.String()).To(BeEmpty(), "nothing started")
	g.Expect(errOut.String()).To(ContainSubstring(`unknown fault "sometimes"`))
	g.Expect(sandbox.Main([]string{"--node-fault=node-2"}, &out, &errOut, nil)).To(Equal(2))
	g.Expect(errOut.String()).To(ContainSubstring("want NODE=FAULT"))
}

func TestMainRejectsArguments(t *testing.T) {
	g := NewWithT(t)
	var out, errOut bytes.Buffer
	g.Expect(sandbox.Main([]string{"extra"}, &out, &errOut, nil)).To(Equal(2))
	g.Expect(errOut.String()).To(ContainSubstring(`unexpected arguments ["extra"]`))
}

func TestPrintRun(t *testing.T) {
	g := NewWithT(t)
	run := &labsv1.LabRun{Status: labsv1.LabRunStatus{
		Phase:   labsv1.PhaseFailed,
		Message: "1 of 2 steps failed",
		Steps: []labsv1.StepResult{
			{Lab: labsv1.LabMTLS, Name: "client-allowed", Expected: "allowed (HTTP 200)", Observed: "allowed (HTTP 200)",
				Verdict: labsv1.VerdictPass, Settle: &metav1.Duration{Duration: 1500 * time.Millisecond}},
			{Lab: labsv1.LabPeerAuthentication, Name: "plaintext-denied", Expected: "denied (connection reset, curl 56)",
				Observed: "allowed (HTTP 200)", Verdict: labsv1.VerdictFail, Message: "plaintext reached backend"},
		},
		Exposure: labsv1.Exposure{Duration: &metav1.Duration{Duration: 3 * time.Second}, Scope: labsv1.ScopeWorkload,
			Pods: 1, PodSeconds: "3.00"},
	}}
	meta.SetStatusCondition(&run.Status.Conditions, metav1.Condition{Type: labsv1.ConditionMeshRestored,
		Status: metav1.ConditionTrue, Reason: "Restored", Message: "PeerAuthentication STRICT, policy in place"})

	var out bytes.Buffer
	sandbox.PrintRun(&out, run)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	g.Expect(lines).To(HaveLen(7), out.String())

	header := lines[0]
	g.Expect(strings.Fields(header)).To(Equal([]string{"LAB", "STEP", "EXPECTED", "OBSERVED", "VERDICT", "SETTLE"}))
	// Every cell starts where its column's heading does.
	rows := [][]string{
		{"mtls", "client-allowed", "allowed (HTTP 200)", "allowed (HTTP 200)", "Pass", "1.5s"},
		{"peer-authentication", "plaintext-denied", "denied (connection reset, curl 56)", "allowed (HTTP 200)", "Fail", "-"},
	}
	headings := []string{"LAB", "STEP", "EXPECTED", "OBSERVED", "VERDICT", "SETTLE"}
	for i, row := range rows {
		line := lines[1+i]
		for j, cell := range row {
			col := strings.Index(header, headings[j])
			g.Expect(len(line)).To(BeNumerically(">=", col+len(cell)), line)
			g.Expect(line[col:col+len(cell)]).To(Equal(cell), "column %s of row %d: %q", headings[j], i, line)
		}
	}
	g.Expect(lines[3]).To(Equal("peer-authentication/plaintext-denied Fail: plaintext reached backend"))
	g.Expect(lines[4]).To(Equal("Phase: Failed — 1 of 2 steps failed"))
	g.Expect(lines[5]).To(Equal("Exposure: 3s (scope Workload: 1 pod(s) weakened at most, 3.00 pod-seconds)"))
	g.Expect(lines[6]).To(Equal("Mesh restored: True (PeerAuthentication STRICT, policy in place)"))
}

func TestPrintRunWithoutExposureOrRestore(t *testing.T) {
	g := NewWithT(t)
	var out bytes.Buffer
	sandbox.PrintRun(&out, &labsv1.LabRun{Status: labsv1.LabRunStatus{Phase: labsv1.PhaseRunning}})
	g.Expect(out.String()).To(ContainSubstring("Exposure: 0s\n"))
	g.Expect(out.String()).To(ContainSubstring("Mesh restored: Unknown\n"))
}
