// Package sandboxtest is what every test package that runs the operator on the sandbox shares: the world's mesh
// objects, and the manager run as main.go builds it under its own ServiceAccount until the test ends.
package sandboxtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/operator"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// The world's mesh-wide PeerAuthentication and the backend's AuthorizationPolicy.
var (
	PeerAuthRef = mesh.Ref{Kind: mesh.KindPeerAuthentication, Namespace: sandbox.RootNamespace, Name: "default"}
	PolicyRef   = mesh.Ref{Kind: mesh.KindAuthorizationPolicy, Namespace: sandbox.DemoNamespace, Name: sandbox.PolicyName}
)

// ReadMesh reads a mesh object as the API server holds it.
func ReadMesh(c client.Reader, ref mesh.Ref) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mesh.GVK(ref.Kind))
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u)
	return u, err
}

// ManagerOptions are what tests run the manager with: the sandbox's operator namespace, a short pod-start grace
// so stuck pods fail fast, and a one-second watchdog grace.
func ManagerOptions(probeImage string) operator.Options {
	return operator.Options{ProbeImage: probeImage, PodStartGrace: 20 * time.Second,
		SkipNameValidation: true, WatchdogGrace: time.Second, Namespace: sandbox.OperatorNamespace}
}

// StartManager runs the operator's manager, as main.go builds it, under the manager ServiceAccount's identity
// (config/default's RBAC and admission policies apply), until the test ends or stop is called.
func StartManager(t testing.TB, sb *sandbox.Sandbox, o operator.Options) (stop func()) {
	t.Helper()
	mgr, err := operator.NewManager(sb.ManagerConfig(), o)
	if err != nil {
		t.Fatal(err)
	}
	return RunManager(t, mgr)
}

// RunManager starts mgr until the test ends or stop is called; an error it stops with fails the test.
func RunManager(t testing.TB, mgr ctrl.Manager) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.CompareAndSwap(false, true) {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}
