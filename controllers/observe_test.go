package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// TestOutcomeSeenBeforeTheChangeFails: a second ALLOW policy lets the attacker in before the run, so the
// attacker's observer sees "allowed" long before the lab sets the AuthorizationPolicy aside. The step that is to
// see the policy's removal take effect must not count that: it fails, saying the outcome came before the change.
func TestOutcomeSeenBeforeTheChangeFails(t *testing.T) {
	addPolicy(t, sandbox.DemoNamespace, "allow-attacker-too", nil, nil, map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"app": "backend"}},
		"rules": []any{map[string]any{"from": []any{map[string]any{"source": map[string]any{
			"principals": []any{"cluster.local/ns/demo/sa/labrun-attacker-*"}}}}}},
	})
	inForce(t)
	g := NewWithT(t)
	done := runToFailure(t, newRun(labsv1.LabAuthorizationPolicy))
	st := stepOf(t, done, labsv1.LabAuthorizationPolicy, "attacker-allowed-without-policy")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictFail), st.Message)
	g.Expect(st.Observed).To(HavePrefix("attacker allowed (HTTP 200)"))
	g.Expect(st.Message).To(MatchRegexp(`Observed allowed \(HTTP 200\) already since \S+, before set-aside-policy was applied at \S+ \(clock tolerance 100ms\)`))
	expectMeshAsFound(t)
	expectNoLock(t)
}

// TestNoPodStartsInsideTheWindow: pods take 2 s to start, longer than the peer-authentication lab keeps the mesh
// weakened. The observers start before the window opens, so the run passes and its exposure is shorter than one
// pod start: no pod start-up happened inside it.
func TestNoPodStartsInsideTheWindow(t *testing.T) {
	const start = 2 * time.Second
	sb.SetPodStartLatency(start)
	t.Cleanup(func() { sb.SetPodStartLatency(0) })
	g := NewWithT(t)
	done := runLab(t, labsv1.LabPeerAuthentication)
	g.Expect(done.Status.Exposure.Duration).NotTo(BeNil())
	g.Expect(done.Status.Exposure.Duration.Duration).To(BeNumerically("<", start),
		"a pod started inside the weakened window")
	for _, st := range done.Status.Steps {
		g.Expect(st.Verdict).To(Equal(labsv1.VerdictPass), "%s: %s", st.Name, st.Message)
	}
}
