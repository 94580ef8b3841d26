package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// TestEnsureEndsOnAnObserverTheNodeRefused: an observer that kubelet refused before starting it (Failed, never
// started) is not replaced over and over until the step's deadline, as an observer whose budget ran out is: the
// step gets the node's reason at once, and the refused pod stays for the user to inspect. (A unit test of one
// function with the fake client; TestVerifyRunsOnANodeTaintedNoExecute covers the sandbox.)
func TestEnsureEndsOnAnObserverTheNodeRefused(t *testing.T) {
	run := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "lab", UID: "uid-refused"}}
	o := observer{caller: labs.CallerClient, node: "node-3"}
	ns, _ := (&LabRunReconciler{}).caller(run, o.caller)
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pod := func(started bool, reason string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: observerPodName(coldKeeper(run), o), UID: "observer-uid"},
			Spec:   corev1.PodSpec{NodeName: "node-3"},
			Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: reason, Message: "Pod was rejected: no"}}
		if started {
			now := metav1.Now()
			p.Status.StartTime = &now
		}
		return p
	}
	dest := func() (observerDest, string, error) { return observerDest{urls: []string{"http://backend"}}, "", nil }

	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		wantReason string // "" : replaced (deleted, to be created afresh)
	}{
		{"refused by the node", pod(false, "TaintToleration"), "node node-3 refused observer pod"},
		{"ended after it ran", pod(true, "DeadlineExceeded"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.pod).Build()
			r := &LabRunReconciler{Client: c, Records: mesh.Store{Client: c, Reader: c, Namespace: "labrun-system"}}
			rec := &mesh.Record{Run: mesh.RunRef{Namespace: run.Namespace, Name: run.Name, UID: string(run.UID)}}
			rec.PutPod(mesh.PodRecord{Namespace: ns, Name: tc.pod.Name, UID: string(tc.pod.UID), Digest: probe.Digest(tc.pod)})
			got, reason, err := r.ensure(context.Background(), run, runBook{r: r, rec: rec}, o, dest)
			if err != nil || got != nil {
				t.Fatalf("ensure = %v, %q, %v", got, reason, err)
			}
			if !strings.Contains(reason, tc.wantReason) || (tc.wantReason == "") != (reason == "") {
				t.Errorf("reason %q, want one containing %q", reason, tc.wantReason)
			}
			err = c.Get(context.Background(), client.ObjectKeyFromObject(tc.pod), &corev1.Pod{})
			if kept := err == nil; kept != (tc.wantReason != "") || (err != nil && !apierrors.IsNotFound(err)) {
				t.Errorf("pod kept = %v (%v), want kept only when the node refused it", kept, err)
			}
		})
	}
}
