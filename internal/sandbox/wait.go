package sandbox

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/fields"
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
