package operatortest

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
	"github.com/ambientlab/labrun-operator/internal/sandbox"
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
