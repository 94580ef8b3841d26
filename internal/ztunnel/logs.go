package ztunnel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"golang.org/x/sync/errgroup"
)

// LogReader reads ztunnel access logs and probe pods' logs through the API server (pods/log), as `kubectl logs`
// does, incrementally: each container's log is fetched from where the last read of it stopped, in pages of at
// most LimitBytes, and kept for a while (tail.go). One LogReader serves the manager's life; a new one (a restarted
// manager) reads each window from its start again. Safe for concurrent use.
type LogReader struct {
	Client kubernetes.Interface
	// LimitBytes bounds every pods/log response (zero: DefaultLimitBytes).
	LimitBytes int64
	// Keep, when set, says which ztunnel lines Read keeps and returns; a node's ztunnel logs every connection
	// on it, and a reader that looks only for its own probes' lines need not hold the others.
	Keep func(Entry) bool
	// AtOnce is how many ztunnel pods' logs one read fetches side by side (zero: DefaultAtOnce).
	AtOnce int

	mu      sync.Mutex
	ztunnel map[tailKey]*tail[Entry]
	pods    map[tailKey]*tail[string]
}

// tailKey names one container of one pod: a pod deleted and created again under its name is another pod.
type tailKey struct {
	uid       types.UID
	container string
}

// Source is a ztunnel pod whose log was read: reports name where their evidence came from.
type Source struct {
	Namespace, Pod, Node string
}

// Read returns the parsed log entries of every ztunnel pod matching selector in namespace, written since the
// given time (to the second, as pods/log's sinceTime), and the pods it read. It fails when no ztunnel pod is found
// or a pod's logs cannot be read: no logs is not evidence. When it holds only the newer part of a pod's window, it
// returns what it holds and an *Incomplete error.
func (r *LogReader) Read(ctx context.Context, namespace string, selector map[string]string, since time.Time) ([]Entry, []Source, error) {
	return r.ReadScoped(ctx, namespace, selector, since, Scope{})
}

// Scope narrows which ztunnel pods a read reads. A node's ztunnel logs every connection on it: on a cluster of
// hundreds of nodes, a finding about two endpoints needs two of them, and a finding that some line exists needs
// only the first pods that hold one.
type Scope struct {
	// Nodes, when set, are the only nodes whose ztunnel is read (the destination's node logs its inbound
	// refusals); a node without a ztunnel pod is not read.
	Nodes []string
	// Prefer are nodes whose ztunnel is read first.
	Prefer []string
	// Enough, when set, ends the read once the lines read so far are enough for the caller; the pods not read by
	// then are not read. It is asked after each batch of pods read side by side.
	Enough func([]Entry) bool
}

// OnNode adds node to the nodes read, once.
func (s *Scope) OnNode(node string) {
	if !slices.Contains(s.Nodes, node) {
		s.Nodes = append(s.Nodes, node)
	}
}

// DefaultAtOnce is how many pods' logs one read fetches side by side, unless the reader says otherwise.
const DefaultAtOnce = 8

