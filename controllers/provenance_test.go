package controllers

import (
	"context"
	"strings"
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
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// TestTrustObserver: a pod under an observer's name is believed only if it is the one the run recorded, with the
// spec and container it was recorded with. (A unit test of one function with the fake client;
// TestTamperedObserverEndsItsStepInError covers the sandbox.)
func TestTrustObserver(t *testing.T) {
	const runUID = "run-uid"
	observerPod := func() *corev1.Pod {
		p := probe.Pod(probe.PodRequest{Name: "lab-obs-1", Namespace: "demo", ServiceAccount: "frontend", Image: "labrun:1",
			Labels:  map[string]string{labsv1.LabelProbe: "true", labsv1.LabelLabRun: runUID},
			Options: probe.Options{URL: "http://backend", Observe: true, Timeout: time.Second, Settle: time.Minute}})
		p.UID = "pod-uid"
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: probe.ContainerName, ContainerID: "cri://one"}}
		return p
	}
	recorded := observerPod()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		record    bool
		change    func(*corev1.Pod)
		want      string // "" trusted; "deleted": replaced as unproven; else a substring of the tampering
		trusted   bool
		keepsPods bool
	}{
		{name: "the pod the run created", record: true, change: func(*corev1.Pod) {}, trusted: true},
		{name: "image swapped", record: true, change: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "forger:1" }, want: "forger:1"},
		{name: "ephemeral container added", record: true, change: func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "x", Image: "sh"}}}
		}, want: "1 ephemeral"},
		{name: "restarted", record: true, change: func(p *corev1.Pod) { p.Status.ContainerStatuses[0].RestartCount = 1 }, want: "restarted"},
		{name: "another container", record: true, change: func(p *corev1.Pod) { p.Status.ContainerStatuses[0].ContainerID = "cri://two" }, want: "cri://two"},
		{name: "deleted and created again", record: true, change: func(p *corev1.Pod) { p.UID = "forged-uid" }, want: "forged-uid"},
		{name: "a namesake the run never created", change: func(p *corev1.Pod) { p.Labels = nil }, want: "did not create it"},
		{name: "created but not recorded (a pass cut short)", change: func(*corev1.Pod) {}, want: "deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := observerPod()
			tc.change(live)
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(live).Build()
			r := &LabRunReconciler{Client: c, Records: mesh.Store{Client: c, Reader: c, Namespace: "labrun-system"}}
			rec := &mesh.Record{Run: mesh.RunRef{Namespace: "demo", Name: "lab", UID: runUID}}
			if tc.record {
				rec.PutPod(mesh.PodRecord{Namespace: "demo", Name: recorded.Name, UID: string(recorded.UID),
					Digest: probe.Digest(recorded), ContainerID: "cri://one"})
			}
			got, reason, err := r.trustObserver(context.Background(), runBook{r: r, rec: rec}, live)
			if err != nil {
				t.Fatal(err)
			}
			if tc.trusted {
				if got == nil || reason != "" {
					t.Fatalf("not trusted: %q", reason)
				}
				return
			}
			if got != nil {
				t.Fatalf("trusted a pod that is not the run's own (%s)", tc.name)
			}
			gone := apierrors.IsNotFound(c.Get(context.Background(), client.ObjectKeyFromObject(live), &corev1.Pod{}))
			if tc.want == "deleted" {
				if reason != "" || !gone {
					t.Errorf("reason %q, deleted %v: want the unrecorded observer replaced", reason, gone)
				}
				return
			}
			if !strings.HasPrefix(reason, steps.TamperPrefix) || !strings.Contains(reason, tc.want) {
				t.Errorf("reason %q, want tampering naming %q", reason, tc.want)
			}
			if gone {
				t.Error("a tampered pod was deleted: it stays for inspection")
			}
		})
	}
}

// TestDenialNamesTheDestination: a refusal of the observer by another workload (a deny-all Service of a
// tenant's, say) is not the target's refusal.
func TestDenialNamesTheDestination(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	run := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "lab", UID: types.UID("uid-dst")},
		Spec: labsv1.LabRunSpec{Target: labsv1.TargetSpec{Service: "backend"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "lab-obs-1"}}
	elsewhere := refusal(t0.Add(time.Second), "demo", pod.Name, "tenant/deny-all")
	elsewhere.Fields = elsewhere.Fields.With(ztunnel.FieldDstWorkload, "tenant-deny-all-5f6d")
	otherNS := refusal(t0.Add(2*time.Second), "demo", pod.Name, "tenant/deny-all")
	otherNS.Fields = otherNS.Fields.With(ztunnel.FieldDstNamespace, "tenant")
	target := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "backend-7c9d8f6b4-q8m2z"}, // the dst.workload of refusal's lines
		Spec: corev1.PodSpec{NodeName: "node-2"}}}

	r := &LabRunReconciler{Logs: staticLogs{elsewhere, otherNS}}
	d, err := r.denial(context.Background(), run, t0, pod, target)
	if err != nil {
		t.Fatal(err)
	}
	if d.Line != nil {
		t.Errorf("a refusal by %s/%s was taken as the target's", d.Line.Fields.Get(ztunnel.FieldDstNamespace), d.Line.Fields.Get(ztunnel.FieldDstWorkload))
	}
	r.Logs = staticLogs{elsewhere, refusal(t0.Add(3*time.Second), "demo", pod.Name, "demo/backend-allow-frontend-only")}
	if d, _ := r.denial(context.Background(), run, t0, pod, target); d.Line == nil || d.Who != "demo/backend-allow-frontend-only" {
		t.Errorf("the target's own refusal was not found: %+v", d)
	}
}
