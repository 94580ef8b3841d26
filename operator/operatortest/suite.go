package operatortest

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
	"github.com/ambientlab/labrun-operator/operator"
)

// The package's sandbox and an admin client of it, set by Main.
var (
	SB  *sandbox.Sandbox
	K8s client.WithWatch
	// OrigPeerAuth and OrigPolicy are the world's mesh objects as the sandbox created them.
	OrigPeerAuth, OrigPolicy *unstructured.Unstructured
)

// TestDelay is the sandbox's policy propagation; TestProbeImage and UnpullableImage are the probe images
// config/admission lets the manager use: the tests' own, and one that an administrator permitted but no kubelet
// can pull.
const (
	TestDelay       = 200 * time.Millisecond
	TestProbeImage  = "labrun-operator:test"
	UnpullableImage = "registry.invalid/labrun-operator:none"
)

// Main is the TestMain of a black-box test package under controllers/: it starts the package's one sandbox (a real
// kube-apiserver and etcd with the LabRun and Istio CRDs, the lab guide's world, the simulated node agent and
// ztunnel), sets SB and K8s, calls started (for the package's own names of them), runs the tests and stops the
// sandbox.
func Main(m *testing.M, started func()) {
	if os.Getenv("LABRUN_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	var err error
	// The probe images config/admission lets the manager use: the tests' own, and one that an administrator
	// permitted but no kubelet can pull (TestErroringStepsStillRestore).
	SB, err = sandbox.Start(context.Background(), sandbox.Options{PropagationDelay: TestDelay, Progress: os.Stderr,
		ProbeImages: []string{TestProbeImage, UnpullableImage}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	K8s = SB.Client
	OrigPeerAuth, OrigPolicy = ReadMesh(PeerAuthRef), ReadMesh(PolicyRef)
	if started != nil {
		started()
	}
	code := m.Run()
	if err := SB.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the sandbox:", err)
	}
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// PeerAuthRef and PolicyRef are the world's mesh-wide PeerAuthentication and the backend's AuthorizationPolicy.
var PeerAuthRef, PolicyRef = sandboxtest.PeerAuthRef, sandboxtest.PolicyRef

// ReadMesh reads a mesh object as the API server holds it; it panics if it cannot.
func ReadMesh(ref mesh.Ref) *unstructured.Unstructured {
	u, err := sandboxtest.ReadMesh(K8s, ref)
	if err != nil {
		panic(err)
	}
	return u
}

// Options are what the package's tests run the manager with: ManagerOptions with the tests' probe image.
func Options() operator.Options { return ManagerOptions(TestProbeImage) }

// Start runs the operator's manager on the package's sandbox (StartManager) until the test ends or stop is called.
func Start(t testing.TB, o operator.Options) (stop func()) {
	t.Helper()
	return StartManager(t, SB, o)
}

// Counter numbers what the package's tests name: runs, users, markers.
var Counter atomic.Int32

// NewRun builds a LabRun in the demo namespace with what a user must write; the API server fills defaults.
func NewRun(labs ...labsv1.LabName) *labsv1.LabRun {
	return &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: fmt.Sprintf("run-%d", Counter.Add(1))},
		Spec: labsv1.LabRunSpec{
			Labs:   labs,
			Target: labsv1.TargetSpec{Service: "backend"},
			Mesh:   labsv1.MeshSpec{AuthorizationPolicy: &labsv1.ObjectRef{Name: sandbox.PolicyName}},
			Probe:  labsv1.ProbeSpec{SettleTimeout: &metav1.Duration{Duration: 10 * time.Second}},
		},
	}
}

// Create creates the run and deletes it (waiting until it is gone) when the test ends.
func Create(t testing.TB, run *labsv1.LabRun) {
	t.Helper()
	NewWithT(t).Expect(K8s.Create(context.Background(), run)).To(Succeed())
	t.Cleanup(func() { DeleteAndWait(t, run) })
}

func DeleteAndWait(t testing.TB, run *labsv1.LabRun) {
	t.Helper()
	ctx := context.Background()
	if err := K8s.Delete(ctx, run); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting %s: %v", run.Name, err)
	}
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(K8s.Get(ctx, client.ObjectKeyFromObject(run), &labsv1.LabRun{}))
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
}