// ReadScoped is Read of the pods in scope: preferred nodes first, then by name, AtOnce at a time, until
// scope.Enough is satisfied.
func (r *LogReader) ReadScoped(ctx context.Context, namespace string, selector map[string]string, since time.Time, scope Scope) ([]Entry, []Source, error) {
	list, err := r.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(selector).String(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing ztunnel pods in %s: %w", namespace, err)
	}
	if len(list.Items) == 0 {
		return nil, nil, fmt.Errorf("no ztunnel pods match %s in namespace %s", labels.SelectorFromSet(selector), namespace)
	}
	pods := scope.order(list.Items)
	if len(pods) == 0 {
		return nil, nil, fmt.Errorf("no ztunnel pod matching %s in namespace %s runs on node(s) %s", labels.SelectorFromSet(selector),
			namespace, strings.Join(scope.Nodes, ", "))
	}
	var all []Entry
	var partial *Incomplete
	sources := make([]Source, 0, len(pods))
	now := time.Now()
	atOnce := r.AtOnce
	if atOnce <= 0 {
		atOnce = DefaultAtOnce
	}
	for start := 0; start < len(pods); start += atOnce {
		batch := pods[start:min(start+atOnce, len(pods))]
		got := make([][]Entry, len(batch))
		helds := make([]held, len(batch))
		g, gctx := errgroup.WithContext(ctx)
		for i, p := range batch {
			g.Go(func() error {
				container := "istio-proxy"
				if len(p.Spec.Containers) == 1 {
					container = p.Spec.Containers[0].Name
				}
				t := lookup(r, &r.ztunnel, tailKey{p.UID, container}, r.parseEntry)
				var err error
				if got[i], helds[i], err = t.appendSince(gctx, nil, r.pages(p.Namespace, p.Name, container), since, now); err != nil {
					return fmt.Errorf("reading logs of ztunnel pod %s/%s: %w", p.Namespace, p.Name, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, nil, err
		}
		for i, p := range batch {
			all = append(all, got[i]...)
			if h := helds[i]; !h.whole() {
				// What every pod holds: from the latest start held, to the earliest line read.
				if partial == nil {
					partial = &Incomplete{Pod: p.Namespace + "/" + p.Name, Node: p.Spec.NodeName, Since: since}
				}
				if h.from.After(partial.Held) {
					partial.Held = h.from
				}
				if !h.to.IsZero() && (partial.ReadTo.IsZero() || h.to.Before(partial.ReadTo)) {
					partial.ReadTo = h.to
				}
			}
			sources = append(sources, Source{Namespace: p.Namespace, Pod: p.Name, Node: p.Spec.NodeName})
		}
		if scope.Enough != nil && scope.Enough(all) {
			break
		}
	}
	if partial != nil {
		return all, sources, partial
	}
	return all, sources, nil
}

// order is the pods in scope, those on preferred nodes first, each part by name.
func (s Scope) order(items []corev1.Pod) []*corev1.Pod {
	var first, rest []*corev1.Pod
	for i := range items {
		p := &items[i]
		switch {
		case s.Nodes != nil && !slices.Contains(s.Nodes, p.Spec.NodeName):
		case slices.Contains(s.Prefer, p.Spec.NodeName):
			first = append(first, p)
		default:
			rest = append(rest, p)
		}
	}
	byName := func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(first, byName)
	slices.SortFunc(rest, byName)
	return append(first, rest...)
}

// Incomplete is Read's error when it returns what it holds of a window but not all of it (Held and ReadTo are what
// every pod read holds; Pod and Node name the first that did not hold it all): a ztunnel pod logged
// more lines in the window than the reader keeps (maxKept), and those before Held were dropped; or it logs faster
// than the reads page through it, and those after ReadTo are not read yet. The entries returned are real; a line
// missing from them may be among those not held.
type Incomplete struct {
	Pod, Node   string
	Since, Held time.Time
	ReadTo      time.Time
}

func (e *Incomplete) Error() string {
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	var parts []string
	if !e.Held.IsZero() {
		parts = append(parts, fmt.Sprintf("held only from %s, not from %s: it logged more than %d lines in the window, "+
			"and the older ones were dropped", stamp(e.Held), stamp(e.Since), maxKept))
	}
	if !e.ReadTo.IsZero() {
		parts = append(parts, fmt.Sprintf("read only up to %s: it logs faster than the reads page through it", stamp(e.ReadTo)))
	}
	return fmt.Sprintf("the log of ztunnel pod %s (node %s) is %s", e.Pod, e.Node, strings.Join(parts, "; and "))
}

// Holds tells whether every pod read holds the lines stamped from from to to (the window a finding needs): the
// lines it did not hold are all before from or after to.
func (e *Incomplete) Holds(from, to time.Time) bool {
	return (e.Held.IsZero() || !e.Held.After(from)) && (e.ReadTo.IsZero() || !e.ReadTo.Before(to))
}

// HoldsWindow tells whether err is nil, or an Incomplete that holds the window from from to to.
func HoldsWindow(err error, from, to time.Time) bool {
	var inc *Incomplete
	if err == nil {
		return true
	}
	return errors.As(err, &inc) && inc.Holds(from, to)
}

// IsIncomplete tells whether err is, or wraps, an Incomplete.
func IsIncomplete(err error) bool {
	var inc *Incomplete
	return errors.As(err, &inc)
}

// parseEntry keeps the lines Parse keeps (ztunnel log lines, not blank lines, comments or other output) that Keep
// keeps.
func (r *LogReader) parseEntry(text string) (Entry, bool) {
	text = strings.TrimSpace(text)
	if text == "" || strings.HasPrefix(text, "#") {
		return Entry{}, false
	}
	e, err := ParseLine(text)
	return e, err == nil && (r.Keep == nil || r.Keep(e))
}

// PodLogOf returns the log of the pod's only container written since the given time (to the second, as
// `kubectl logs --since-time`), fetching only what was not read before; callers filter the lines by their own
// times. The pod's UID keys what is kept: a pod of the same name created again starts afresh.
func (r *LogReader) PodLogOf(ctx context.Context, pod *corev1.Pod, since time.Time) ([]byte, error) {
	if len(pod.Spec.Containers) != 1 {
		return nil, fmt.Errorf("reading logs of pod %s/%s: it has %d containers, not one", pod.Namespace, pod.Name, len(pod.Spec.Containers))
	}
	container := pod.Spec.Containers[0].Name
	t := lookup(r, &r.pods, tailKey{pod.UID, container}, func(s string) (string, bool) { return s, true })
	lines, err := t.read(ctx, r.pages(pod.Namespace, pod.Name, container), since, time.Now())
	if err != nil {
		return nil, fmt.Errorf("reading logs of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}

// PodLogHeld is PodLogOf served from what earlier reads fetched, without a request: ok only when a read of the
// pod's log reached its end at or after fresh and what is kept holds every line since the given time.
func (r *LogReader) PodLogHeld(pod *corev1.Pod, since, fresh time.Time) ([]byte, bool) {
	if len(pod.Spec.Containers) != 1 {
		return nil, false
	}
	r.mu.Lock()
	t := r.pods[tailKey{pod.UID, pod.Spec.Containers[0].Name}]
	r.mu.Unlock()
	if t == nil {
		return nil, false
	}
	lines, ok := t.heldSince(since, fresh, time.Now())
	if !ok {
		return nil, false
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return []byte(b.String()), true
}

// PodLog is PodLogOf for a pod named by namespace and name, read first.
func (r *LogReader) PodLog(ctx context.Context, namespace, name string, since time.Time) ([]byte, error) {
	pod, err := r.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading logs of pod %s/%s: %w", namespace, name, err)
	}
	return r.PodLogOf(ctx, pod, since)
}

// pages reads a container's log one page at a time: lines with the runtime's timestamps, at most LimitBytes.
func (r *LogReader) pages(namespace, pod, container string) pageFunc {
	limit := r.LimitBytes
	if limit <= 0 {
		limit = DefaultLimitBytes
	}
	return func(ctx context.Context, since time.Time, scale int64) ([]LogLine, bool, error) {
		limit := limit * max(scale, 1)
		opts := &corev1.PodLogOptions{Container: container, Timestamps: true, LimitBytes: &limit}
		if !since.IsZero() {
			t := metav1.NewTime(since)
			opts.SinceTime = &t
		}
		raw, err := r.Client.CoreV1().Pods(namespace).GetLogs(pod, opts).DoRaw(ctx)
		if err != nil {
			return nil, false, err
		}
		cut := int64(len(raw)) >= limit
		return splitPage(raw, cut), cut, nil
	}
}

// lookup returns the tail of key in *m, creating it, and forgets the tails no one read for forgetAfter.
func lookup[T any](r *LogReader, m *map[tailKey]*tail[T], key tailKey, parse func(string) (T, bool)) *tail[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *m == nil {
		*m = map[tailKey]*tail[T]{}
	}
	now := time.Now()
	for k, t := range *m {
		if k != key && t.idle(now) {
			delete(*m, k)
		}
	}
	t := (*m)[key]
	if t == nil {
		t = &tail[T]{parse: parse, used: now}
		(*m)[key] = t
	}
	return t
}
