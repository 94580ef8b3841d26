package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// staticLogs is a LogSource that returns fixed ztunnel entries.
type staticLogs []ztunnel.Entry

func (s staticLogs) ReadScoped(context.Context, string, map[string]string, time.Time, ztunnel.Scope) ([]ztunnel.Entry, []ztunnel.Source, error) {
	return s, nil, nil
}

func (s staticLogs) PodLog(context.Context, string, string, time.Time) ([]byte, error) {
	return nil, nil
}

// refusal is the destination ztunnel's line for a plaintext connection from pod namespace/name that denier refused.
func refusal(at time.Time, namespace, name, denier string) ztunnel.Entry {
	return ztunnel.Entry{Time: at, Level: "error", Scope: "access", Message: "connection complete", Fields: ztunnel.FieldsOf(map[string]string{
		ztunnel.FieldSrcAddr: "10.244.3.7:40000", ztunnel.FieldSrcWorkload: name, ztunnel.FieldSrcNamespace: namespace,
		ztunnel.FieldDstAddr: "10.244.2.9:8080", ztunnel.FieldDstWorkload: "backend-7c9d8f6b4-q8m2z",
		ztunnel.FieldDstNamespace: "demo", ztunnel.FieldDirection: "inbound",
		ztunnel.FieldError: "connection closed due to policy rejection: explicitly denied by: " + denier,
	})}
}

// TestNamesakePodIsNotTheObserver: a pod's name is unique only within its namespace. A tenant who names a pod of
// their own namespace like the run's observer, and has it refused by STRICT, must not supply the evidence or the
// denier of the run's step: neither the probe's denial lookup nor the evidence criteria take its lines.
func TestNamesakePodIsNotTheObserver(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	run := &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "lab", UID: "uid-namesake"},
		Spec: labsv1.LabRunSpec{Labs: []labsv1.LabName{labsv1.LabPeerAuthentication},
			Target: labsv1.TargetSpec{Service: "backend"}, Mesh: labsv1.MeshSpec{RootNamespace: "istio-system"}},
	}
	static, _ := (&LabRunReconciler{}).strictDenials(run)
	step := planStep(run, labsv1.LabPeerAuthentication, "non-mesh-denied")
	observerName := observerPodName(coldKeeper(run), observerOf(step))
	ownNS, _ := (&LabRunReconciler{}).caller(run, step.Caller)
	const tenantNS = "tenant"

	namesake := refusal(t0.Add(2*time.Second), tenantNS, observerName, static)
	observer := refusal(t0.Add(time.Second), ownNS, observerName, "demo/some-other-policy")

	t.Run("the probe's denial lookup", func(t *testing.T) {
		r := &LabRunReconciler{Logs: staticLogs{observer, namesake}}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ownNS, Name: observerName}}
		d, err := r.denial(context.Background(), run, t0, pod, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Line == nil || d.Who != "demo/some-other-policy" {
			t.Errorf("denied by %q, want the observer's own line (demo/some-other-policy), not the namesake's", d.Who)
		}
		r.Logs = staticLogs{namesake}
		if d, _ := r.denial(context.Background(), run, t0, pod, nil); d.Line != nil {
			t.Errorf("the namesake's line was taken as the observer's: denied by %q", d.Who)
		}
	})

	t.Run("the evidence criteria", func(t *testing.T) {
		r := &LabRunReconciler{Now: func() time.Time { return t0.Add(5 * time.Second) }}
		ev := planStep(run, labsv1.LabPeerAuthentication, "strict-rejection-logged").Evidence
		if ev == nil || !ev.Plaintext {
			t.Fatal("the catalogue has no plaintext strict-rejection-logged step")
		}
		c, err := r.criteria(context.Background(), run, labsv1.LabPeerAuthentication, ev, t0)
		if err != nil {
			t.Fatal(err)
		}
		if got := ztunnel.Match([]ztunnel.Entry{namesake}, c); len(got) != 0 {
			t.Errorf("the namesake's refusal counts as evidence: %v", got)
		}
		own := refusal(t0.Add(time.Second), ownNS, observerName, static)
		if got := ztunnel.Match([]ztunnel.Entry{own}, c); len(got) != 1 {
			t.Errorf("the observer's own refusal does not count as evidence (criteria %+v)", c)
		}
	})
}
