package sandbox_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// sb is the one sandbox the package's tests share.
var sb *sandbox.Sandbox

// testDelay is the sandbox's policy propagation delay: short, but not zero, so a policy change is not in force
// the instant it is written.
const testDelay = 300 * time.Millisecond

// TestMain starts one sandbox for the package, runs the tests, then stops it and checks that Stop left no
// control-plane process and no etcd data behind.
func TestMain(m *testing.M) {
	if os.Getenv("LABRUN_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	sb, err = sandbox.Start(ctx, sandbox.Options{PropagationDelay: testDelay, Progress: os.Stderr})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the sandbox:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := stopAndCheck(sb); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: Stop:", err)
		code = 1
	}
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// stopAndCheck stops s and reports what a user would find left over: a kube-apiserver or etcd still running
// under this process, the etcd data directory, or an API server that still answers. The checks first make
// sure the things they look for exist while the sandbox runs, so they cannot pass vacuously.
func stopAndCheck(s *sandbox.Sandbox) error {
	dataDir := s.Env.ControlPlane.Etcd.DataDir
	if dataDir == "" {
		return fmt.Errorf("the sandbox reports no etcd data directory")
	}
	if _, err := os.Stat(dataDir); err != nil {
		return fmt.Errorf("etcd data directory while running: %w", err)
	}
	if !answers(s.Env.Config) {
		return fmt.Errorf("the API server at %s does not answer while running", s.Env.Config.Host)
	}
	before, procOK := controlPlaneChildren()
	if procOK && len(before) < 2 {
		return fmt.Errorf("expected kube-apiserver and etcd among this process's children while running, found %v", before)
	}
	if err := s.Stop(); err != nil {
		return err
	}
	var problems []string
	if left, _ := controlPlaneChildren(); len(left) > 0 {
		problems = append(problems, fmt.Sprintf("processes still running after Stop: %v", left))
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		problems = append(problems, fmt.Sprintf("etcd data directory %s still exists after Stop (stat: %v)", dataDir, err))
	}
	if answers(s.Env.Config) {
		problems = append(problems, "the API server at "+s.Env.Config.Host+" still answers after Stop")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// controlPlaneChildren lists this process's child processes named kube-apiserver or etcd, from /proc. ok is
// false where /proc is not available.
func controlPlaneChildren() (found []string, ok bool) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return nil, false
	}
	self := os.Getpid()
	for _, path := range stats {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended meanwhile
		}
		// pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
		s := string(raw)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, rest := s[open+1:end], strings.Fields(s[end+1:])
		if len(rest) < 2 || (comm != "kube-apiserver" && comm != "etcd") {
			continue
		}
		if ppid, err := strconv.Atoi(rest[1]); err == nil && ppid == self && rest[0] != "Z" {
			found = append(found, fmt.Sprintf("%s (%s)", comm, filepath.Base(filepath.Dir(path))))
		}
	}
	return found, true
}

// answers tells whether anything still serves /readyz at the API server's address.
func answers(cfg *rest.Config) bool {
	c := rest.CopyConfig(cfg)
	c.Timeout = 2 * time.Second
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return false
	}
	resp, err := hc.Get(strings.TrimSuffix(c.Host, "/") + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode != 0 && resp.StatusCode < http.StatusInternalServerError
}

// Eventually bounds: the sandbox reacts in milliseconds; these only stop a broken one from hanging the suite.
const (
	waitFor = 20 * time.Second
	pollFor = 50 * time.Millisecond
)

var probeCounter atomic.Int32

// newProbePod builds a probe pod as the operator does, labelled as a probe so the node agent runs it. Only the
// manager may create pods with the operator's marks (config/admission): create it with asManager.
func newProbePod(ns, serviceAccount string, o probe.Options) *corev1.Pod {
	return probe.Pod(probe.PodRequest{
		Name:           fmt.Sprintf("probe-%d", probeCounter.Add(1)),
		Namespace:      ns,
		ServiceAccount: serviceAccount,
		Image:          sandbox.SandboxProbeImage,
		Labels:         map[string]string{labsv1.LabelProbe: "true", labsv1.LabelLabRun: "sandbox-test"},
		Options:        o,
	})
}

