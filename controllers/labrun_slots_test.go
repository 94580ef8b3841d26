package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// TestSlotsAreSharedFairlyBetweenNamespaces: one tenant's many queued runs do not all go before another team's
// one; within a namespace, the earlier created goes first. (takeSlot's bookkeeping alone, over a fake client; the
// sandbox test TestMaxActiveRunsQueuesTheRest proves the bound on a running manager.)
func TestSlotsAreSharedFairlyBetweenNamespaces(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	run := func(ns, name string, created time.Duration, active bool) *labsv1.LabRun {
		r := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name),
			CreationTimestamp: metav1.NewTime(t0.Add(created))}}
		r.Status.Phase = labsv1.PhaseQueued
		if active {
			r.Status.Phase = labsv1.PhaseRunning
			at := metav1.NewTime(t0)
			r.Status.ActiveSince = &at
		}
		return r
	}
	objs := []client.Object{run("greedy", "active", 0, true)}
	for i := range 5 {
		objs = append(objs, run("greedy", fmt.Sprintf("q%d", i), time.Duration(i)*time.Second, false))
	}
	late := run("team", "late", time.Minute, false)
	objs = append(objs, late)
	r := &LabRunReconciler{Client: fakeRuns(t, objs...),
		MaxActiveRuns: 2, Now: func() time.Time { return t0.Add(2 * time.Minute) }}
	ctx := context.Background()
	ok, ahead, active, _, err := r.takeSlot(ctx, late)
	if err != nil || !ok || active != 1 {
		t.Fatalf("the other team's run, created last: ok %v, %d ahead, %d active, %v; want it let in first", ok, ahead, active, err)
	}
	ok, ahead, _, _, err = r.takeSlot(ctx, objs[2].(*labsv1.LabRun)) // greedy/q1
	if err != nil || ok || ahead != 1 {
		t.Fatalf("greedy/q1: ok %v, %d ahead, %v; want to wait behind greedy/q0 only", ok, ahead, err)
	}
}

// TestSlotHeldByAnUnseenAdmissionIsLookedAtAgainWhenItLapses: a slot counted for a run let in whose status the
// cache does not show yet frees itself when that admission lapses, which no event announces: the waiter comes
// back then, not after the five-minute backstop. Admissions are the reconciler's own, not another manager's.
func TestSlotHeldByAnUnseenAdmissionIsLookedAtAgainWhenItLapses(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	waiter := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "waiter", UID: "waiter",
		CreationTimestamp: metav1.NewTime(t0)}}
	waiter.Status.Phase = labsv1.PhaseQueued
	c := fakeRuns(t, waiter)
	now := t0.Add(time.Minute)
	r := &LabRunReconciler{Client: c, MaxActiveRuns: 1, Now: func() time.Time { return now }}
	r.slots.admitted = map[types.UID]admission{"let-in": {namespace: "demo", at: now.Add(-40 * time.Second)}}
	ok, _, active, recheck, err := r.takeSlot(context.Background(), waiter)
	if err != nil || ok || active != 1 {
		t.Fatalf("ok %v, %d active, %v: want to wait for the one admission", ok, active, err)
	}
	if recheck > 21*time.Second || recheck < 19*time.Second {
		t.Fatalf("comes back after %s, want when the admission lapses (20 s)", recheck)
	}
	other := &LabRunReconciler{Client: c, MaxActiveRuns: 1, Now: func() time.Time { return now }}
	if ok, _, _, _, err := other.takeSlot(context.Background(), waiter); err != nil || !ok {
		t.Fatalf("another reconciler counted this one's admission: ok %v, %v", ok, err)
	}
}

// fakeRuns is a fake client holding the given LabRuns (small tests of one function; the sandbox proves features).
func fakeRuns(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := labsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}
