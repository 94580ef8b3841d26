package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// The trust boundary, tried as a tenant would: users with a namespace of their own (team-a) and the rights an
// administrator would give them, impersonated through the real API server with its RBAC authorizer and the
// admission policies config/default ships.

// tenantRun is a LabRun in team-a as a tenant writes it: the defaults point at the mesh root's
// PeerAuthentication and ztunnel's namespace.
func tenantRun(labs ...labsv1.LabName) *labsv1.LabRun {
	run := newRun(labs...)
	run.Namespace = tenantNamespace
	run.Spec.Mesh.AuthorizationPolicy = nil
	return run
}

// dryRunCreate asks the API server to admit run without storing it: admission runs in full.
func dryRunCreate(c client.Client, run *labsv1.LabRun) error {
	return c.Create(context.Background(), run.DeepCopy(), client.DryRunAll)
}

func TestTenantIsRefusedWhatSheCouldNotDoHerself(t *testing.T) {
	ensureTenantNamespace(t)
	// alice owns team-a: LabRuns, pods and ServiceAccounts there, and nothing elsewhere.
	grant(t, "alice", tenantNamespace, rule(labsv1.GroupVersion.Group, "labruns", "create", "get", "list", "watch"),
		rule("", "pods", "create", "get", "list"), rule("", "serviceaccounts", "create", "get"))
	alice := asUser(t, "alice")
	cases := []struct {
		name    string
		run     func() *labsv1.LabRun
		message string
	}{
		{"another namespace's AuthorizationPolicy", func() *labsv1.LabRun {
			r := tenantRun(labsv1.LabAuthorizationPolicy)
			r.Spec.Mesh.AuthorizationPolicy = &labsv1.ObjectRef{Namespace: sandbox.DemoNamespace, Name: sandbox.PolicyName}
			return r
		}, "user alice may not update AuthorizationPolicy demo/backend-allow-frontend-only"},
		{"the mesh root PeerAuthentication", func() *labsv1.LabRun {
			r := tenantRun(labsv1.LabPeerAuthentication)
			r.Spec.Mesh.AuthorizationPolicy = &labsv1.ObjectRef{Name: "team-a-policy"}
			r.Spec.Scope = labsv1.ScopeMesh
			return r
		}, "user alice may not update PeerAuthentication istio-system/default"},
		{"a temporary PeerAuthentication in her namespace without the right to create one", func() *labsv1.LabRun {
			r := tenantRun(labsv1.LabPeerAuthentication)
			r.Spec.Mesh.AuthorizationPolicy = &labsv1.ObjectRef{Name: "team-a-policy"}
			return r
		}, "user alice may not create and delete PeerAuthentications in namespace team-a"},
		{"a foreign ServiceAccount", func() *labsv1.LabRun {
			r := tenantRun(labsv1.LabFootprint)
			r.Spec.Target.Namespace = sandbox.DemoNamespace
			r.Spec.Client.ServiceAccount = "cluster-admin-sa"
			return r
		}, "user alice may not create pods in namespace demo, where the probe pods run as ServiceAccount cluster-admin-sa"},
		{"a custom probe image", func() *labsv1.LabRun {
			r := tenantRun(labsv1.LabFootprint)
			r.Spec.Probe.Image = "registry.example/alice/forger:1"
			return r
		}, "user alice may not set-probe-image on labruns in namespace team-a"},
		{"ztunnel's logs", func() *labsv1.LabRun { return tenantRun(labsv1.LabMTLS) },
			"user alice may not get pods/log in namespace istio-system"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Eventually(func() error { return dryRunCreate(alice, tc.run()) }).
				WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).
				Should(MatchError(ContainSubstring(tc.message)))
		})
	}
	t.Run("her own footprint lab is admitted once she may read what it counts", func(t *testing.T) {
		grantFootprintReads(t, "alice")
		NewWithT(t).Eventually(func() error { return dryRunCreate(alice, tenantRun(labsv1.LabFootprint)) }).
			WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
}

func TestMeshAdministratorIsAdmitted(t *testing.T) {
	g := NewWithT(t)
	// mia holds the ClusterRole that config/samples documents for running the sample.
	role := &rbacv1.ClusterRole{}
	raw, err := os.ReadFile(filepath.Join(sb.Env.Root, "config", "samples", "mesh_tester_role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(yaml.UnmarshalStrict(raw, role)).To(Succeed())
	grant(t, "mia", "", role.Rules...)
	mia := asUser(t, "mia")
	run := newRun(labsv1.AllLabs...) // the sample: every lab against the guide's mesh
	run.Spec.Probe.Image = "registry.example/labrun-operator@sha256:" + fmt.Sprintf("%064d", 0)
	g.Eventually(func() error { return dryRunCreate(mia, run) }).WithTimeout(10 * time.Second).
		Should(MatchError(ContainSubstring("user mia may not set-probe-image on labruns in namespace demo")))
	run.Spec.Probe.Image = ""
	g.Expect(dryRunCreate(mia, run)).To(Succeed())
	run.Spec.Probe.Image = "registry.example/labrun-operator@sha256:" + fmt.Sprintf("%064d", 0)
	grant(t, "mia", sandbox.DemoNamespace, rule(labsv1.GroupVersion.Group, "labruns", "set-probe-image"))
	g.Eventually(func() error { return dryRunCreate(mia, run) }).WithTimeout(10 * time.Second).Should(Succeed())
}

// meshState is every PeerAuthentication and AuthorizationPolicy in the cluster: name → spec.
func meshState(t testing.TB) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, kind := range []string{mesh.KindPeerAuthentication, mesh.KindAuthorizationPolicy} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(mesh.GVK(kind).GroupVersion().WithKind(kind + "List"))
		NewWithT(t).Expect(k8s.List(context.Background(), list)).To(Succeed())
		for _, u := range list.Items {
			out[kind+" "+u.GetNamespace()+"/"+u.GetName()] = u.Object["spec"]
		}
	}
	return out
}

func names(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// expectMeshUnchanged asserts, for a while, that no PeerAuthentication or AuthorizationPolicy was created,
// deleted or changed. A negative needs a bounded observation: the watchdog of the past acted within a second.
func expectMeshUnchanged(t testing.TB, before map[string]any) {
	t.Helper()
	NewWithT(t).Consistently(func(g Gomega) {
		now := meshState(t)
		g.Expect(names(now)).To(Equal(names(before)), "PeerAuthentications and AuthorizationPolicies")
		for k, spec := range before {
			g.Expect(now[k]).To(Equal(spec), k)
		}
	}).WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// withoutBinding deletes an admission policy binding of config/default until the test ends, as on a cluster
// whose admission policies are off: the controller itself must not believe what tenants write.
func withoutBinding(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	b := &admissionv1.ValidatingAdmissionPolicyBinding{}
	NewWithT(t).Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, b)).To(Succeed())
	NewWithT(t).Expect(k8s.Delete(ctx, b)).To(Succeed())
	t.Cleanup(func() {
		restored := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: b.Spec}
		NewWithT(t).Expect(k8s.Create(ctx, restored)).To(Succeed())
	})
}

