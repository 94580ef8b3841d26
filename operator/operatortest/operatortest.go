// Package operatortest runs the operator's manager on the sandbox for the test packages that drive it: as main.go
// builds it, under its own ServiceAccount.
package operatortest

import (
	"testing"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
	"github.com/ambientlab/labrun-operator/operator"
)

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
	return sandboxtest.RunManager(t, NewManager(t, sb.ManagerConfig(), o))
}

// NewManager builds a manager as main.go does, on cfg (the manager's identity), without starting it.
func NewManager(tb testing.TB, cfg *rest.Config, o operator.Options) ctrl.Manager {
	tb.Helper()
	mgr, err := operator.NewManager(cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	return mgr
}