// Finished waits for the run to reach a terminal phase and returns it.
func Finished(t testing.TB, run *labsv1.LabRun) *labsv1.LabRun {
	t.Helper()
	done, err := sandbox.WaitForRun(context.Background(), K8s, client.ObjectKeyFromObject(run), 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

// ExpectMeshAsFound asserts what every restore path must leave: PeerAuthentication STRICT with its original
// spec, the AuthorizationPolicy exactly as found, no run's marks, and no probe pods, ServiceAccounts or
// namespaces left behind.
func ExpectMeshAsFound(t testing.TB) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		pa, ap := ReadMesh(PeerAuthRef), ReadMesh(PolicyRef)
		g.Expect(pa.Object["spec"]).To(Equal(OrigPeerAuth.Object["spec"]), "PeerAuthentication spec")
		mode, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode")
		g.Expect(mode).To(Equal("STRICT"))
		g.Expect(reflect.DeepEqual(ap.Object["spec"], OrigPolicy.Object["spec"])).To(BeTrue(), "AuthorizationPolicy spec %v", ap.Object["spec"])
		g.Expect(pa.GetLabels()).To(Equal(OrigPeerAuth.GetLabels()))
		g.Expect(ap.GetAnnotations()).To(Equal(OrigPolicy.GetAnnotations()))
		g.Expect(pa.GetAnnotations()).To(Equal(OrigPeerAuth.GetAnnotations()))
		g.Expect(Leftovers()).To(BeEmpty())
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// Leftovers lists the probe pods, ServiceAccounts, namespaces, temporary PeerAuthentications and trusted records
// runs created that still exist.
func Leftovers() []string {
	var out []string
	ctx := context.Background()
	sel := client.HasLabels{labsv1.LabelLabRun}
	pods, sas, nss, cms := &corev1.PodList{}, &corev1.ServiceAccountList{}, &corev1.NamespaceList{}, &corev1.ConfigMapList{}
	for _, l := range []client.ObjectList{pods, sas, nss, cms} {
		if err := K8s.List(ctx, l, sel); err != nil {
			return []string{err.Error()}
		}
	}
	for _, c := range cms.Items {
		out = append(out, "configmap "+c.Namespace+"/"+c.Name)
	}
	for _, p := range pods.Items {
		out = append(out, "pod "+p.Namespace+"/"+p.Name)
	}
	for _, s := range sas.Items {
		out = append(out, "serviceaccount "+s.Namespace+"/"+s.Name)
	}
	for _, n := range nss.Items {
		out = append(out, "namespace "+n.Name)
	}
	return append(out, TemporaryPeerAuths()...)
}

// StepOf returns the named step of a run.
func StepOf(t *testing.T, run *labsv1.LabRun, lab labsv1.LabName, name string) labsv1.StepResult {
	t.Helper()
	for _, st := range run.Status.Steps {
		if st.Lab == lab && st.Name == name {
			return st
		}
	}
	t.Fatalf("run %s has no step %s/%s", run.Name, lab, name)
	return labsv1.StepResult{}
}

// SlowPropagation makes policy changes take delay to reach the simulated ztunnel until the test ends. Then the
// delay goes back to TestDelay and the test waits until every push already sent has landed: a push still on its
// way would otherwise land in the next test's run, as a change nobody made then.
func SlowPropagation(t testing.TB, delay time.Duration) {
	SB.Dataplane.SetPropagationDelay(delay)
	t.Cleanup(func() {
		SB.Dataplane.SetPropagationDelay(TestDelay)
		WaitPropagated(t, delay)
	})
}

// WaitPropagated waits until no policy push is on its way to the simulated ztunnel (bounded by the slowest delay).
func WaitPropagated(t testing.TB, delay time.Duration) {
	t.Helper()
	NewWithT(t).Eventually(SB.Dataplane.Pending).WithTimeout(delay+5*time.Second).
		WithPolling(20*time.Millisecond).Should(BeZero(), "policy pushes still on their way to ztunnel")
}

// WaitForMode waits until the run's change is visible: for "PERMISSIVE", a temporary PeerAuthentication a run
// created (Workload or Namespace scope) or the mesh-wide one PERMISSIVE (Mesh scope); else the mesh-wide mode.
func WaitForMode(t *testing.T, mode string) {
	t.Helper()
	NewWithT(t).Eventually(func() string {
		if mode == "PERMISSIVE" && len(TemporaryPeerAuths()) > 0 {
			return mode
		}
		m, _, _ := unstructured.NestedString(ReadMesh(PeerAuthRef).Object, "spec", "mtls", "mode")
		return m
	}).WithTimeout(30 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(mode))
}

// TemporaryPeerAuths names the PeerAuthentications runs created (they carry a run's mark from creation).
func TemporaryPeerAuths() []string {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication).GroupVersion().WithKind("PeerAuthenticationList"))
	if err := K8s.List(context.Background(), list, client.HasLabels{mesh.LabelChangedBy}); err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, pa := range list.Items {
		if pa.GetNamespace() != PeerAuthRef.Namespace || pa.GetName() != PeerAuthRef.Name {
			out = append(out, "peerauthentication "+pa.GetNamespace()+"/"+pa.GetName())
		}
	}
	return out
}

