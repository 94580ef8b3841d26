package controllers_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/operator"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
)

var (
	sb  *sandbox.Sandbox
	k8s client.WithWatch
	// original mesh objects, as the sandbox's world created them
	origPeerAuth, origPolicy *unstructured.Unstructured
)

const (
	testDelay       = 200 * time.Millisecond
	testProbeImage  = "labrun-operator:test"
	unpullableImage = "registry.invalid/labrun-operator:none"
)

// TestMain starts one sandbox for the package: a real kube-apiserver and etcd with the LabRun and Istio CRDs,
// the lab guide's world, the simulated node agent and ztunnel.
func TestMain(m *testing.M) {
	if os.Getenv("LABRUN_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	var err error
	// The probe images config/admission lets the manager use: the tests' own, and one that an administrator
	// permitted but no kubelet can pull (TestErroringStepsStillRestore).
	sb, err = sandbox.Start(context.Background(), sandbox.Options{PropagationDelay: testDelay, Progress: os.Stderr,
		ProbeImages: []string{testProbeImage, unpullableImage}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = sb.Client
	origPeerAuth, origPolicy = readMesh(peerAuthRef), readMesh(policyRef)
	code := m.Run()
	if err := sb.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the sandbox:", err)
	}
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var peerAuthRef, policyRef = sandboxtest.PeerAuthRef, sandboxtest.PolicyRef

func readMesh(ref mesh.Ref) *unstructured.Unstructured {
	u, err := sandboxtest.ReadMesh(k8s, ref)
	if err != nil {
		panic(err)
	}
	return u
}

// managerOptions are what tests run the manager with; PodStartGrace is short so stuck pods fail fast.
func managerOptions() operator.Options { return sandboxtest.ManagerOptions(testProbeImage) }

// startManager runs the operator's manager, as main.go builds it, under the manager ServiceAccount's identity
// (config/default's RBAC and admission policies apply), until the test ends or stop is called.
func startManager(t testing.TB, o operator.Options) (stop func()) {
	t.Helper()
	return sandboxtest.StartManager(t, sb, o)
}

// runManager starts mgr until the test ends or stop is called.
func runManager(t testing.TB, mgr ctrl.Manager) (stop func()) { return sandboxtest.RunManager(t, mgr) }

var runCounter atomic.Int32

// newRun builds a LabRun in the demo namespace with what a user must write; the API server fills defaults.
func newRun(labs ...labsv1.LabName) *labsv1.LabRun {
	return &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: fmt.Sprintf("run-%d", runCounter.Add(1))},
		Spec: labsv1.LabRunSpec{
			Labs:   labs,
			Target: labsv1.TargetSpec{Service: "backend"},
			Mesh:   labsv1.MeshSpec{AuthorizationPolicy: &labsv1.ObjectRef{Name: sandbox.PolicyName}},
			Probe:  labsv1.ProbeSpec{SettleTimeout: &metav1.Duration{Duration: 10 * time.Second}},
		},
	}
}

// create creates the run and deletes it (waiting until it is gone) when the test ends.
func create(t testing.TB, run *labsv1.LabRun) {
	t.Helper()
	NewWithT(t).Expect(k8s.Create(context.Background(), run)).To(Succeed())
	t.Cleanup(func() { deleteAndWait(t, run) })
}

func deleteAndWait(t testing.TB, run *labsv1.LabRun) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Delete(ctx, run); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting %s: %v", run.Name, err)
	}
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(run), &labsv1.LabRun{}))
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
}

