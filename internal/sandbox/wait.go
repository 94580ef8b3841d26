package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// WaitForRun watches a LabRun until it reaches Succeeded or Failed, or the timeout passes.
func WaitForRun(ctx context.Context, c client.WithWatch, key client.ObjectKey, timeout time.Duration) (*labsv1.LabRun, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		run := &labsv1.LabRun{}
		if err := c.Get(ctx, key, run); err != nil {
			return nil, err
		}
		if done(run) {
			return run, nil
		}
		w, err := c.Watch(ctx, &labsv1.LabRunList{}, client.InNamespace(key.Namespace),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", key.Name)})
		if err != nil {
			return nil, err
		}
		if r := watchUntilDone(ctx, w); r != nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("LabRun %s did not finish within %s", key, timeout)
		}
	}
}

func watchUntilDone(ctx context.Context, w watch.Interface) *labsv1.LabRun {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil // the watch ended; the caller re-reads and watches again
			}
			if run, isRun := ev.Object.(*labsv1.LabRun); isRun && done(run) {
				return run
			}
		}
	}
}

func done(run *labsv1.LabRun) bool {
	return run.Status.Phase == labsv1.PhaseSucceeded || run.Status.Phase == labsv1.PhaseFailed
}

// waitForPodsReady polls the API server until every pod in keys has condition Ready=True. When the timeout
// passes or ctx ends first, the error names the pods that were not Ready when last read and where each stood.
func waitForPodsReady(ctx context.Context, c client.Reader, keys []client.ObjectKey, timeout time.Duration) error {
	start := time.Now()
	var notReady []string
	readErr := errors.New("no pods read yet")
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if readErr = c.List(ctx, pods); readErr != nil {
			return false, nil // a passing API error (or the deadline's): keep what the last read showed
		}
		notReady = podsNotReady(keys, pods.Items)
		return len(notReady) == 0, nil
	})
	switch {
	case err == nil:
		return nil
	case notReady == nil:
		return fmt.Errorf("pods not read within %s: %w", time.Since(start).Round(time.Millisecond), readErr)
	}
	return fmt.Errorf("pods not Ready after %s: %s: %w", time.Since(start).Round(time.Millisecond),
		strings.Join(notReady, ", "), err)
}

// podsNotReady names each pod of keys that is missing from pods or not Ready, and where it stands.
func podsNotReady(keys []client.ObjectKey, pods []corev1.Pod) []string {
	byKey := map[client.ObjectKey]*corev1.Pod{}
	for i := range pods {
		byKey[client.ObjectKeyFromObject(&pods[i])] = &pods[i]
	}
	var notReady []string
	for _, key := range keys {
		switch pod := byKey[key]; {
		case pod == nil:
			notReady = append(notReady, key.String()+" (not found)")
		case !podReady(pod):
			notReady = append(notReady, fmt.Sprintf("%s (phase %s)", key, pod.Status.Phase))
		}
	}
	return notReady
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
