package argocd_test

// health_labschedule.lua run as Argo CD runs it (runHealth), against real labsv1.LabSchedule values.

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

const scheduleHealthKey = "resource.customizations.health.labs.ambientlab.io_LabSchedule"

// scheduleObject is a LabSchedule at generation 2 as Argo CD sees it: JSON decoded into maps.
func scheduleObject(t *testing.T, suspend bool, status *labsv1.LabScheduleStatus) map[string]any {
	t.Helper()
	ls := labsv1.LabSchedule{
		TypeMeta:   metav1.TypeMeta{APIVersion: labsv1.GroupVersion.String(), Kind: "LabSchedule"},
		ObjectMeta: metav1.ObjectMeta{Name: "verify", Namespace: "demo", Generation: 2},
		Spec:       labsv1.LabScheduleSpec{Schedule: "@every 15m", Suspend: &suspend},
	}
	if status != nil {
		ls.Status = *status
	}
	raw, err := json.Marshal(ls)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if status == nil {
		delete(m, "status")
	}
	return m
}

func lastRun(phase labsv1.Phase, failed ...string) *labsv1.LabScheduleStatus {
	return &labsv1.LabScheduleStatus{ObservedGeneration: 2, LastRun: &labsv1.RunSummary{Name: "verify-1767225600",
		Phase: phase, Summary: labsv1.Summary{Total: 6, Passed: int32(6 - len(failed)), Failed: int32(len(failed))},
		FailedSteps: failed}}
}

func TestScheduleHealth(t *testing.T) {
	script := string(readFile(t, "health_labschedule.lua"))
	stalled := &labsv1.LabScheduleStatus{ObservedGeneration: 2, Conditions: []metav1.Condition{
		cond(labsv1.ConditionReady, metav1.ConditionFalse, "InvalidSchedule", "unknown time zone \"Mars/Olympus\""),
		cond(labsv1.ConditionStalled, metav1.ConditionTrue, "InvalidSchedule", "unknown time zone \"Mars/Olympus\""),
	}}
	stale := lastRun(labsv1.PhaseSucceeded)
	stale.ObservedGeneration = 1
	many := lastRun(labsv1.PhaseFailed, "mtls/a@node-1", "mtls/b", "mtls/c", "mtls/d", "mtls/e", "mtls/f")
	cases := []struct {
		name    string
		suspend bool
		status  *labsv1.LabScheduleStatus
		want    health
	}{
		{"no status yet", false, nil, health{"Progressing", "Waiting for the controller"}},
		{"status of an older generation", false, stale, health{"Progressing", "Waiting for the controller"}},
		{"no run finished yet", false, &labsv1.LabScheduleStatus{ObservedGeneration: 2, Active: []string{"verify-1"}},
			health{"Progressing", "Waiting for the first run to finish"}},
		{"last run succeeded", false, lastRun(labsv1.PhaseSucceeded),
			health{"Healthy", "LabRun verify-1767225600 Succeeded: 6/6 steps passed"}},
		{"last run failed on one node", false, lastRun(labsv1.PhaseFailed, "peer-authentication/non-mesh-denied@node-2"),
			health{"Degraded", "LabRun verify-1767225600 Failed: 5/6 steps passed; failed: peer-authentication/non-mesh-denied@node-2"}},
		{"many failed steps are cut at five", false, many,
			health{"Degraded", "LabRun verify-1767225600 Failed: 0/6 steps passed; failed: mtls/a@node-1, mtls/b, mtls/c, mtls/d, mtls/e, …"}},
		{"stalled", false, stalled, health{"Degraded", "unknown time zone \"Mars/Olympus\""}},
		{"stalled and suspended", true, stalled, health{"Degraded", "unknown time zone \"Mars/Olympus\""}},
		{"suspended after a failure", true, lastRun(labsv1.PhaseFailed, "mtls/x"),
			health{"Suspended", "Suspended; last: LabRun verify-1767225600 Failed: 5/6 steps passed; failed: mtls/x"}},
		{"suspended before any run", true, &labsv1.LabScheduleStatus{ObservedGeneration: 2},
			health{"Suspended", "Suspended"}},
		{"an unknown last phase", false, lastRun("Exploded"),
			health{"Unknown", "LabRun verify-1767225600 Exploded: 6/6 steps passed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := runHealth(t, script, scheduleObject(t, tc.suspend, tc.status))
			if got != tc.want {
				t.Errorf("health = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestConfigMapPatchEmbedsScheduleHealth keeps argocd-cm-patch.yaml's LabSchedule script equal to its file.
func TestConfigMapPatchEmbedsScheduleHealth(t *testing.T) {
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(readFile(t, "argocd-cm-patch.yaml"), &cm); err != nil {
		t.Fatalf("parsing argocd-cm-patch.yaml: %v", err)
	}
	if got, want := cm.Data[scheduleHealthKey], string(readFile(t, "health_labschedule.lua")); got != want {
		t.Fatalf("the %s script in argocd-cm-patch.yaml differs from health_labschedule.lua (%d vs %d bytes); "+
			"regenerate it by indenting the file by 4 spaces", scheduleHealthKey, len(got), len(want))
	}
}
