package ztunnel

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// fakeAPI serves pods/log as the API server does in front of a kubelet: pages (sinceTime to the second,
// timestamps, limitBytes) and follow streams, from logs held in memory; it counts the requests of each kind and
// can break the streams open.
type fakeAPI struct {
	mu      sync.Mutex
	logs    map[string][]LogLine // by "namespace/pod/container"
	changed chan struct{}        // closed and replaced at every append
	broken  chan struct{}        // closed by breakStreams: every stream open ends
	stalled bool                 // the streams open deliver nothing more, and do not end
	pages   int
	follows []time.Time // the sinceTime of every stream asked for
	open    int         // streams being served
}

func newFakeAPI(t *testing.T) (*fakeAPI, kubernetes.Interface) {
	f := &fakeAPI{logs: map[string][]LogLine{}, changed: make(chan struct{}), broken: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return f, cs
}

func (f *fakeAPI) add(pod string, texts ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	for _, s := range texts {
		f.logs["ns/"+pod+"/c"] = append(f.logs["ns/"+pod+"/c"], LogLine{Time: now, Text: s})
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAPI) breakStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.broken)
	f.broken = make(chan struct{})
}

func (f *fakeAPI) counts() (pages, follows, open int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pages, len(f.follows), f.open
}

// ServeHTTP answers GET /api/v1/namespaces/{ns}/pods/{pod}/log.
func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"), "/")
	if len(parts) != 4 || parts[1] != "pods" || parts[3] != "log" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	key := parts[0] + "/" + parts[2] + "/" + q.Get("container")
	var since time.Time
	if s := q.Get("sinceTime"); s != "" {
		since, _ = time.Parse(time.RFC3339, s)
	}
	limit, _ := strconv.Atoi(q.Get("limitBytes"))
	follow := q.Get("follow") == "true"
	f.mu.Lock()
	lines, changed, broken := f.logs[key], f.changed, f.broken
	if follow {
		f.follows = append(f.follows, since)
		f.open++
		defer func() { f.mu.Lock(); f.open--; f.mu.Unlock() }()
	} else {
		f.pages++
	}
	f.mu.Unlock()
	var b strings.Builder
	for _, l := range lines {
		if !l.Time.Before(since) {
			b.WriteString(l.Time.Format(time.RFC3339Nano) + " " + l.Text + "\n")
		}
	}
	out := b.String()
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(out))
	if !follow {
		return
	}
	w.(http.Flusher).Flush()
	for next := len(lines); ; {
		select {
		case <-r.Context().Done():
			return
		case <-broken:
			return
		case <-changed:
		}
		f.mu.Lock()
		lines, changed = f.logs[key][next:], f.changed
		if f.stalled {
			lines = nil
		}
		f.mu.Unlock()
		next += len(lines)
		for _, l := range lines {
			_, _ = fmt.Fprintf(w, "%s %s\n", l.Time.Format(time.RFC3339Nano), l.Text)
		}
		w.(http.Flusher).Flush()
	}
}

func fakePod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid")},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
}

func podLines(g Gomega, r *LogReader, pod *corev1.Pod, since time.Time) []string {
	raw, err := r.PodLogOf(context.Background(), pod, since)
	g.Expect(err).NotTo(HaveOccurred())
	return strings.Fields(string(raw))
}

// streamGoroutines counts the goroutines that run streams (tail.run).
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

// A line logged after the stream opened is read from it: no page is asked for while the stream delivers.
func TestStreamServesReadsWithoutPages(t *testing.T) {
	g := NewWithT(t)
	api, cs := newFakeAPI(t)
	r := &LogReader{Client: cs, Stream: true}
	defer r.Close()
	pod, since := fakePod("obs"), time.Now().Add(-time.Second)
	api.add("obs", "a")
	g.Expect(podLines(g, r, pod, since)).To(Equal([]string{"a"}))
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(1))
	pages, _, _ := api.counts()

	// A log that keeps logging, as an armed observer does: every read is served from the stream.
	for i := range 20 {
		api.add("obs", fmt.Sprintf("line-%02d", i))
		g.Eventually(func(g Gomega) []string { return podLines(g, r, pod, since) }).Should(ContainElement(fmt.Sprintf("line-%02d", i)))
	}
	got := podLines(g, r, pod, since)
	g.Expect(got).To(HaveLen(21), "each line once")
	g.Expect(got[0]).To(Equal("a"))
	after, follows, _ := api.counts()
	g.Expect(after).To(Equal(pages), "pods/log pages asked for while the stream delivered")
	g.Expect(follows).To(Equal(1), "one stream")
}

