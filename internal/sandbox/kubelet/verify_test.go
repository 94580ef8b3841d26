package kubelet_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox/kubelet"
)

// TestAPIServerVerifiesKubeletCertificate runs the API server with --kubelet-certificate-authority set to one
// kubelet's certificate: that kubelet's logs come through (the certificate's IP SAN matches 127.0.0.1), while
// another kubelet with its own self-signed certificate is refused. It shows the sandbox works with verification
// too, and that without the flag (TestAPIServerProxiesPodLogs) the API server really skips it.
func TestAPIServerVerifiesKubeletCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	trusted, untrusted := startKubelet(t), startKubelet(t)
	caFile := filepath.Join(t.TempDir(), "kubelet-ca.crt")
	if err := os.WriteFile(caFile, trusted.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cs := startAPIServer(t, map[string]string{"kubelet-certificate-authority": caFile})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createNamespace(ctx, t, cs)
	createNode(ctx, t, cs, "trusted", trusted.port)
	createNode(ctx, t, cs, "untrusted", untrusted.port)
	createPod(ctx, t, cs, "on-trusted", "trusted")
	createPod(ctx, t, cs, "on-untrusted", "untrusted")
	trusted.store.Append(ns, "on-trusted", container, "verified")
	untrusted.store.Append(ns, "on-untrusted", container, "must not be read")

	expectPodLogs(ctx, t, cs, "on-trusted", &corev1.PodLogOptions{Container: container}, "verified\n")
	// Stream, as kubectl logs uses, surfaces the API server's message; DoRaw reduces it to "unknown".
	rc, err := cs.CoreV1().Pods(ns).GetLogs("on-untrusted", &corev1.PodLogOptions{Container: container}).Stream(ctx)
	if err == nil {
		rc.Close()
	}
	t.Logf("untrusted kubelet: %v", err)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted kubelet: got %v, want a certificate verification error", err)
	}
}

type testKubelet struct {
	*kubelet.Server
	store *kubelet.LogStore
	port  int
}

func startKubelet(t *testing.T) testKubelet {
	t.Helper()
	store := kubelet.NewLogStore()
	srv := kubelet.NewServer(store)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return testKubelet{Server: srv, store: store, port: srv.Port()}
}

// startAPIServer starts envtest as controlplane.Start does, minus the CRDs, with extra kube-apiserver flags.
func startAPIServer(t *testing.T, flags map[string]string) kubernetes.Interface {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: filepath.Join(root, "bin", "k8s")}
	args := env.ControlPlane.GetAPIServer().Configure()
	for k, v := range flags {
		args.Set(k, v)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
