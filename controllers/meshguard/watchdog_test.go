package meshguard_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/meshguard"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestForceDeletedRunIsRestoredByWatchdog removes a run's finalizer by hand while the mesh is weakened and the
// run's own reconciler is stuck right after the change (a manager restarted instead would restore at once, before
// the watchdog runs): the watchdog restores from the run's trusted record, the LabRun and its status being gone.
func TestForceDeletedRunIsRestoredByWatchdog(t *testing.T) {
	g := NewWithT(t)
	stuck := make(chan struct{})
	o := suite.Options()
	o.Fault = func(p string) error {
		if strings.HasPrefix(p, "after-change:peer-authentication/set-permissive") {
			<-stuck
			return suite.ErrKilled
		}
		return nil
	}
	suite.Start(t, o)
	t.Cleanup(func() { close(stuck) }) // before the manager stops (cleanups run last registered first)
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	suite.Create(t, run)
	suite.WaitUntilWeakened(t)
	ctx := context.Background()
	cur := &labsv1.LabRun{}
	g.Expect(suite.K8s.Get(ctx, client.ObjectKeyFromObject(run), cur)).To(Succeed())
	g.Expect(suite.K8s.Delete(ctx, cur)).To(Succeed())
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Finalizers = nil
	g.Expect(suite.K8s.Patch(ctx, cur, patch)).To(Succeed())
	suite.ExpectMeshAsFound(t)
}

// TestWatchdogRestoresAnOverdueRunFromItsRecord: the manager dies right after weakening the mesh and its LabRun
// stays; once the record's restore-by deadline (plus grace) has passed, the watchdog restores from the trusted
// record alone and keeps the record for the run, which then finishes with the mesh as found.
func TestWatchdogRestoresAnOverdueRunFromItsRecord(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	crashed := make(chan struct{})
	var once sync.Once
	o := suite.Options()
	o.Fault = func(p string) error {
		if p != "after-change:peer-authentication/set-permissive" {
			return nil
		}
		once.Do(func() { close(crashed) })
		return errors.New("killed")
	}
	stop := suite.Start(t, o)
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	suite.Create(t, run)
	g.Eventually(crashed).WithTimeout(60 * time.Second).Should(BeClosed())
	stop()
	suite.WaitForMode(t, "PERMISSIVE")

	cur := &labsv1.LabRun{}
	g.Expect(suite.K8s.Get(ctx, client.ObjectKeyFromObject(run), cur)).To(Succeed())
	manager, err := client.New(suite.SB.ManagerConfig(), client.Options{Scheme: suite.K8s.Scheme()}) // the watchdog's rights
	g.Expect(err).NotTo(HaveOccurred())
	records := mesh.Store{Client: manager, Reader: manager, Namespace: sandbox.OperatorNamespace}
	rec, err := records.Get(ctx, string(cur.UID))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rec).NotTo(BeNil())
	g.Expect(rec.Pending()).To(HaveLen(2)) // the policy set aside, the PeerAuthentication PERMISSIVE
	req := ctrl.Request{NamespacedName: client.ObjectKey{Namespace: sandbox.OperatorNamespace, Name: mesh.RecordName(string(cur.UID))}}

	w := &meshguard.Watchdog{Client: manager, APIReader: manager, Records: records, Grace: time.Second}
	w.Now = func() time.Time { return rec.RestoreBy.Add(-time.Minute) }
	res, err := w.Reconcile(ctx, req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(BeNumerically(">", time.Minute), "not due yet: wait for the deadline")
	g.Expect(suite.TemporaryPeerAuths()).To(HaveLen(1), "the run's temporary PeerAuthentication (scope Workload)")

	w.Now = func() time.Time { return rec.RestoreBy.Add(2 * time.Second) }
	_, err = w.Reconcile(ctx, req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(suite.TemporaryPeerAuths()).To(BeEmpty(), "the watchdog deletes what the run created")
	mode, _, _ := unstructured.NestedString(suite.ReadMesh(suite.PeerAuthRef).Object, "spec", "mtls", "mode")
	g.Expect(mode).To(Equal("STRICT"))
	g.Expect(suite.ReadMesh(suite.PolicyRef).Object["spec"]).To(Equal(suite.OrigPolicy.Object["spec"]))
	rec, err = records.Get(ctx, string(cur.UID))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rec).NotTo(BeNil(), "the run is alive: its record stays for it")
	g.Expect(rec.Pending()).To(BeEmpty())

	suite.Start(t, suite.Options())
	done := suite.Finished(t, run)
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	suite.DeleteAndWait(t, run)
	suite.ExpectMeshAsFound(t)
}
