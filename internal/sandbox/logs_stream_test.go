package sandbox_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
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

// TestStreamedLogReadsNeedNoRequest reads a pod's log through the API server and the simulated kubelet with a
// streaming reader: after the first read, lines the pod logs arrive on the one follow stream, and reads return
// them, each once and in order, with no further pods/log request.
func TestStreamedLogReadsNeedNoRequest(t *testing.T) {
	g := NewWithT(t)
	pod, container := frontendPod(g, t)
	rec, cs := logRequests(g)
	reader := &ztunnel.LogReader{Client: cs, Stream: true}
	defer reader.Close()

	mark := fmt.Sprintf("stream-%d-", time.Now().UnixNano())
	since := time.Now().Add(-time.Second)
	sb.Logs.Append(pod.Namespace, pod.Name, container, mark+"first")
	want := []string{"first"}
	g.Expect(marked(podLog(g, t, reader, pod, since), mark)).To(Equal(want))
	g.Eventually(rec.streamsOpen).Should(Equal(1), "one follow stream")
	pages := rec.pageCount()

	// The pod keeps logging, as an armed observer does; each line is read as soon as the stream delivers it.
	for i := range 20 {
		line := fmt.Sprintf("line-%02d", i)
		sb.Logs.Append(pod.Namespace, pod.Name, container, mark+line)
		want = append(want, line)
		g.Eventually(func() []string { return marked(podLog(g, t, reader, pod, since), mark) }).Should(Equal(want))
	}
	g.Expect(rec.pageCount()).To(Equal(pages), "pods/log pages asked for while the stream delivered")
	g.Expect(rec.streamCount()).To(Equal(1))
}

// TestBrokenLogStreamFallsBackToPages cuts a reader's follow stream: the lines logged meanwhile are read by pages,
// none lost or repeated, and the reader opens another stream from where its reads stopped.
func TestBrokenLogStreamFallsBackToPages(t *testing.T) {
	g := NewWithT(t)
	pod, container := frontendPod(g, t)
	rec, cs := logRequests(g)
	reader := &ztunnel.LogReader{Client: cs, Stream: true}
	defer reader.Close()

	mark := fmt.Sprintf("broken-%d-", time.Now().UnixNano())
	since := time.Now().Add(-time.Second)
	var want []string
	add := func(lines ...string) {
		for _, l := range lines {
			sb.Logs.Append(pod.Namespace, pod.Name, container, mark+l)
		}
		want = append(want, lines...)
	}
	add("a", "b")
	podLog(g, t, reader, pod, since)
	g.Eventually(rec.streamsOpen).Should(Equal(1))
	add("c")
	g.Eventually(func() []string { return marked(podLog(g, t, reader, pod, since), mark) }).Should(Equal(want))

	rec.cutStreams()
	g.Eventually(rec.streamsOpen).Should(BeZero())
	add("d", "e")
	pages := rec.pageCount()
	g.Eventually(func() []string { return marked(podLog(g, t, reader, pod, since), mark) }).Should(Equal(want))
	g.Expect(rec.pageCount()).To(BeNumerically(">", pages), "the lines logged while no stream was open are read by a page")

	// Another stream opens, from the second the reads stopped in, not the window's start.
	g.Eventually(func() int {
		podLog(g, t, reader, pod, since)
		return rec.streamCount()
	}).WithTimeout(10 * time.Second).Should(Equal(2))
	g.Eventually(rec.streamsOpen).Should(Equal(1))
	g.Expect(rec.streamSince(1)).To(BeTemporally(">", since.Truncate(time.Second)))
	add("f", "g")
	g.Eventually(func() []string { return marked(podLog(g, t, reader, pod, since), mark) }).Should(Equal(want))
}

// TestLogReaderCloseEndsItsStreams: Close ends every stream and its goroutine.
func TestLogReaderCloseEndsItsStreams(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	pods := &corev1.PodList{}
	g.Expect(sb.Client.List(ctx, pods, client.InNamespace(sandbox.DemoNamespace))).To(Succeed())
	rec, cs := logRequests(g)
	reader := &ztunnel.LogReader{Client: cs, Stream: true}
	before := streamGoroutines()
	n := 0
	for i := range pods.Items {
		if p := &pods.Items[i]; len(p.Spec.Containers) == 1 && p.Status.Phase == corev1.PodRunning {
			podLog(g, t, reader, p, time.Now())
			n++
		}
	}
	g.Expect(n).To(BeNumerically(">", 1))
	g.Eventually(rec.streamsOpen).Should(Equal(n))
	g.Expect(streamGoroutines()).To(Equal(before + n))
	reader.Close()
	g.Expect(streamGoroutines()).To(Equal(before), "Close returns once the streams' goroutines ended")
	g.Eventually(rec.streamsOpen).Should(BeZero())
}

func frontendPod(g Gomega, t *testing.T) (*corev1.Pod, string) {
	pods := &corev1.PodList{}
	g.Expect(sb.Client.List(t.Context(), pods, client.InNamespace(sandbox.DemoNamespace), client.MatchingLabels{"app": "frontend"})).To(Succeed())
	g.Expect(pods.Items).NotTo(BeEmpty())
	pod := &pods.Items[0]
	g.Expect(pod.Spec.Containers).To(HaveLen(1))
	return pod, pod.Spec.Containers[0].Name
}

func podLog(g Gomega, t *testing.T, r *ztunnel.LogReader, pod *corev1.Pod, since time.Time) []byte {
	raw, err := r.PodLogOf(t.Context(), pod, since)
	g.Expect(err).NotTo(HaveOccurred())
	return raw
}

// streamGoroutines counts the goroutines that run log streams.
func streamGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "ztunnel.(*tail[...]).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// logRequests is a clientset for the sandbox whose pods/log requests are counted: pages, and follow streams,
// which it can cut as a dropped connection would.
func logRequests(g Gomega) (*logRecorder, kubernetes.Interface) {
	rec := &logRecorder{}
	cfg := rest.CopyConfig(sb.Env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec })
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	return rec, cs
}

type logRecorder struct {
	next    http.RoundTripper
	mu      sync.Mutex
	pages   int
	streams []*recordedStream
}

type recordedStream struct {
	since time.Time
	body  io.ReadCloser
	rec   *logRecorder
	ended bool
}

func (r *logRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/log") {
		return resp, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.URL.Query().Get("follow") != "true" {
		r.pages++
		return resp, nil
	}
	s := &recordedStream{body: resp.Body, rec: r}
	s.since, _ = time.Parse(time.RFC3339, req.URL.Query().Get("sinceTime"))
	r.streams = append(r.streams, s)
	resp.Body = s
	return resp, nil
}

func (s *recordedStream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil {
		s.end()
	}
	return n, err
}

func (s *recordedStream) Close() error {
	s.end()
	return s.body.Close()
}

func (s *recordedStream) end() {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	s.ended = true
}

func (r *logRecorder) pageCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pages
}

func (r *logRecorder) streamCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.streams)
}

func (r *logRecorder) streamSince(i int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams[i].since
}

func (r *logRecorder) streamsOpen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.streams {
		if !s.ended {
			n++
		}
	}
	return n
}

// cutStreams closes every open stream's connection under its reader, as a dropped connection would.
func (r *logRecorder) cutStreams() {
	r.mu.Lock()
	open := []io.ReadCloser{}
	for _, s := range r.streams {
		if !s.ended {
			open = append(open, s.body)
		}
	}
	r.mu.Unlock()
	for _, b := range open {
		_ = b.Close()
	}
}
