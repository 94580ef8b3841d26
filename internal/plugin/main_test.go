package plugin_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/plugin"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
	"github.com/ambientlab/labrun-operator/operator"
	"github.com/ambientlab/labrun-operator/operator/operatortest"
)

const testProbeImage = "labrun-operator:test"

var (
	sb         *sandbox.Sandbox
	k8s        client.WithWatch
	kubeconfig string // the sandbox's admin, as a user's kubeconfig file
	// the mesh objects as the sandbox's world created them
	origPeerAuth, origPolicy *unstructured.Unstructured
)

// TestMain starts one sandbox for the package (a real kube-apiserver and etcd, config/default's RBAC and
// admission, the simulated ambient data plane) and writes a kubeconfig for its administrator, through which
// every test runs the plugin exactly as a user would.
func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	var err error
	sb, err = sandbox.Start(context.Background(), sandbox.Options{PropagationDelay: 200 * time.Millisecond,
		Progress: os.Stderr, ProbeImages: []string{testProbeImage}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = sb.Client
	code := func() int {
		dir, err := os.MkdirTemp("", "kubectl-labrun-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if kubeconfig, err = writeKubeconfig(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		origPeerAuth, origPolicy = readMesh(peerAuthRef), readMesh(policyRef)
		return m.Run()
	}()
	if err := sb.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the sandbox:", err)
	}
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// writeKubeconfig writes the sandbox administrator's credentials as a kubeconfig file, with no default
// namespace: the tests pass -n as a user would.
func writeKubeconfig(dir string) (string, error) {
	c := sb.Env.Config
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"sandbox": {Server: c.Host, CertificateAuthorityData: c.CAData}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{"admin": {ClientCertificateData: c.CertData, ClientKeyData: c.KeyData,
			Token: c.BearerToken}},
		Contexts:       map[string]*clientcmdapi.Context{"sandbox": {Cluster: "sandbox", AuthInfo: "admin"}},
		CurrentContext: "sandbox",
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, clientcmd.WriteToFile(cfg, path)
}

// result is what a user sees of one plugin invocation.
type result struct {
	code        int
	out, errOut string
}

// kubectlLabrun runs the plugin's root command in-process with args, as `kubectl labrun --kubeconfig ... args`.
func kubectlLabrun(t testing.TB, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut}
	code := plugin.Execute(context.Background(), append([]string{"--kubeconfig", kubeconfig}, args...), streams)
	t.Logf("kubectl labrun %v → exit %d\n%s%s", args, code, out.String(), errOut.String())
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

var peerAuthRef, policyRef = sandboxtest.PeerAuthRef, sandboxtest.PolicyRef

func readMesh(ref mesh.Ref) *unstructured.Unstructured {
	u, err := sandboxtest.ReadMesh(k8s, ref)
	if err != nil {
		panic(err)
	}
	return u
}

// managerOptions run the operator's manager as main.go builds it, in the sandbox's operator namespace.
func managerOptions() operator.Options { return operatortest.ManagerOptions(testProbeImage) }

// startManager runs the manager under its ServiceAccount's identity until stop is called or the test ends.
func startManager(t testing.TB, o operator.Options) (stop func()) {
	t.Helper()
	return operatortest.StartManager(t, sb, o)
}

// deleteRun deletes a LabRun and waits until it is gone (a manager must run: the run has a finalizer).
func deleteRun(t testing.TB, key client.ObjectKey) {
	t.Helper()
	ctx := context.Background()
	run := &labsv1.LabRun{}
	run.Namespace, run.Name = key.Namespace, key.Name
	if err := k8s.Delete(ctx, run); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting LabRun %s: %v", key, err)
	}
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, key, &labsv1.LabRun{}))
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
}

func getRun(t testing.TB, key client.ObjectKey) *labsv1.LabRun {
	t.Helper()
	run := &labsv1.LabRun{}
	NewWithT(t).Expect(k8s.Get(context.Background(), key, run)).To(Succeed())
	return run
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