// forgedOriginal is what a tenant would like restored: an allow-all AuthorizationPolicy in the mesh root.
func forgedOriginal(t testing.TB) string {
	raw, err := json.Marshal(labsv1.JournalEntry{Kind: mesh.KindAuthorizationPolicy, Namespace: sandbox.RootNamespace,
		Name: "allow-everything", Spec: jsonSpec(t, map[string]any{"action": "ALLOW", "rules": []any{map[string]any{}}})})
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestForgedMarksOnATenantPolicyAreRefusedAndChangeNothing(t *testing.T) {
	ensureTenantNamespace(t)
	startManager(t, managerOptions())
	g := NewWithT(t)
	ctx := context.Background()
	// bob may edit AuthorizationPolicies in team-a, nothing more.
	grant(t, "bob", tenantNamespace, rule("security.istio.io", "authorizationpolicies", "get", "list", "create", "update", "patch"))
	bob := asUser(t, "bob")

	// A finished run whose UID the forged marks name; deleting it is what woke the old watchdog.
	victim := newRun(labsv1.LabFootprint)
	create(t, victim)
	done := finished(t, victim)
	forge := func(u *unstructured.Unstructured) {
		u.SetLabels(map[string]string{mesh.LabelChangedBy: string(done.UID)})
		u.SetAnnotations(map[string]string{labsv1.AnnotationOwner: victim.Namespace + "/" + victim.Name,
			labsv1.AnnotationRestoreBy: "2000-01-01T00:00:00Z", "labs.ambientlab.io/original": forgedOriginal(t)})
	}
	policy := func(name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(mesh.GVK(mesh.KindAuthorizationPolicy))
		u.SetNamespace(tenantNamespace)
		u.SetName(name)
		u.Object["spec"] = map[string]any{"action": "DENY", "rules": []any{map[string]any{}}}
		return u
	}

	marked := policy("bobs-marked")
	forge(marked)
	g.Eventually(func() error { return bob.Create(ctx, marked.DeepCopy(), client.DryRunAll) }).WithTimeout(10 * time.Second).
		Should(MatchError(ContainSubstring("user bob may not add, change or remove labs.ambientlab.io/ labels or annotations on AuthorizationPolicy team-a/bobs-marked")))
	plain := policy("bobs-plain")
	g.Expect(bob.Create(ctx, plain)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, plain) })
	// istiod writes the policy's status too: read it fresh on each attempt, so a conflict is not the answer.
	forgePlain := func() error {
		cur := policy("bobs-plain")
		if err := bob.Get(ctx, client.ObjectKeyFromObject(cur), cur); err != nil {
			return err
		}
		forge(cur)
		return bob.Update(ctx, cur)
	}
	g.Eventually(forgePlain).WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring("only the labrun-operator writes them")))

	// With the policy off, the marks land; the operator must still take no instruction from them.
	withoutBinding(t, "labrun-mesh-marks")
	g.Eventually(forgePlain).WithTimeout(10 * time.Second).Should(Succeed())
	before := meshState(t)
	deleteAndWait(t, victim)
	expectMeshUnchanged(t, before)
}

