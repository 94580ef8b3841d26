package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
)

// followCreated follows a run just created to its end (unless wait is false) and turns that end into the exit
// code: `run`'s and `schedule run`'s.
func (o *Options) followCreated(ctx context.Context, c client.WithWatch, run *labsv1.LabRun, wait bool, timeout time.Duration) error {
	if !wait {
		return nil
	}
	done, err := follow(ctx, c, client.ObjectKeyFromObject(run), newLiveTable(o.Streams.Out), timeout)
	if err != nil {
		return err
	}
	return verdict(o.Streams.Out, done)
}

// follow watches a LabRun until it ends, printing a table row whenever a step changes, and returns the run as
// it ended. A watch the API server closes is resumed from the last version seen; nothing polls.
func follow(ctx context.Context, c client.WithWatch, key client.ObjectKey, table *liveTable, timeout time.Duration) (*labsv1.LabRun, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	run := &labsv1.LabRun{}
	if err := c.Get(ctx, key, run); err != nil {
		return nil, fmt.Errorf("reading LabRun %s: %w", key, err)
	}
	phase := labsv1.Phase("")
	for {
		phase = show(table, run, phase)
		if finished(run) {
			return run, nil
		}
		next, err := watchNext(ctx, c, key, run.ResourceVersion, table, &phase)
		switch {
		case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
			return nil, fmt.Errorf("LabRun %s is still %s after %s; it goes on without the plugin (kubectl labrun status %s)",
				key, orDash(string(run.Status.Phase)), timeout, key.Name)
		case err != nil:
			return nil, err
		case next == nil: // the watch ended: read again and resume
			if err := c.Get(ctx, key, run); err != nil {
				return nil, fmt.Errorf("reading LabRun %s: %w", key, err)
			}
		default:
			run = next
		}
	}
}

// watchNext watches from resourceVersion and returns the run once it has ended; nil when the watch closed.
func watchNext(ctx context.Context, c client.WithWatch, key client.ObjectKey, rv string, table *liveTable, phase *labsv1.Phase) (*labsv1.LabRun, error) {
	w, err := c.Watch(ctx, &labsv1.LabRunList{}, client.InNamespace(key.Namespace),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", key.Name)},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
	if err != nil {
		return nil, fmt.Errorf("watching LabRun %s: %w", key, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return nil, fmt.Errorf("LabRun %s was deleted before it ended", key)
			case watch.Error:
				return nil, nil // e.g. the version expired: re-read and watch again
			}
			run, isRun := ev.Object.(*labsv1.LabRun)
			if !isRun || ev.Type == watch.Bookmark {
				continue
			}
			*phase = show(table, run, *phase)
			if finished(run) {
				return run, nil
			}
		}
	}
}

// show prints changed steps and phase changes; it returns the phase shown. No row is printed before the run
// passed its preflight: a run that fails there ran no step, and says so in one line instead of a table of skipped
// steps.
func show(table *liveTable, run *labsv1.LabRun, shown labsv1.Phase) labsv1.Phase {
	if failedAtPreflight(run) {
		if shown != run.Status.Phase {
			fmt.Fprintln(table.w, preflightLine(run))
		}
		return run.Status.Phase
	}
	if run.Status.Phase != labsv1.PhasePending && run.Status.Phase != "" {
		// Steps first: the rows that ended a run come before the line saying it ended.
		table.update(run.Status.Steps)
	}
	if run.Status.Phase != shown && run.Status.Phase != "" {
		line := fmt.Sprintf("LabRun %s/%s: %s", run.Namespace, run.Name, run.Status.Phase)
		switch {
		case run.Status.LockHolder != "":
			line += fmt.Sprintf(" (waiting for the lock: %d ahead, first %s)", run.Status.QueuePosition, run.Status.LockHolder)
		case run.Status.Reason == labsv1.ReasonWaitingForSlot && run.Status.QueuePosition > 0:
			line += fmt.Sprintf(" (waiting for an active-run slot: position %d)", run.Status.QueuePosition)
		}
		fmt.Fprintln(table.w, line)
	}
	return run.Status.Phase
}

// failedAtPreflight: the run ended before any step, its preflight refused it (nothing was changed).
func failedAtPreflight(run *labsv1.LabRun) bool {
	return run.Status.Phase == labsv1.PhaseFailed && run.Status.Reason == labsv1.ReasonPreflightFailed
}

// preflightLine says, in one line, why a run failed at preflight.
func preflightLine(run *labsv1.LabRun) string {
	return fmt.Sprintf("LabRun %s/%s failed at preflight, no step ran and nothing was changed: %s", run.Namespace,
		run.Name, orDash(run.Status.Message))
}

func finished(run *labsv1.LabRun) bool {
	return run.Status.Phase == labsv1.PhaseSucceeded || run.Status.Phase == labsv1.PhaseFailed
}

func meshRestored(run *labsv1.LabRun) (string, string) { return report.MeshRestored(run) }
