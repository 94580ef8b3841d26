package kubelet_test

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox/kubelet"
)

const (
	ns        = "istio-system"
	podName   = "ztunnel-abcde"
	container = "istio-proxy"
	nodeName  = "node-1"
)

// TestAPIServerProxiesPodLogs answers whether the real kube-apiserver proxies pods/log to a kubelet on
// 127.0.0.1 with a self-signed certificate, with the control plane exactly as controlplane.Start runs it.
func TestAPIServerProxiesPodLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	env, err := controlplane.Start(controlplane.Options{Progress: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	store := kubelet.NewLogStore()
	srv := kubelet.NewServer(store)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createNamespace(ctx, t, cs)
	createNode(ctx, t, cs, nodeName, srv.Port())
	createPod(ctx, t, cs, podName, nodeName)

	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	for i, text := range []string{"one", "two", "three", "four"} {
		// Whole seconds apart: the API server forwards sinceTime at second precision (RFC3339).
		store.AppendAt(ns, podName, container, base.Add(time.Duration(i)*time.Second), text)
	}
	t.Run("tailLines", func(t *testing.T) {
		expectLogs(ctx, t, cs, &corev1.PodLogOptions{Container: container, TailLines: ptr.To[int64](2)}, "three\nfour\n")
	})
	t.Run("sinceTime", func(t *testing.T) {
		since := metav1.NewTime(base.Add(2 * time.Second))
		expectLogs(ctx, t, cs, &corev1.PodLogOptions{Container: container, SinceTime: &since}, "three\nfour\n")
	})
	t.Run("timestamps", func(t *testing.T) {
		want := base.Add(3*time.Second).Format(time.RFC3339Nano) + " four\n"
		expectLogs(ctx, t, cs, &corev1.PodLogOptions{Container: container, TailLines: ptr.To[int64](1), Timestamps: true}, want)
	})
	t.Run("limitBytes", func(t *testing.T) {
		expectLogs(ctx, t, cs, &corev1.PodLogOptions{Container: container, LimitBytes: ptr.To[int64](6)}, "one\ntw")
	})
	t.Run("previous", func(t *testing.T) {
		// Stream is what kubectl logs uses; it surfaces the message the kubelet wrote with its 400.
		opts := &corev1.PodLogOptions{Container: container, Previous: true}
		rc, err := cs.CoreV1().Pods(ns).GetLogs(podName, opts).Stream(ctx)
		if err == nil {
			rc.Close()
		}
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "previous terminated container") {
			t.Errorf("previous: got %v, want the kubelet's 400", err)
		}
	})
	t.Run("follow", func(t *testing.T) { testFollow(ctx, t, cs, store) })
}

// createNode registers a node whose kubelet is at 127.0.0.1:port, as the simulated node agent would.
func createNode(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string, port int) {
	t.Helper()
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createNamespace(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPod creates a ztunnel-like pod bound to the node, as the scheduler would.
func createPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, node string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "ztunnel"}},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: container, Image: "istio/ztunnel"}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func expectLogs(ctx context.Context, t *testing.T, cs kubernetes.Interface, opts *corev1.PodLogOptions, want string) {
	t.Helper()
	expectPodLogs(ctx, t, cs, podName, opts, want)
}

func expectPodLogs(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod string, opts *corev1.PodLogOptions, want string) {
	t.Helper()
	b, err := cs.CoreV1().Pods(ns).GetLogs(pod, opts).DoRaw(ctx)
	if err != nil {
		t.Fatalf("pods/log through the API server: %v", err)
	}
	if string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}

// testFollow opens a follow stream through the API server, reads the tail, then appends a line and expects
// it on the open stream; cancelling the context ends the stream.
func testFollow(ctx context.Context, t *testing.T, cs kubernetes.Interface, store *kubelet.LogStore) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := &corev1.PodLogOptions{Container: container, Follow: true, TailLines: ptr.To[int64](1)}
	rc, err := cs.CoreV1().Pods(ns).GetLogs(podName, opts).Stream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expectLine(ctx, t, lines, "four")
	store.Append(ns, podName, container, "five, appended while following")
	expectLine(ctx, t, lines, "five, appended while following")
	cancel()
	for range lines { // the reader ends once the cancelled stream closes
	}
}

func expectLine(ctx context.Context, t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case got, ok := <-lines:
		if !ok || got != want {
			t.Fatalf("followed line %q (open %v), want %q", got, ok, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no line %q within 30s", want)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}
