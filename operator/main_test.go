package operator_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator"
	"github.com/ambientlab/labrun-operator/operator/operatortest"
)

// sb is the one sandbox the package's tests share: a real kube-apiserver and etcd with config/default's RBAC and
// admission policies installed and the lab guide's world seeded.
var sb *sandbox.Sandbox

func TestMain(m *testing.M) {
	if os.Getenv("LABRUN_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	sb, err = sandbox.Start(ctx, sandbox.Options{Progress: os.Stderr})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the sandbox:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := sb.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the sandbox:", err)
	}
	os.Exit(code)
}

// startManager runs the operator's manager as main.go builds it, under the manager ServiceAccount's identity
// (config/default's RBAC and admission policies apply to it), until the test ends.
func startManager(t *testing.T, o operator.Options) {
	t.Helper()
	o.SkipNameValidation, o.Namespace, o.ProbeImage = true, sandbox.OperatorNamespace, sandbox.SandboxProbeImage
	operatortest.StartManager(t, sb, o)
}