// AddPeerAuthentication creates a PeerAuthentication in demo for the test (selector nil: namespace-wide).
func AddPeerAuthentication(t *testing.T, name, mode string, selector map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"mtls": map[string]any{"mode": mode}}}}
	u.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
	u.SetNamespace(sandbox.DemoNamespace)
	u.SetName(name)
	if selector != nil {
		u.Object["spec"].(map[string]any)["selector"] = map[string]any{"matchLabels": selector}
	}
	NewWithT(t).Expect(K8s.Create(context.Background(), u)).To(Succeed())
	t.Cleanup(func() { _ = K8s.Delete(context.Background(), u) })
}

// AddPolicy creates an AuthorizationPolicy for the test.
func AddPolicy(t *testing.T, ns, name string, labels, annotations map[string]string, spec map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(mesh.GVK(mesh.KindAuthorizationPolicy))
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetLabels(labels)
	u.SetAnnotations(annotations)
	NewWithT(t).Expect(K8s.Create(context.Background(), u)).To(Succeed())
	t.Cleanup(func() { _ = K8s.Delete(context.Background(), u) })
}

// ShortSettle: the run's denied probes will not see what they expect, so settle need not be long.
func ShortSettle(run *labsv1.LabRun) *labsv1.LabRun {
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: 3 * time.Second}
	run.Spec.Probe.RequestTimeout = &metav1.Duration{Duration: time.Second}
	return run
}

// TenantNamespace is the tenant's namespace of the trust tests: team-a.
const TenantNamespace = "team-a"

// AsUser is a client acting as user, with the cluster's RBAC and admission policies applied to it.
func AsUser(t testing.TB, user string) client.Client {
	t.Helper()
	c, err := client.New(sandbox.AsUser(SB.Env.Config, user), client.Options{Scheme: K8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Grant gives user the rules in namespace ns (a Role) or cluster-wide (ns == "", a ClusterRole) until the test
// ends.
func Grant(t testing.TB, user, ns string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("test-%s-%d", user, Counter.Add(1))
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	var objs []client.Object
	if ns == "" {
		objs = []client.Object{
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}},
		}
	} else {
		objs = []client.Object{
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
		}
	}
	for _, o := range objs {
		NewWithT(t).Expect(K8s.Create(ctx, o)).To(Succeed())
		t.Cleanup(func() { _ = K8s.Delete(ctx, o) })
	}
}

// Rule is one RBAC rule: verbs on a resource of a group.
func Rule(group, resource string, verbs ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{resource}, Verbs: verbs}
}

// EnsureTenantNamespace creates team-a, enrolled in ambient, with a backend Service.
func EnsureTenantNamespace(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: TenantNamespace,
		Labels: map[string]string{"istio.io/dataplane-mode": "ambient"}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: TenantNamespace, Name: "backend"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	for _, o := range []client.Object{ns, svc} {
		if err := K8s.Create(ctx, o); client.IgnoreAlreadyExists(err) != nil {
			t.Fatal(err)
		}
	}
}

// GrantFootprintReads gives user what the footprint lab reads: pods in every namespace and ztunnel's usage.
func GrantFootprintReads(t testing.TB, user string) {
	t.Helper()
	Grant(t, user, "", Rule("", "pods", "list"))
	Grant(t, user, sandbox.RootNamespace, Rule("metrics.k8s.io", "pods", "list"))
}

