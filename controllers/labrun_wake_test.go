package controllers

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// TestQueueIsWokenFrontFirst: when a ticket goes, the runs waiting for a lock are woken front first, so the work
// queue hands the run the release serves to a worker before those that only learn their place moved up; runs not
// waiting for a lock are not woken. (queuedRuns alone, over a fake client; lock_test.go proves the queue's order
// on a running manager.)
func TestQueueIsWokenFrontFirst(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	run := func(name string, phase labsv1.Phase, position int32, active time.Duration) client.Object {
		r := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, UID: types.UID(name)}}
		r.Status.Phase, r.Status.QueuePosition = phase, position
		if active >= 0 {
			at := metav1.NewTime(t0.Add(active))
			r.Status.ActiveSince = &at
		}
		return r
	}
	// Names sort against the queue's order, as the cache lists them.
	objs := []client.Object{
		run("a-third", labsv1.PhaseQueued, 2, 0),
		run("b-running", labsv1.PhaseRunning, 0, 0),
		run("c-second-by-time", labsv1.PhaseQueued, 1, 2*time.Second),
		run("d-first", labsv1.PhaseQueued, 0, 3*time.Second),
		run("e-waiting-for-a-slot", labsv1.PhaseQueued, 0, -1),
		run("f-second", labsv1.PhaseQueued, 1, time.Second),
	}
	r := &LabRunReconciler{Client: fakeRuns(t, objs...)}
	var got []string
	for _, req := range r.queuedRuns(context.Background(), nil) {
		got = append(got, req.Name)
	}
	want := []string{"d-first", "f-second", "c-second-by-time", "a-third"}
	if len(got) != len(want) {
		t.Fatalf("woke %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("woke %v, want %v", got, want)
		}
	}
}
