package sandbox_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// TestLogReadAfterTheFirstReturnsOnlyNewLines reads a pod's log twice through the API server's pods/log and the
// simulated kubelet (sinceTime, timestamps and limitBytes, as a kubelet serves them): the second request carries
// nothing from before the second the first read stopped in, and the reader hands each line out once, lines
// stamped alike included.
func TestLogReadAfterTheFirstReturnsOnlyNewLines(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	pods := &corev1.PodList{}
	g.Expect(sb.Client.List(ctx, pods, client.InNamespace(sandbox.DemoNamespace), client.MatchingLabels{"app": "frontend"})).To(Succeed())
	g.Expect(pods.Items).NotTo(BeEmpty())
	pod := &pods.Items[0]
	g.Expect(pod.Spec.Containers).To(HaveLen(1))
	container := pod.Spec.Containers[0].Name

	rec, cs := recordedClientset(t)
	reader := &ztunnel.LogReader{Client: cs, LimitBytes: 4096}

	mark := fmt.Sprintf("incremental-%d-", time.Now().UnixNano())
	now := time.Now().UTC().Truncate(time.Second)
	sb.Logs.AppendAt(pod.Namespace, pod.Name, container, now.Add(-3*time.Second), mark+"old-1")
	sb.Logs.AppendAt(pod.Namespace, pod.Name, container, now.Add(-2*time.Second), mark+"old-2")
	since := now.Add(-3 * time.Second)
	first, err := reader.PodLogOf(ctx, pod, since)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(marked(first, mark)).To(Equal([]string{"old-1", "old-2"}))

	// A line stamped like the last one read, then two written at once.
	sb.Logs.AppendAt(pod.Namespace, pod.Name, container, now.Add(-2*time.Second), mark+"late")
	sb.Logs.AppendAt(pod.Namespace, pod.Name, container, now, mark+"new-1\n"+mark+"new-2")
	rec.reset()
	second, err := reader.PodLogOf(ctx, pod, since)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(marked(second, mark)).To(Equal([]string{"old-1", "old-2", "late", "new-1", "new-2"}), "each line once, in order")

	fetched := rec.bodies()
	g.Expect(fetched).To(HaveLen(1), "one page")
	g.Expect(fetched[0]).NotTo(ContainSubstring(mark+"old-1"), "read again from before the second the first read ended in")
	g.Expect(fetched[0]).To(ContainSubstring(mark + "new-2"))
	g.Expect(fetched[0]).To(ContainSubstring(now.Add(-2*time.Second).Format(time.RFC3339Nano)+" "+mark+"old-2\n"),
		"from the second the first read ended in, with the runtime's timestamps")
}

// marked are the lines of log that begin with mark, without it.
func marked(log []byte, mark string) []string {
	var out []string
	for _, l := range strings.Split(string(log), "\n") {
		if s, ok := strings.CutPrefix(l, mark); ok {
			out = append(out, s)
		}
	}
	return out
}

// recordedClientset is a clientset on the sandbox whose pods/log responses rec keeps.
func recordedClientset(t *testing.T) (rec *logResponses, cs kubernetes.Interface) {
	t.Helper()
	rec = &logResponses{}
	cfg := rest.CopyConfig(sb.Env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rec, cs
}

// logResponses keeps the bodies of the pods/log responses that pass through it.
type logResponses struct {
	next  http.RoundTripper
	mu    sync.Mutex
	got   []string
	paths []string // the pods/log requests' paths
}

func (r *logResponses) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/log") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(body))
	r.paths = append(r.paths, req.URL.Path)
	return resp, nil
}

func (r *logResponses) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got, r.paths = nil, nil
}

// pods are the pods whose logs were asked for, in order.
func (r *logResponses) pods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.paths {
		// /api/v1/namespaces/<ns>/pods/<name>/log
		parts := strings.Split(p, "/")
		if len(parts) >= 2 {
			out = append(out, parts[len(parts)-2])
		}
	}
	return out
}

func (r *logResponses) bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}