func TestForgedStatusIsRefusedAndAForgedJournalChangesNothing(t *testing.T) {
	startManager(t, managerOptions())
	g := NewWithT(t)
	ctx := context.Background()
	// carol may patch LabRun status in demo (a role some clusters hand out with "edit").
	grant(t, "carol", sandbox.DemoNamespace, rule(labsv1.GroupVersion.Group, "labruns", "get", "list", "delete"),
		rule(labsv1.GroupVersion.Group, "labruns/status", "get", "update", "patch"))
	carol := asUser(t, "carol")

	run := newRun(labsv1.LabFootprint) // changes nothing in the mesh
	create(t, run)
	done := finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded))
	forgeJournal := func() error {
		cur := &labsv1.LabRun{}
		if err := carol.Get(ctx, client.ObjectKeyFromObject(run), cur); err != nil {
			return err
		}
		now := metav1.Now()
		cur.Status.Journal = []labsv1.JournalEntry{
			{Kind: mesh.KindPeerAuthentication, Namespace: sandbox.RootNamespace, Name: "default", RecordedAt: now,
				Spec: jsonSpec(t, map[string]any{"mtls": map[string]any{"mode": "PERMISSIVE"}})},
			{Kind: mesh.KindAuthorizationPolicy, Namespace: sandbox.DemoNamespace, Name: sandbox.PolicyName, RecordedAt: now,
				Spec: jsonSpec(t, map[string]any{}), Change: "set aside"},
			{Kind: mesh.KindAuthorizationPolicy, Namespace: sandbox.RootNamespace, Name: "allow-everything", RecordedAt: now,
				Spec: jsonSpec(t, map[string]any{"action": "ALLOW", "rules": []any{map[string]any{}}}), Change: "set aside"},
		}
		cur.Status.Phase = labsv1.PhaseRestoring
		return carol.Status().Update(ctx, cur)
	}
	g.Eventually(forgeJournal).WithTimeout(10 * time.Second).
		Should(MatchError(ContainSubstring("user carol may not update labruns/status of LabRun demo/" + run.Name)))

	// With the policy off, the forged journal lands; the operator must still not act on it.
	withoutBinding(t, "labrun-status-writes")
	g.Eventually(forgeJournal).WithTimeout(10 * time.Second).Should(Succeed())
	before := meshState(t)
	g.Expect(carol.Delete(ctx, run)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(run), &labsv1.LabRun{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	expectMeshUnchanged(t, before)
	expectMeshAsFound(t)
}

func jsonSpec(t testing.TB, v any) *apiextensionsv1.JSON {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &apiextensionsv1.JSON{Raw: raw}
}

func TestRunsTouchOnlyEnabledNamespaces(t *testing.T) {
	startManager(t, managerOptions())
	ensureTenantNamespace(t) // enrolled in ambient, but no administrator enabled it for runs
	before := meshState(t)
	run := newRun(labsv1.LabMTLS)
	run.Spec.Target.Namespace = tenantNamespace
	create(t, run)
	done := finished(t, run)
	g := NewWithT(t)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	g.Expect(done.Status.Reason).To(Equal(labsv1.ReasonPreflightFailed))
	g.Expect(done.Status.Message).To(ContainSubstring("namespace team-a is not enabled for LabRuns: an administrator must label it labs.ambientlab.io/enabled=true"))
	g.Expect(meshState(t)).To(Equal(before))
	g.Expect(leftovers()).To(BeEmpty())
}
