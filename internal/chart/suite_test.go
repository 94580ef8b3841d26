package chart_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ambientlab/labrun-operator/internal/chart"
	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

const (
	release = "labrun"
	// probeImage is the probe image the chart is installed with: the in-process manager starts probe pods with
	// it, so the admission policy admits them only if the chart put it in the probe-images ConfigMap.
	probeRepository = "labrun-operator"
	probeTag        = "chart-test"
)

var (
	sb   *sandbox.Sandbox
	root string
	dir  string // the chart
	// installValues are what TestMain installs the chart with.
	installValues = map[string]any{"probeImage": map[string]any{"repository": probeRepository, "tag": probeTag}}
	// installed is the release the sandbox was installed with.
	installed *installResult
	// kubeconfig is the file Helm reads the sandbox's API server and credentials from.
	kubeconfig string
	// helmConfig is the Helm action configuration of the sandbox (release records in labrun-system).
	helmConfig *action.Configuration
)

type installResult struct {
	Manifest string
	Duration time.Duration
}

// TestMain starts one sandbox for the package, with the operator installed by `helm install` of the chart
// (Helm's Go library against the sandbox's API server) instead of config/default.
func TestMain(m *testing.M) {
	if os.Getenv("LABRUN_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	var err error
	if root, err = controlplane.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir = filepath.Join(root, chart.Dir)
	sb, err = sandbox.Start(context.Background(), sandbox.Options{PropagationDelay: -1, Progress: os.Stderr,
		Install: helmInstall})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := sb.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the sandbox:", err)
	}
	_ = os.Remove(kubeconfig) // a file in the temporary directory; nothing else to undo

	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// helmInstall installs the chart as `helm install labrun charts/labrun-operator -n labrun-system
// --create-namespace --take-ownership` would. It takes ownership because the control plane installed the CRDs
// already (every test package's API server starts with them).
func helmInstall(ctx context.Context, _ client.Client, cfg *rest.Config) error {
	start := time.Now()
	getter, path, err := chart.Getter(cfg, sandbox.OperatorNamespace)
	kubeconfig = path
	if err != nil {
		return err
	}
	ac := chart.Quiet()
	if err := ac.Init(getter, sandbox.OperatorNamespace, "secret"); err != nil {
		return fmt.Errorf("setting up Helm: %w", err)
	}
	ch, err := loader.Load(dir)
	if err != nil {
		return err
	}
	install := action.NewInstall(ac)
	install.ReleaseName, install.Namespace = release, sandbox.OperatorNamespace
	install.CreateNamespace, install.TakeOwnership = true, true
	// Wait for hooks only (there are none): the sandbox has no controllers to roll the Deployment out; the
	// manager runs in-process instead.
	install.WaitStrategy, install.Timeout = kube.HookOnlyStrategy, time.Minute
	rel, err := install.RunWithContext(ctx, ch, installValues)
	if err != nil {
		return fmt.Errorf("helm install of %s: %w", dir, err)
	}
	installed, helmConfig = &installResult{Duration: time.Since(start)}, ac
	if r, ok := rel.(*releasev1.Release); ok {
		installed.Manifest = r.Manifest
	}
	return nil
}
