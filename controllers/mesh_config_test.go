package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator/operatortest"
)

// Where the mesh lives (the root namespace, the ztunnel pods) is the operator's configuration: the manager's flags,
// and for admission the ConfigMap labrun-system/labrun-mesh (config/admission/mesh.yaml), both Istio's defaults
// in the sandbox.

// TestAnotherMeshIsRefusedAtAdmission: a LabRun or a LabSchedule that names another root namespace or ztunnel
// than the operator's is refused at the door, for a cluster administrator too, with a message that says what
// the operator's are.
func TestAnotherMeshIsRefusedAtAdmission(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*labsv1.MeshSpec)
		message string
	}{
		{"another root namespace", func(m *labsv1.MeshSpec) { m.RootNamespace = tenantNamespace },
			"mesh.rootNamespace is team-a but the operator's mesh root namespace is istio-system"},
		{"another ztunnel namespace", func(m *labsv1.MeshSpec) { m.Ztunnel.Namespace = tenantNamespace },
			"mesh.ztunnel.namespace is team-a but the operator's ztunnel namespace is istio-system"},
		{"another ztunnel selector", func(m *labsv1.MeshSpec) {
			m.Ztunnel.Selector = map[string]labsv1.LabelValue{"app": "my-ztunnel"}
		}, "mesh.ztunnel.selector is not the operator's ztunnel selector (app=ztunnel)"},
		{"a wider ztunnel selector", func(m *labsv1.MeshSpec) {
			m.Ztunnel.Selector = map[string]labsv1.LabelValue{"app": "ztunnel", "team": "a"}
		}, "mesh.ztunnel.selector is not the operator's ztunnel selector (app=ztunnel)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			run := newRun(labsv1.LabMTLS)
			tc.mutate(&run.Spec.Mesh)
			g.Eventually(func() error { return dryRunCreate(k8s, run) }).WithTimeout(10 * time.Second).
				WithPolling(100 * time.Millisecond).Should(MatchError(ContainSubstring("spec." + tc.message)))
			ls := operatortest.NewSchedule("@every 1h")
			tc.mutate(&ls.Spec.Template.Spec.Mesh)
			g.Expect(k8s.Create(context.Background(), ls, client.DryRunAll)).
				To(MatchError(ContainSubstring("spec.template.spec." + tc.message)))
		})
	}
	t.Run("the operator's values repeated", func(t *testing.T) {
		run := newRun(labsv1.LabMTLS)
		run.Spec.Mesh.RootNamespace = sandbox.RootNamespace
		run.Spec.Mesh.Ztunnel = labsv1.ZtunnelSpec{Namespace: sandbox.RootNamespace,
			Selector: map[string]labsv1.LabelValue{"app": "ztunnel"}}
		NewWithT(t).Expect(dryRunCreate(k8s, run)).To(Succeed())
	})
}

// TestPreflightRefusesAnotherMesh: where admission is not told (its ConfigMap says istio-system, the manager
// was started with other flags), the run ends Failed at preflight naming both, with nothing changed and no lock;
// and the manager reads its own ztunnel, not the one a spec leaves out.
func TestPreflightRefusesAnotherMesh(t *testing.T) {
	istio := map[string]labsv1.LabelValue{"app": "ztunnel"}
	cases := []struct {
		name    string
		config  mesh.Config
		mutate  func(*labsv1.MeshSpec)
		message string
	}{
		{"root namespace", mesh.Config{RootNamespace: "mesh-root"},
			func(m *labsv1.MeshSpec) { m.RootNamespace = sandbox.RootNamespace },
			"mesh.rootNamespace is istio-system but the operator's mesh root namespace is mesh-root"},
		{"ztunnel namespace", mesh.Config{ZtunnelNamespace: "ztunnel-elsewhere"},
			func(m *labsv1.MeshSpec) { m.Ztunnel.Namespace = sandbox.RootNamespace },
			"mesh.ztunnel.namespace is istio-system but the operator's ztunnel namespace is ztunnel-elsewhere"},
		{"ztunnel selector", mesh.Config{ZtunnelSelector: map[string]string{"app": "ztunnel", "rev": "x"}},
			func(m *labsv1.MeshSpec) { m.Ztunnel.Selector = istio },
			"mesh.ztunnel.selector is app=ztunnel but the operator's ztunnel selector is app=ztunnel,rev=x"},
		{"the operator's ztunnel, not ready", mesh.Config{ZtunnelSelector: map[string]string{"app": "nope"}},
			func(*labsv1.MeshSpec) {}, "no ready ztunnel pod matches app=nope in namespace istio-system"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := managerOptions()
			o.Mesh = tc.config
			startManager(t, o)
			before := meshState(t)
			run := newRun(labsv1.LabPeerAuthentication)
			tc.mutate(&run.Spec.Mesh)
			create(t, run)
			done := finished(t, run)
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
			g.Expect(done.Status.Reason).To(Equal(labsv1.ReasonPreflightFailed))
			g.Expect(done.Status.Message).To(ContainSubstring(tc.message))
			g.Expect(done.Status.Steps).To(HaveEach(HaveField("Verdict", labsv1.VerdictSkipped)))
			g.Expect(done.Status.Journal).To(BeEmpty())
			expectMeshUnchanged(t, before)
			expectNoLock(t)
			expectMeshAsFound(t)
		})
	}
}

