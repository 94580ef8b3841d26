package controllers_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/operator"
)

var (
	env *controlplane.Env
	k8s client.Client
)

// TestMain starts one local control plane (real kube-apiserver and etcd, LabRun and Istio CRDs) for the package.
func TestMain(m *testing.M) {
	if os.Getenv("LABRUN_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	var err error
	env, err = controlplane.Start(controlplane.Options{Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scheme, _ := operator.NewScheme()
	k8s, err = client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
	}
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// startManager runs the operator's manager, as main.go builds it, until the test ends.
func startManager(t *testing.T) {
	t.Helper()
	mgr, err := operator.NewManager(env.Config, operator.Options{ProbeImage: "labrun-operator:test",
		PodStartGrace: 30 * time.Second, SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

var nsCounter atomic.Int32

// newNamespace creates a fresh namespace, enrolled in ambient mode when ambient is true.
func newNamespace(t *testing.T, ambient bool) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: fmt.Sprintf("demo-%d-%d", time.Now().UnixNano()%100000, nsCounter.Add(1)),
	}}
	if ambient {
		ns.Labels = map[string]string{"istio.io/dataplane-mode": "ambient"}
	}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// seedWorld creates the guide's backend Service and frontend ServiceAccount in ns.
func seedWorld(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	objs := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "frontend"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backend"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "backend"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// newLabRun builds a LabRun with only what a user must write; the API server fills in the defaults.
func newLabRun(ns string, labs ...labsv1.LabName) *labsv1.LabRun {
	return &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "run"},
		Spec:       labsv1.LabRunSpec{Labs: labs, Target: labsv1.TargetSpec{Service: "backend"}},
	}
}

// finishedRun waits for the run to reach a terminal phase and returns it.
func finishedRun(t *testing.T, key client.ObjectKey) *labsv1.LabRun {
	t.Helper()
	g := NewWithT(t)
	run := &labsv1.LabRun{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), key, run)).To(Succeed())
		g.Expect(run.Status.Phase).To(BeElementOf(labsv1.PhaseSucceeded, labsv1.PhaseFailed))
	}).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return run
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
