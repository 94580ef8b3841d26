package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/admissioncheck"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// removeBinding deletes an admission policy binding of config/default and returns what puts it back, which also
// runs when the test ends (other tests need config/default as installed).
func removeBinding(t *testing.T, name string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	b := &admissionv1.ValidatingAdmissionPolicyBinding{}
	NewWithT(t).Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, b)).To(Succeed())
	NewWithT(t).Expect(k8s.Delete(ctx, b)).To(Succeed())
	restore = func() {
		put := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: b.Spec}
		if err := k8s.Create(ctx, put); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("restoring binding %s: %v", name, err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// TestLabRunWaitsWhileRequesterRightsAreNotEnforced: with the requester-rights binding gone (as on a cluster where
// the admission policies were switched off), a Lab run waits before any change, saying which binding is
// missing; a Verify run goes on meanwhile; once the binding is back, the Lab run runs to the end.
func TestLabRunWaitsWhileRequesterRightsAreNotEnforced(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	restore := removeBinding(t, "labrun-requester-rights")
	startManager(t, managerOptions())
	before := meshState(t)

	lab := newRun(labsv1.LabPeerAuthentication)
	create(t, lab)
	waiting := func(g Gomega) {
		cur := &labsv1.LabRun{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(lab), cur)).To(Succeed())
		g.Expect(cur.Status.Phase).To(Equal(labsv1.PhasePending))
		g.Expect(cur.Status.Reason).To(Equal(labsv1.ReasonAdmissionNotEnforced))
		g.Expect(cur.Status.Message).To(ContainSubstring("ValidatingAdmissionPolicyBinding labrun-requester-rights is missing"))
		ready := meta.FindStatusCondition(cur.Status.Conditions, labsv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Message).To(ContainSubstring("labrun-requester-rights is missing"))
		g.Expect(cur.Status.Journal).To(BeEmpty())
	}
	g.Eventually(waiting).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

	// A Verify run changes nothing: it is not held.
	verify := newRun(labsv1.LabMTLS, labsv1.LabPeerAuthentication)
	verify.Spec.Mode = labsv1.ModeVerify
	create(t, verify)
	done := finished(t, verify)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))

	// All the while, the Lab run has changed nothing and created nothing.
	expectMeshUnchanged(t, before)
	g.Eventually(leftovers).WithTimeout(30 * time.Second).Should(BeEmpty()) // the Verify run's pods go too
	waiting(g)

	restore()
	done = finished(t, lab)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
	expectMeshAsFound(t)
}

// TestAdmissionCheckProvesEnforcement: as installed, the check finds nothing wrong; with the manager-limits binding
// gone, its dry run is admitted and the check says the API server does not enforce the policy (besides the
// missing binding); put back, the check passes again.
func TestAdmissionCheckProvesEnforcement(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	shipped, err := admissioncheck.LoadShipped(sandbox.OperatorNamespace)
	g.Expect(err).NotTo(HaveOccurred())
	manager, err := client.New(sb.ManagerConfig(), client.Options{Scheme: k8s.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	check := &admissioncheck.Checker{Reader: manager, Client: manager, Shipped: shipped}
	g.Expect(check.Check(ctx)).To(BeEmpty())

	restore := removeBinding(t, "labrun-manager-limits")
	g.Eventually(func() []admissioncheck.Problem { return check.Check(ctx) }).WithTimeout(30 * time.Second).
		WithPolling(100 * time.Millisecond).Should(ConsistOf(
		admissioncheck.Problem("ValidatingAdmissionPolicyBinding labrun-manager-limits is missing"),
		admissioncheck.Problem("the API server does not enforce ValidatingAdmissionPolicy labrun-manager-limits: "+
			"a dry-run create of Namespace "+admissioncheck.ProbeNamespace+" by the manager was admitted")))
	restore()
	g.Eventually(func() []admissioncheck.Problem { return check.Check(ctx) }).WithTimeout(30 * time.Second).
		WithPolling(100 * time.Millisecond).Should(BeEmpty())
}