// Without a new line for streamFresh, a read asks for a page: a stream that went quiet may have stalled.
func TestStreamOfAQuietLogIsCheckedByPages(t *testing.T) {
	g := NewWithT(t)
	api, cs := newFakeAPI(t)
	r := &LogReader{Client: cs, Stream: true}
	defer r.Close()
	pod, since := fakePod("quiet"), time.Now().Add(-time.Minute)
	api.add("quiet", "a")
	podLines(g, r, pod, since)
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(1))
	pages, _, _ := api.counts()
	g.Eventually(func(g Gomega) int {
		podLines(g, r, pod, since)
		p, _, _ := api.counts()
		return p
	}).WithTimeout(5 * streamFresh).Should(BeNumerically(">", pages))
}

// A stream that breaks: the reads page from the cursor, losing and repeating no line, and another stream opens
// from the cursor's second.
func TestStreamThatBreaksFallsBackToPages(t *testing.T) {
	g := NewWithT(t)
	api, cs := newFakeAPI(t)
	r := &LogReader{Client: cs, Stream: true}
	defer r.Close()
	pod, since := fakePod("obs"), time.Now().Add(-time.Second)
	var want []string
	add := func(s ...string) { api.add("obs", s...); want = append(want, s...) }
	add("a", "b")
	podLines(g, r, pod, since)
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(1))
	add("c")
	g.Eventually(func(g Gomega) []string { return podLines(g, r, pod, since) }).Should(Equal(want))

	api.breakStreams()
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(BeZero())
	add("d", "e") // logged while no stream is open: only a page can read them
	pages, _, _ := api.counts()
	g.Eventually(func(g Gomega) []string { return podLines(g, r, pod, since) }).Should(Equal(want))
	p, _, _ := api.counts()
	g.Expect(p).To(BeNumerically(">", pages), "read by a page")

	// Within streamRetry another stream opens, from the cursor's second, and serves what follows.
	g.Eventually(func(g Gomega) int {
		podLines(g, r, pod, since)
		_, follows, open := api.counts()
		g.Expect(open).To(Equal(1))
		return follows
	}).WithTimeout(5 * streamRetry).Should(Equal(2))
	api.mu.Lock()
	reopened := api.follows[1]
	api.mu.Unlock()
	g.Expect(reopened).To(BeTemporally(">", since.Truncate(time.Second)), "from the cursor, not the window's start")
	add("f")
	g.Eventually(func(g Gomega) []string { return podLines(g, r, pod, since) }).Should(Equal(want))
}

// A stream that stalls (open, but delivering nothing) while the log grows: the reads page, and once a page finds
// a line the stream should have delivered long before, another stream replaces it.
func TestStalledStreamIsReplaced(t *testing.T) {
	g := NewWithT(t)
	api, cs := newFakeAPI(t)
	r := &LogReader{Client: cs, Stream: true}
	defer r.Close()
	pod, since := fakePod("obs"), time.Now().Add(-time.Second)
	api.add("obs", "a")
	podLines(g, r, pod, since)
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(1))
	api.mu.Lock()
	api.stalled = true
	api.mu.Unlock()
	var want = []string{"a"}
	for i := range 10 {
		line := fmt.Sprintf("line-%02d", i)
		api.add("obs", line)
		want = append(want, line)
		// Read by pages: the stream's newest line is older than streamFresh, or the page read that recent.
		g.Eventually(func(g Gomega) []string { return podLines(g, r, pod, since) }).WithTimeout(2 * streamFresh).Should(Equal(want))
	}
	g.Eventually(func(g Gomega) int {
		api.add("obs", "more")
		want = append(want, "more")
		g.Expect(podLines(g, r, pod, since)).To(Equal(want))
		_, follows, _ := api.counts()
		return follows
	}).WithTimeout(5 * streamRetry).WithPolling(100 * time.Millisecond).Should(Equal(2))
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(1), "the stalled stream is closed")
}

