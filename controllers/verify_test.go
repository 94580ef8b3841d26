package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// TestVerifyModeChangesNothing: a Verify run of every lab on the healthy world asserts the protections as they
// stand (client allowed, plaintext refused by STRICT, the attacker refused by the policy, both refusals in the
// destination ztunnel's log, mTLS and HBONE evidence) and passes with exposure 0, no lock, and the
// mesh-wide PeerAuthentication never anything but STRICT (watched), nothing journaled and nothing marked.
func TestVerifyModeChangesNothing(t *testing.T) {
	g := NewWithT(t)
	startManager(t, managerOptions())
	modes := watchMeshWideMode(t)
	run := newRun(labsv1.AllLabs...)
	run.Spec.Mode = labsv1.ModeVerify
	create(t, run)
	done := finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
	plan, err := labs.PlanMode(labsv1.AllLabs, labsv1.ModeVerify)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(done.Status.Steps).To(HaveLen(len(plan)))
	for _, s := range plan {
		g.Expect(s.Mutates()).To(BeFalse(), s.ID())
		g.Expect(s.Weakens).To(BeFalse(), s.ID())
	}
	g.Expect(stepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-denied").Observed).
		To(HaveSuffix("by istio-system/istio_converted_static_strict"))
	g.Expect(stepOf(t, done, labsv1.LabAuthorizationPolicy, "attacker-denied").Observed).
		To(HaveSuffix("by no ALLOW policy (allow policies exist, but none allowed)"))
	g.Expect(done.Status.Exposure.Duration).To(BeNil(), "nothing was weakened")
	g.Expect(done.Status.Journal).To(BeEmpty())
	g.Expect(meta.FindStatusCondition(done.Status.Conditions, labsv1.ConditionMeshRestored).Reason).To(Equal(labsv1.ReasonUnchanged))
	g.Expect(modes()).To(HaveEach("STRICT"))
	g.Expect(temporaryPeerAuths()).To(BeEmpty())
	g.Expect(readMesh(policyRef).GetLabels()).NotTo(HaveKey(mesh.LabelChangedBy))
	expectNoLock(t)
	deleteAndWait(t, run)
	expectMeshAsFound(t)
}

// TestVerifyNeedsNoRightToChangePolicies: vera may run probes, read ztunnel's logs and create the non-mesh
// namespace, but change no policy. A Verify run of every lab is admitted; the same run in Lab mode is refused,
// naming the PeerAuthentication it would create.
func TestVerifyNeedsNoRightToChangePolicies(t *testing.T) {
	grant(t, "vera", "", rule(labsv1.GroupVersion.Group, "labruns", "create"), rule("", "pods", "create", "list"),
		rule("", "serviceaccounts", "create"), rule("", "pods/log", "get"), rule("", "namespaces", "create"),
		rule("metrics.k8s.io", "pods", "list")) // list: what the footprint lab reads
	vera := asUser(t, "vera")
	run := newRun(labsv1.AllLabs...)
	run.Spec.Mode = labsv1.ModeVerify
	g := NewWithT(t)
	g.Eventually(func() error { return dryRunCreate(vera, run) }).WithTimeout(10 * time.Second).Should(Succeed())
	run.Spec.Mode = labsv1.ModeLab
	g.Expect(dryRunCreate(vera, run)).To(MatchError(ContainSubstring(
		"user vera may not create and delete PeerAuthentications in namespace demo")))
}