// asManager is a client acting as the manager's ServiceAccount, the only identity admission lets create probe
// pods.
func asManager(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(sb.ManagerConfig(), client.Options{Scheme: sb.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runProbe creates the pod, waits until its container terminated and returns the result it reported.
func runProbe(t *testing.T, pod *corev1.Pod) probe.Result {
	t.Helper()
	g := NewWithT(t)
	ctx := t.Context()
	g.Expect(asManager(t).Create(ctx, pod)).To(Succeed())
	t.Cleanup(func() {
		err := sb.Client.Delete(context.Background(), pod)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting probe pod %s: %v", pod.Name, err)
		}
	})
	var res probe.Result
	g.Eventually(func(g Gomega) {
		cur := &corev1.Pod{}
		g.Expect(sb.Client.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		r, finished, err := probe.Finished(cur)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(finished).To(BeTrue(), "probe pod %s: phase %s", pod.Name, cur.Status.Phase)
		res = r
	}, waitFor, pollFor).Should(Succeed())
	return res
}

// waitForMesh waits until the world's pods run and the simulated ztunnel enforces the world's policies:
// PeerAuthentication istio-system/default STRICT and the backend's ALLOW policy selecting app=backend.
func waitForMesh(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		pods := &corev1.PodList{}
		g.Expect(sb.Client.List(t.Context(), pods, client.InNamespace(sandbox.DemoNamespace))).To(Succeed())
		running := 0
		for _, p := range pods.Items {
			if p.Labels["app"] == "backend" || p.Labels["app"] == "frontend" {
				g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s", p.Name)
				running++
			}
		}
		g.Expect(running).To(Equal(2))
		g.Expect(strictInForce()).To(BeTrue(), "PeerAuthentication STRICT in force")
		g.Expect(backendPolicyInForce()).To(BeTrue(), "AuthorizationPolicy in force")
	}, waitFor, pollFor).Should(Succeed())
}

// backendWorkload is the backend pod as the simulated ztunnel sees it.
func backendWorkload() policy.Workload {
	pods := &corev1.PodList{}
	if err := sb.Client.List(context.Background(), pods, client.InNamespace(sandbox.DemoNamespace),
		client.MatchingLabels{"app": "backend"}); err != nil || len(pods.Items) == 0 {
		return policy.Workload{}
	}
	p := pods.Items[0]
	return policy.Workload{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IP: p.Status.PodIP, Port: 80}
}

// strictInForce: the simulated ztunnel, with what istiod computed, refuses plaintext to backend by STRICT.
func strictInForce() bool {
	d := sb.Dataplane.Effective().Evaluate(policy.Peer{IP: "10.244.9.9"}, backendWorkload())
	return !d.Allowed && d.Policy == sandbox.RootNamespace+"/"+policy.StaticStrictPolicyName
}

// backendPolicyInForce: the simulated ztunnel allows frontend and refuses another identity to backend.
func backendPolicyInForce() bool {
	peer := func(sa string) policy.Peer {
		return policy.Peer{Mesh: true, Namespace: sandbox.DemoNamespace, ServiceAccount: sa, IP: "10.244.9.8"}
	}
	dst := backendWorkload()
	return sb.Dataplane.Effective().Evaluate(peer("frontend"), dst).Allowed &&
		!sb.Dataplane.Effective().Evaluate(peer("attacker"), dst).Allowed
}

// peerAuthentication reads istio-system/default.
func peerAuthentication(g Gomega, ctx context.Context) *securityv1.PeerAuthentication {
	pa := &securityv1.PeerAuthentication{}
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.RootNamespace, Name: "default"}, pa)).To(Succeed())
	return pa
}

// backendPolicy reads demo/backend-allow-frontend-only.
func backendPolicy(g Gomega, ctx context.Context) *securityv1.AuthorizationPolicy {
	ap := &securityv1.AuthorizationPolicy{}
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.DemoNamespace, Name: sandbox.PolicyName}, ap)).To(Succeed())
	return ap
}
