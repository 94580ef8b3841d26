package main

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// end is when a run was seen to end, and how.
type end struct {
	at    time.Time
	phase labsv1.Phase
}

// watcher records when each LabRun of a namespace reaches Succeeded or Failed: a list, then a watch from it, again
// whenever the watch ends.
type watcher struct {
	c      client.WithWatch
	ns     string
	cancel context.CancelFunc
	ended  chan map[string]end
	seen   chan map[string]time.Time // every run seen, ended or not, and when it was first
}

func newWatcher(ctx context.Context, c client.WithWatch, ns string) *watcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{c: c, ns: ns, cancel: cancel, ended: make(chan map[string]end, 1), seen: make(chan map[string]time.Time, 1)}
	w.ended <- map[string]end{}
	w.seen <- map[string]time.Time{}
	go w.loop(ctx)
	return w
}

func (w *watcher) stop() { w.cancel() }

func (w *watcher) loop(ctx context.Context) {
	for ctx.Err() == nil {
		list := &labsv1.LabRunList{}
		if err := w.c.List(ctx, list, client.InNamespace(w.ns)); err != nil {
			time.Sleep(200 * time.Millisecond) // a passing API error: list again
			continue
		}
		for i := range list.Items {
			w.saw(&list.Items[i])
		}
		wi, err := w.c.Watch(ctx, &labsv1.LabRunList{}, client.InNamespace(w.ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		if err != nil {
			continue
		}
		w.follow(ctx, wi)
	}
}

func (w *watcher) follow(ctx context.Context, wi watch.Interface) {
	defer wi.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return
			}
			if run, isRun := ev.Object.(*labsv1.LabRun); isRun {
				w.saw(run)
			}
		}
	}
}

func (w *watcher) saw(run *labsv1.LabRun) {
	seen := <-w.seen
	if _, ok := seen[run.Name]; !ok {
		seen[run.Name] = time.Now()
	}
	w.seen <- seen
	if run.Status.Phase != labsv1.PhaseSucceeded && run.Status.Phase != labsv1.PhaseFailed {
		return
	}
	m := <-w.ended
	if _, ok := m[run.Name]; !ok {
		m[run.Name] = end{at: time.Now(), phase: run.Status.Phase}
	}
	w.ended <- m
}

// waitSeen returns the name of the first run seen (in any phase) that match accepts, and when it was seen.
func (w *watcher) waitSeen(ctx context.Context, match func(name string) bool) (string, time.Time, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m := <-w.seen
		for n, at := range m {
			if match(n) {
				w.seen <- m
				return n, at, nil
			}
		}
		w.seen <- m
		select {
		case <-ctx.Done():
			return "", time.Time{}, fmt.Errorf("no run was created before the case's time ran out")
		case <-tick.C:
		}
	}
}

// waitFor returns the name and end of the first ended run that match accepts (runs seen ended before the call
// included), or an error when ctx ends first.
func (w *watcher) waitFor(ctx context.Context, match func(name string) bool) (string, end, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		m := <-w.ended
		for n, e := range m {
			if match(n) {
				w.ended <- m
				return n, e, nil
			}
		}
		w.ended <- m
		select {
		case <-ctx.Done():
			return "", end{}, fmt.Errorf("no run ended before the case's time ran out")
		case <-tick.C:
		}
	}
}

// waitAll returns when every named run has ended, or with what ended so far and an error when ctx ends first.
func (w *watcher) waitAll(ctx context.Context, names []string) (map[string]end, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		m := <-w.ended
		done := map[string]end{}
		for _, n := range names {
			if e, ok := m[n]; ok {
				done[n] = e
			}
		}
		w.ended <- m
		if len(done) == len(names) {
			return done, nil
		}
		select {
		case <-ctx.Done():
			return done, fmt.Errorf("%d of %d runs ended before the case's time ran out", len(done), len(names))
		case <-tick.C:
		}
	}
}
