// Package sandboxtest is what every test package that runs on the sandbox shares: the world's mesh objects, and a
// manager run until the test ends (operatortest builds the operator's).
package sandboxtest

import (
	"context"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/mesh"
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