// TestMeshLockLivesInTheOperatorsNamespace: the Lease a Lab run takes lives in the operator's own namespace,
// where only the manager may create or hold one; none appears in the mesh root namespace or the target's.
func TestMeshLockLivesInTheOperatorsNamespace(t *testing.T) {
	startManager(t, managerOptions())
	slowPropagation(t, time.Second) // the run holds the lock a while
	g := NewWithT(t)
	run := newRun(labsv1.LabPeerAuthentication)
	run.Spec.Scope = labsv1.ScopeMesh
	create(t, run)
	ctx := context.Background()
	held := func(g Gomega) []string {
		leases := &coordinationv1.LeaseList{}
		g.Expect(k8s.List(ctx, leases)).To(Succeed())
		var where []string
		for _, l := range leases.Items {
			if l.Spec.HolderIdentity != nil && strings.HasPrefix(*l.Spec.HolderIdentity, run.Namespace+"/"+run.Name+"/") {
				where = append(where, l.Namespace+"/"+l.Name)
			}
		}
		return where
	}
	g.Eventually(held).WithTimeout(30*time.Second).WithPolling(20*time.Millisecond).
		Should(ConsistOf(sandbox.OperatorNamespace+"/"+mesh.TicketName(string(run.UID))), "the run's lock Leases")
	finished(t, run) // how the run ends is other tests' business; where its lock lived, and that it is gone, is this one's
	g.Expect(held(g)).To(BeEmpty(), "released")
	expectNoLock(t)
	expectMeshAsFound(t)
}

// TestManagerLeasesOnlyAtHome: RBAC gives the manager Lease rights only in its own namespace, and should a
// broader grant give it more, manager-limits still refuses it any Lease elsewhere, the mesh lock included.
func TestManagerLeasesOnlyAtHome(t *testing.T) {
	manager, err := client.New(sb.ManagerConfig(), client.Options{Scheme: k8s.Scheme()})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	grant(t, sandbox.ManagerUser, "", rule("coordination.k8s.io", "leases", "create"))
	for _, ns := range []string{sandbox.RootNamespace, sandbox.DemoNamespace, "kube-system"} {
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: mesh.TicketName("some-run")}}
		NewWithT(t).Eventually(func() error { return manager.Create(context.Background(), lease.DeepCopy(), client.DryRunAll) }).
			WithTimeout(10*time.Second).WithPolling(100*time.Millisecond).
			Should(MatchError(ContainSubstring("the labrun-operator may only create Leases in its own namespace (labrun-system)")), ns)
	}
	home := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.OperatorNamespace, Name: mesh.TicketName("some-run")}}
	NewWithT(t).Expect(manager.Create(context.Background(), home, client.DryRunAll)).To(Succeed())
}

// TestFootprintNeedsTheRightToReadWhatItCounts: the footprint lab is admitted only if its requester may list
// pods (and their usage) where the lab reads them: ztunnel's namespace, the target's, and every namespace, since
// its sidecar estimate counts the pods of every ambient-enrolled one. Each missing right is named in turn; the
// same holds for a schedule's template.
func TestFootprintNeedsTheRightToReadWhatItCounts(t *testing.T) {
	ensureTenantNamespace(t)
	grant(t, "fiona", tenantNamespace, rule(labsv1.GroupVersion.Group, "labruns", "create"),
		rule(labsv1.GroupVersion.Group, "labschedules", "create"), rule("", "pods", "create", "list"))
	grant(t, "fiona", sandbox.DemoNamespace, rule("", "pods", "create"))
	fiona := asUser(t, "fiona")
	refused := func(t *testing.T, run *labsv1.LabRun, message string) {
		t.Helper()
		NewWithT(t).Eventually(func() error { return dryRunCreate(fiona, run) }).WithTimeout(10 * time.Second).
			WithPolling(100 * time.Millisecond).Should(MatchError(ContainSubstring(message)))
	}
	t.Run("the ztunnel pods", func(t *testing.T) {
		refused(t, tenantRun(labsv1.LabFootprint),
			"user fiona may not list pods in namespace istio-system, where the footprint lab reads the ztunnel pods")
		ls := operatortest.NewSchedule("@every 1h")
		ls.Namespace = tenantNamespace
		ls.Spec.Template.Spec.Labs = []labsv1.LabName{labsv1.LabFootprint}
		ls.Spec.Template.Spec.Mesh.AuthorizationPolicy = nil
		NewWithT(t).Expect(fiona.Create(context.Background(), ls, client.DryRunAll)).To(MatchError(ContainSubstring(
			"user fiona may not list pods in namespace istio-system, where the footprint lab reads the ztunnel pods")))
	})
	grant(t, "fiona", sandbox.RootNamespace, rule("", "pods", "list"))
	t.Run("ztunnel's usage", func(t *testing.T) {
		refused(t, tenantRun(labsv1.LabFootprint),
			"user fiona may not list pods.metrics.k8s.io in namespace istio-system, where the footprint lab reads ztunnel's usage")
	})
	grant(t, "fiona", sandbox.RootNamespace, rule("metrics.k8s.io", "pods", "list"))
	t.Run("the target's pods", func(t *testing.T) {
		run := tenantRun(labsv1.LabFootprint)
		run.Spec.Target.Namespace = sandbox.DemoNamespace
		refused(t, run, "user fiona may not list pods in namespace demo, where the footprint lab looks for sidecars")
	})
	t.Run("every namespace", func(t *testing.T) {
		refused(t, tenantRun(labsv1.LabFootprint),
			"user fiona may not list pods in all namespaces: the footprint lab counts the pods of every ambient-enrolled namespace")
	})
	grant(t, "fiona", "", rule("", "pods", "list"))
	t.Run("admitted with them all", func(t *testing.T) {
		NewWithT(t).Eventually(func() error { return dryRunCreate(fiona, tenantRun(labsv1.LabFootprint)) }).
			WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
}
