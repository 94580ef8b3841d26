package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// TestDropGoneNodes: a schedule's warm observer on a node that left the cluster is deleted and forgotten; one on a
// node that is still there, only not in the fleet now (its ztunnel not ready), is kept, and so is a pod the warm
// record does not name. (A unit test of one function with the fake client: the sandbox has no node to remove.)
func TestDropGoneNodes(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	sched := mesh.RunRef{Namespace: "demo", Name: "nightly", UID: "sched-uid"}
	k := keeper{name: sched.Name, uid: sched.UID, schedule: &sched}
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, UID: types.UID("uid-" + name),
			Labels: map[string]string{labsv1.LabelWarm: k.uid, labsv1.LabelStep: "observe-client-nodes"}},
			Spec: corev1.PodSpec{NodeName: node}}
	}
	gone, notReady, here, stranger := pod("gone", "node-gone"), pod("not-ready", "node-2"), pod("here", "node-1"), pod("stranger", "node-gone")
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(gone, notReady, here, stranger,
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}).Build()
	r := &LabRunReconciler{Client: c, APIReader: c, Records: mesh.Store{Client: c, Reader: c, Namespace: "labrun-system"}}
	w := &mesh.Warm{Schedule: sched}
	for _, p := range []*corev1.Pod{gone, notReady, here} {
		w.PutPod(mesh.PodRecord{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Digest: probe.Digest(p)})
	}
	if err := r.warmStore().Save(ctx, w); err != nil {
		t.Fatal(err)
	}
	b := &warmBook{r: r, w: w}
	if err := r.dropGoneNodes(ctx, b, k, "client-nodes", "demo", []string{"node-1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pod  *corev1.Pod
		kept bool
	}{{gone, false}, {notReady, true}, {here, true}, {stranger, true}} {
		err := c.Get(ctx, client.ObjectKeyFromObject(tc.pod), &corev1.Pod{})
		if kept := err == nil; kept != tc.kept || (err != nil && !apierrors.IsNotFound(err)) {
			t.Errorf("pod %s kept = %v (%v), want %v", tc.pod.Name, kept, err, tc.kept)
		}
	}
	saved, err := r.warmStore().Get(ctx, sched.UID)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Pod("demo", "gone") != nil || saved.Pod("demo", "here") == nil {
		t.Errorf("warm record pods %+v: want gone forgotten, here kept", saved.Pods)
	}
}

// TestWarmObserverDeadlineFitsTheAdmissionBound: for any request timeout under an hour, a warm observer's
// activeDeadlineSeconds stays within the 4h manager_policy.yaml admits for a probe pod. (Two longer timeouts leave
// no life under the bound: such a pod is refused, and the step says so, as for a one-off run's observer.)
func TestWarmObserverDeadlineFitsTheAdmissionBound(t *testing.T) {
	sched := mesh.RunRef{Namespace: "demo", Name: "nightly", UID: "sched-uid"}
	k := keeper{name: sched.Name, uid: sched.UID, schedule: &sched}
	for _, timeout := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Minute, time.Hour} {
		run := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "nightly-1", UID: "run-uid"},
			Spec: labsv1.LabRunSpec{Target: labsv1.TargetSpec{Service: "backend"},
				Probe: labsv1.ProbeSpec{RequestTimeout: &metav1.Duration{Duration: timeout}}}}
		pod := (&LabRunReconciler{ProbeImage: "probe"}).warmPod(run, k, observer{caller: labs.CallerClient, node: "node-1"}, observerDest{})
		if d := *pod.Spec.ActiveDeadlineSeconds; d > 4*3600 || d < 3600 {
			t.Errorf("request timeout %s: activeDeadlineSeconds %d, want from 1h to 4h", timeout, d)
		}
	}
}