// KstatusOf is what kstatus (Argo CD, Flux, kubectl wait) reads from o.
func KstatusOf(t testing.TB, o any) status.Status {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}

// scheduleCounter numbers the schedules the package's tests create.
var scheduleCounter atomic.Int32

// NewSchedule is a schedule in the demo namespace whose runs verify the mtls lab.
func NewSchedule(schedule string) *labsv1.LabSchedule {
	return &labsv1.LabSchedule{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: fmt.Sprintf("verify-%d", scheduleCounter.Add(1))},
		Spec: labsv1.LabScheduleSpec{
			Schedule: schedule,
			Template: labsv1.LabRunTemplate{
				Metadata: labsv1.TemplateMetadata{Labels: map[string]string{"team": "platform"}},
				Spec: labsv1.LabRunSpec{
					Mode:   labsv1.ModeVerify,
					Labs:   []labsv1.LabName{labsv1.LabMTLS},
					Target: labsv1.TargetSpec{Service: "backend"},
					Mesh:   labsv1.MeshSpec{AuthorizationPolicy: &labsv1.ObjectRef{Name: sandbox.PolicyName}},
					Probe:  labsv1.ProbeSpec{SettleTimeout: &metav1.Duration{Duration: 10 * time.Second}},
				},
			},
		},
	}
}

// CreateSchedule creates ls and, when the test ends, deletes it and then its runs (no garbage collector runs in
// the sandbox). Call it after Start: cleanups run last-in first-out, and deleting a run needs the manager
// (its finalizer); a test that starts another manager later calls the returned cleanup itself before it ends.
func CreateSchedule(t *testing.T, ls *labsv1.LabSchedule) (cleanup func()) {
	t.Helper()
	ctx := context.Background()
	NewWithT(t).Expect(K8s.Create(ctx, ls)).To(Succeed())
	var once sync.Once
	cleanup = func() {
		once.Do(func() {
			if err := K8s.Delete(ctx, ls); client.IgnoreNotFound(err) != nil {
				t.Errorf("deleting LabSchedule %s: %v", ls.Name, err)
			}
			NewWithT(t).Eventually(func(g Gomega) {
				for _, run := range RunsOf(g, ls) {
					DeleteAndWait(t, &run)
				}
				g.Expect(RunsOf(g, ls)).To(BeEmpty())
			}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		})
	}
	t.Cleanup(cleanup)
	return cleanup
}

// RunsOf lists the schedule's runs, oldest first.
func RunsOf(g Gomega, ls *labsv1.LabSchedule) []labsv1.LabRun {
	list := &labsv1.LabRunList{}
	g.Expect(K8s.List(context.Background(), list, client.InNamespace(ls.Namespace),
		client.MatchingLabels{labsv1.LabelSchedule: ls.Name})).To(Succeed())
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

// MsgInterrupted is what the step a run was in says when its manager went away with the mesh weakened.
const MsgInterrupted = "the manager was replaced while the mesh was weakened; the mesh was restored at once"

// ExpectInterrupted: the run ended Failed, a step (the one it was in when its manager died) says why, the rest
// did not run, and the mesh is restored.
func ExpectInterrupted(tb testing.TB, done *labsv1.LabRun) {
	tb.Helper()
	g := NewWithT(tb)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed), NotPassed(done))
	g.Expect(done.Status.Steps).To(ContainElement(And(HaveField("Verdict", labsv1.VerdictError),
		HaveField("Message", MsgInterrupted))), NotPassed(done))
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
}

