package monitoring_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator"
)

var (
	sb  *sandbox.Sandbox
	k8s client.WithWatch
	// root is the repository's root directory.
	root = func() string {
		_, file, _, _ := runtime.Caller(0)
		return filepath.Join(filepath.Dir(file), "..", "..")
	}()
)

const testProbeImage = "labrun-operator:test"

// TestMain stops the sandbox and the manager the tests started. One sandbox (a real kube-apiserver and etcd, the
// lab world, the simulated nodes) and one manager (as main.go builds it, under its ServiceAccount) serve the
// package; they start with the first test that needs them, so the tests of the files alone run without them.
func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	if os.Getenv("LABRUN_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	}
	code := m.Run()
	if stop != nil {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	startOnce sync.Once
	startErr  error
	stop      func() error
)

// needSandbox starts the sandbox and the manager once, or fails the test.
func needSandbox(t *testing.T) {
	t.Helper()
	startOnce.Do(func() { startErr = start() })
	if startErr != nil {
		t.Fatalf("starting the sandbox: %v", startErr)
	}
}

func start() error {
	var err error
	sb, err = sandbox.Start(context.Background(), sandbox.Options{PropagationDelay: 200 * time.Millisecond,
		Progress: os.Stderr, ProbeImages: []string{testProbeImage}})
	if err != nil {
		return err
	}
	k8s = sb.Client
	mgr, err := operator.NewManager(sb.ManagerConfig(), operator.Options{ProbeImage: testProbeImage,
		PodStartGrace: 20 * time.Second, SkipNameValidation: true, WatchdogGrace: time.Second,
		Namespace: sandbox.OperatorNamespace})
	if err != nil {
		return errors.Join(err, sb.Stop())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stop = func() error {
		cancel()
		var errs []error
		if err := <-done; err != nil {
			errs = append(errs, fmt.Errorf("manager: %w", err))
		}
		if err := sb.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the sandbox: %w", err))
		}
		return errors.Join(errs...)
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