// A container no one reads any more: its stream closes, its goroutine ends, and its tail is forgotten.
func TestIdleTailClosesItsStream(t *testing.T) {
	g := NewWithT(t)
	api, cs := newFakeAPI(t)
	r := &LogReader{Client: cs, Stream: true, idleAfter: 300 * time.Millisecond}
	defer r.Close()
	before := streamGoroutines()
	api.add("obs", "a")
	podLines(g, r, fakePod("obs"), time.Now().Add(-time.Second))
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(1))
	g.Expect(streamGoroutines()).To(Equal(before + 1))
	// No read and no other lookup: the stream closes by itself.
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(BeZero())
	g.Eventually(streamGoroutines).Should(Equal(before))
	r.mu.Lock()
	defer r.mu.Unlock()
	g.Expect(r.pods).To(BeEmpty(), "the idle tail is forgotten")
}

// Close ends every stream and waits for their goroutines; reads go on by pages.
func TestCloseEndsEveryStream(t *testing.T) {
	g := NewWithT(t)
	api, cs := newFakeAPI(t)
	r := &LogReader{Client: cs, Stream: true}
	before := streamGoroutines()
	for i := range 5 {
		name := fmt.Sprintf("obs-%d", i)
		api.add(name, "a")
		podLines(g, r, fakePod(name), time.Now().Add(-time.Second))
	}
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(5))
	g.Expect(streamGoroutines()).To(Equal(before + 5))
	r.Close()
	g.Expect(streamGoroutines()).To(Equal(before), "Close waits for the streams' goroutines")
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(BeZero())
	api.add("obs-0", "b")
	g.Expect(podLines(g, r, fakePod("obs-0"), time.Now().Add(-time.Minute))).To(Equal([]string{"a", "b"}))
	_, follows, _ := api.counts()
	g.Expect(follows).To(Equal(5), "no stream opens after Close")
}

// A pod created again under its name is another pod: its stream is its own.
func TestStreamIsKeyedByPodUID(t *testing.T) {
	g := NewWithT(t)
	api, cs := newFakeAPI(t)
	r := &LogReader{Client: cs, Stream: true}
	defer r.Close()
	since := time.Now().Add(-time.Second)
	api.add("obs", "old")
	g.Expect(podLines(g, r, fakePod("obs"), since)).To(Equal([]string{"old"}))
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(1))
	again := fakePod("obs")
	again.UID = "obs-uid-2"
	api.mu.Lock()
	api.logs["ns/obs/c"] = nil // the new pod's log
	api.mu.Unlock()
	api.add("obs", "new")
	g.Expect(podLines(g, r, again, since)).To(Equal([]string{"new"}))
	g.Eventually(func() int { _, _, open := api.counts(); return open }).Should(Equal(2))
}

// The tail's cursor and a stream's position: lines stamped alike, delivered in several batches, interleaved with
// page reads, are each kept once and in order.
func TestStreamAndPagesKeepEachLineOnce(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	tl, _ := newTail()
	f := &follower{open: true}
	tl.stream = f
	same := func(texts ...string) []streamed[string] {
		var out []streamed[string]
		for _, s := range texts {
			out = append(out, streamed[string]{at: t0, v: s, ok: true})
		}
		return out
	}
	tl.deliver(f, same("a", "b"), t0)
	tl.deliver(f, same("c"), t0) // stamped like the lines before it, in a later batch
	// A page read that found two more lines of that second before the stream did.
	page := &fakeLog{}
	page.lines = []LogLine{{t0, "a"}, {t0, "b"}, {t0, "c"}, {t0, "d"}, {t0, "e"}}
	if _, err := tl.catchUp(context.Background(), page.page); err != nil {
		t.Fatal(err)
	}
	tl.deliver(f, same("d"), t0) // behind the cursor: the page added it
	tl.deliver(f, same("e", "f"), t0)
	var got []string
	for _, l := range tl.lines {
		got = append(got, l.v)
	}
	if want := []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if want := (cursor{at: t0, n: 6}); tl.cur != want {
		t.Errorf("cursor %+v, want %+v", tl.cur, want)
	}
}