// WeakenedPeerAuths names the PeerAuthentications that let plaintext in anywhere (PERMISSIVE or DISABLE,
// for the whole policy or a port): what a run weakens, whatever its scope. The world's own port-level PERMISSIVE
// policy (shop's catalog metrics port, which the policy audit proves) is as the world has it, not weakened.
func WeakenedPeerAuths(tb testing.TB) []string {
	tb.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication).GroupVersion().WithKind("PeerAuthenticationList"))
	if err := K8s.List(context.Background(), list); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, pa := range list.Items {
		if pa.GetNamespace() == sandbox.ShopNamespace && pa.GetName() == sandbox.CatalogMetricsPermissive {
			continue
		}
		modes := []string{}
		if m, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode"); m != "" {
			modes = append(modes, m)
		}
		ports, _, _ := unstructured.NestedMap(pa.Object, "spec", "portLevelMtls")
		for p := range ports {
			if m, _, _ := unstructured.NestedString(ports, p, "mode"); m != "" {
				modes = append(modes, m)
			}
		}
		if slices.Contains(modes, "PERMISSIVE") || slices.Contains(modes, "DISABLE") {
			out = append(out, pa.GetNamespace()+"/"+pa.GetName())
		}
	}
	return out
}

// WaitUntilWeakened waits until a run's PERMISSIVE change is in the API.
func WaitUntilWeakened(tb testing.TB) {
	tb.Helper()
	NewWithT(tb).Eventually(func() []string { return WeakenedPeerAuths(tb) }).
		WithTimeout(60 * time.Second).WithPolling(10 * time.Millisecond).ShouldNot(BeEmpty())
}

// notPassed lists the steps that did not pass, for failure messages.
func NotPassed(run *labsv1.LabRun) string {
	var out []string
	for _, st := range run.Status.Steps {
		if st.Verdict != labsv1.VerdictPass {
			out = append(out, fmt.Sprintf("%s/%s %s: %s", st.Lab, st.Name, st.Verdict, st.Message))
		}
	}
	return run.Status.Message + "\n" + strings.Join(out, "\n")
}

// ExpectNoLock asserts no run holds or waits for a mesh lock (its tickets live in the operator's namespace).
func ExpectNoLock(t *testing.T) {
	t.Helper()
	tickets := &coordinationv1.LeaseList{}
	NewWithT(t).Expect(K8s.List(context.Background(), tickets, client.InNamespace(sandbox.OperatorNamespace),
		client.MatchingLabels{mesh.LabelLockTicket: "true"})).To(Succeed())
	NewWithT(t).Expect(tickets.Items).To(BeEmpty(), "a mesh lock ticket is still there")
}

// WaitForPlaintextVerdict waits until the simulated ztunnel, with what istiod computed, decides a plaintext
// connection to backend:80 by the given DENY policy ("" = by none: allowed, or refused because no ALLOW policy
// matched): a run started then meets the policy state its test set up.
func WaitForPlaintextVerdict(t *testing.T, by string) {
	t.Helper()
	NewWithT(t).Eventually(func() string {
		pods := &corev1.PodList{}
		if err := K8s.List(context.Background(), pods, client.InNamespace(sandbox.DemoNamespace), client.MatchingLabels{"app": "backend"}); err != nil || len(pods.Items) == 0 {
			return "no backend pod"
		}
		p := pods.Items[0]
		d := SB.Dataplane.Effective().Evaluate(policy.Peer{IP: "10.244.9.9"},
			policy.Workload{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IP: p.Status.PodIP, Port: 80})
		if d.Allowed || !strings.HasPrefix(d.Error, policy.ErrExplicitlyDeniedPrefix) {
			return ""
		}
		return d.Policy
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Equal(by))
}

// SecondBackend runs another backend pod, named name, on node, as a second replica would, until the test ends.
func SecondBackend(t *testing.T, node, name string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	pods := &corev1.PodList{}
	g.Expect(K8s.List(ctx, pods, client.InNamespace(sandbox.DemoNamespace), client.MatchingLabels{"app": "backend"})).To(Succeed())
	g.Expect(pods.Items).To(HaveLen(1))
	first := pods.Items[0]
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: first.Namespace, Name: name, Labels: first.Labels},
		Spec: *first.Spec.DeepCopy()}
	pod.Spec.NodeName = node
	g.Expect(K8s.Create(ctx, pod)).To(Succeed())
	t.Cleanup(func() {
		_ = K8s.Delete(ctx, pod)
		NewWithT(t).Eventually(func() bool {
			return apierrors.IsNotFound(K8s.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
		}).WithTimeout(30 * time.Second).Should(BeTrue())
	})
	g.Eventually(func(g Gomega) {
		g.Expect(K8s.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		g.Expect(pod.Status.PodIP).NotTo(BeEmpty())
		g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return pod
}