// finished waits for the run to reach a terminal phase and returns it.
func finished(t testing.TB, run *labsv1.LabRun) *labsv1.LabRun {
	t.Helper()
	done, err := sandbox.WaitForRun(context.Background(), k8s, client.ObjectKeyFromObject(run), 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

// expectMeshAsFound asserts what every restore path must leave: PeerAuthentication STRICT with its original
// spec, the AuthorizationPolicy exactly as found, no run's marks, and no probe pods, ServiceAccounts or
// namespaces left behind.
func expectMeshAsFound(t testing.TB) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		pa, ap := readMesh(peerAuthRef), readMesh(policyRef)
		g.Expect(pa.Object["spec"]).To(Equal(origPeerAuth.Object["spec"]), "PeerAuthentication spec")
		mode, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode")
		g.Expect(mode).To(Equal("STRICT"))
		g.Expect(reflect.DeepEqual(ap.Object["spec"], origPolicy.Object["spec"])).To(BeTrue(), "AuthorizationPolicy spec %v", ap.Object["spec"])
		g.Expect(pa.GetLabels()).To(Equal(origPeerAuth.GetLabels()))
		g.Expect(ap.GetAnnotations()).To(Equal(origPolicy.GetAnnotations()))
		g.Expect(pa.GetAnnotations()).To(Equal(origPeerAuth.GetAnnotations()))
		g.Expect(leftovers()).To(BeEmpty())
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// leftovers lists the probe pods, ServiceAccounts, namespaces, temporary PeerAuthentications and trusted records
// runs created that still exist.
func leftovers() []string {
	var out []string
	ctx := context.Background()
	sel := client.HasLabels{labsv1.LabelLabRun}
	pods, sas, nss, cms := &corev1.PodList{}, &corev1.ServiceAccountList{}, &corev1.NamespaceList{}, &corev1.ConfigMapList{}
	for _, l := range []client.ObjectList{pods, sas, nss, cms} {
		if err := k8s.List(ctx, l, sel); err != nil {
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
	return append(out, temporaryPeerAuths()...)
}

// stepOf returns the named step of a run.
func stepOf(t *testing.T, run *labsv1.LabRun, lab labsv1.LabName, name string) labsv1.StepResult {
	t.Helper()
	for _, st := range run.Status.Steps {
		if st.Lab == lab && st.Name == name {
			return st
		}
	}
	t.Fatalf("run %s has no step %s/%s", run.Name, lab, name)
	return labsv1.StepResult{}
}

// slowPropagation makes policy changes take delay to reach the simulated ztunnel until the test ends. Then the
// delay goes back to testDelay and the test waits until every push already sent has landed: a push still on its
// way would otherwise land in the next test's run, as a change nobody made then.
func slowPropagation(t testing.TB, delay time.Duration) {
	sb.Dataplane.SetPropagationDelay(delay)
	t.Cleanup(func() {
		sb.Dataplane.SetPropagationDelay(testDelay)
		waitPropagated(t, delay)
	})
}

// waitPropagated waits until no policy push is on its way to the simulated ztunnel (bounded by the slowest delay).
func waitPropagated(t testing.TB, delay time.Duration) {
	t.Helper()
	NewWithT(t).Eventually(sb.Dataplane.Pending).WithTimeout(delay+5*time.Second).
		WithPolling(20*time.Millisecond).Should(BeZero(), "policy pushes still on their way to ztunnel")
}

// waitForMode waits until the run's change is visible: for "PERMISSIVE", a temporary PeerAuthentication a run
// created (Workload or Namespace scope) or the mesh-wide one PERMISSIVE (Mesh scope); else the mesh-wide mode.
func waitForMode(t *testing.T, mode string) {
	t.Helper()
	NewWithT(t).Eventually(func() string {
		if mode == "PERMISSIVE" && len(temporaryPeerAuths()) > 0 {
			return mode
		}
		m, _, _ := unstructured.NestedString(readMesh(peerAuthRef).Object, "spec", "mtls", "mode")
		return m
	}).WithTimeout(30 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(mode))
}

// temporaryPeerAuths names the PeerAuthentications runs created (they carry a run's mark from creation).
func temporaryPeerAuths() []string {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication).GroupVersion().WithKind("PeerAuthenticationList"))
	if err := k8s.List(context.Background(), list, client.HasLabels{mesh.LabelChangedBy}); err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, pa := range list.Items {
		if pa.GetNamespace() != peerAuthRef.Namespace || pa.GetName() != peerAuthRef.Name {
			out = append(out, "peerauthentication "+pa.GetNamespace()+"/"+pa.GetName())
		}
	}
	return out
}
