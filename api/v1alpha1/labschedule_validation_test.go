package v1alpha1_test

// The LabSchedule CRD as the API server applies it: defaults, the CEL and enum rules, names and printer columns.

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// scheduleSpec is the smallest valid LabSchedule spec: a schedule and a Verify template of one lab.
func scheduleSpec() map[string]any {
	return map[string]any{
		"schedule": "@every 5m",
		"template": map[string]any{"spec": map[string]any{
			"mode": "Verify", "labs": list("mtls"), "target": map[string]any{"service": "backend"},
		}},
	}
}

func newSchedule(name string, spec map[string]any) *unstructured.Unstructured {
	u := newUnstructured(name, spec)
	u.SetKind("LabSchedule")
	return u
}

func TestScheduleDefaults(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	spec := scheduleSpec()
	set(spec, "trigger", map[string]any{"onPolicyChange": true})
	g.Expect(k8s.Create(ctx, newSchedule("schedule-defaults", spec))).To(Succeed())
	ls := &labsv1.LabSchedule{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "schedule-defaults"}, ls)).To(Succeed())
	g.Expect(ls.Spec.ConcurrencyPolicy).To(Equal(labsv1.ConcurrencyForbid))
	g.Expect(ls.Spec.SuccessfulRunsHistoryLimit).To(HaveValue(BeEquivalentTo(3)))
	g.Expect(ls.Spec.FailedRunsHistoryLimit).To(HaveValue(BeEquivalentTo(1)))
	g.Expect(ls.Spec.Suspend).To(BeNil())
	g.Expect(ls.Spec.TimeZone).To(BeNil(), "no schema default: the controller reads it as UTC")
	g.Expect(ls.Spec.Trigger.Debounce).To(Equal(&metav1.Duration{Duration: 10 * time.Second}))
	// The template is a LabRun spec and gets a LabRun's defaults.
	g.Expect(ls.Spec.Template.Spec.Target.Port).To(BeEquivalentTo(80))
	g.Expect(ls.Spec.Template.Spec.Mesh.RootNamespace).To(BeEmpty(), "no default: where the mesh lives is the operator's configuration")
	g.Expect(ls.Spec.Trigger.MinInterval).To(Equal(&metav1.Duration{Duration: 5 * time.Minute}))
	g.Expect(ls.Spec.Template.Spec.Mode).To(Equal(labsv1.ModeVerify))
}

func TestScheduleInvalidSpecs(t *testing.T) {
	cases := []struct {
		name, path string
		value      any
		field      string
		phrases    []string
	}{
		{"unknown concurrency policy", "concurrencyPolicy", "Sometimes", "spec.concurrencyPolicy",
			[]string{"Unsupported value", `"Forbid"`}},
		{"six cron fields", "schedule", "0 0 * * * *", "spec.schedule", []string{"five cron fields"}},
		{"four cron fields", "schedule", "0 * * *", "spec.schedule", []string{"five cron fields"}},
		{"unknown descriptor", "schedule", "@fortnightly", "spec.schedule", []string{"a descriptor"}},
		{"@every without a duration", "schedule", "@every soon", "spec.schedule", []string{"@every <duration>"}},
		{"empty schedule", "schedule", "", "spec.schedule", []string{"at least 1 chars"}},
		{"negative history", "successfulRunsHistoryLimit", int64(-1), "spec.successfulRunsHistoryLimit",
			[]string{"greater than or equal to 0"}},
		{"negative starting deadline", "startingDeadlineSeconds", int64(-5), "spec.startingDeadlineSeconds",
			[]string{"greater than or equal to 0"}},
		{"debounce too long", "trigger.debounce", "2h", "spec.trigger.debounce", []string{"at most 1h"}},
		{"debounce not a duration", "trigger.debounce", "soon", "spec.trigger.debounce", []string{"should match"}},
		{"a template the LabRun would refuse", "template.spec.labs", list("mtls", "mtls"), "spec.template.spec.labs",
			[]string{"must not name a lab twice"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := scheduleSpec()
			set(spec, tc.path, tc.value)
			err := k8s.Create(context.Background(), newSchedule(objectName("ls-invalid", i, tc.name), spec))
			expectInvalid(t, err, tc.field, tc.phrases...)
		})
	}
	t.Run("a time zone both in timeZone and in the schedule", func(t *testing.T) {
		spec := scheduleSpec()
		set(spec, "schedule", "CRON_TZ=Europe/Berlin 0 3 * * *")
		set(spec, "timeZone", "Europe/Berlin")
		err := k8s.Create(context.Background(), newSchedule("ls-invalid-tz-twice", spec))
		expectInvalid(t, err, "spec", "set the time zone in timeZone")
	})
}

func TestScheduleValidSpecs(t *testing.T) {
	for i, schedule := range []string{"*/5 * * * *", "0 3 * * 1-5", "@hourly", "@every 90s", "@every 1h30m",
		"CRON_TZ=Asia/Seoul 0 9 * * *", " 0  3 * * * "} {
		t.Run(schedule, func(t *testing.T) {
			spec := scheduleSpec()
			set(spec, "schedule", schedule)
			NewWithT(t).Expect(k8s.Create(context.Background(), newSchedule(objectName("ls-valid", i, schedule), spec))).
				To(Succeed())
		})
	}
}

func TestScheduleNamesAndColumns(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "labschedules.labs.ambientlab.io"}, crd)).To(Succeed())
	g.Expect(crd.Spec.Names.ShortNames).To(Equal([]string{"ls"}))
	g.Expect(crd.Spec.Names.Categories).To(Equal([]string{"labs"}))
	g.Expect(crd.Spec.Versions).To(HaveLen(1))
	g.Expect(crd.Spec.Versions[0].Subresources.Status).NotTo(BeNil(), "status subresource")

	g.Expect(k8s.Create(ctx, newSchedule("ls-columns", scheduleSpec()))).To(Succeed())
	ls := &labsv1.LabSchedule{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ls-columns"}, ls)).To(Succeed())
	success := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	ls.Status = labsv1.LabScheduleStatus{Active: []string{"ls-columns-1"}, LastSuccessfulTime: &success,
		LastRun: &labsv1.RunSummary{Name: "ls-columns-0", Phase: labsv1.PhaseFailed}}
	meta.SetStatusCondition(&ls.Status.Conditions, metav1.Condition{Type: labsv1.ConditionReady,
		Status: metav1.ConditionFalse, Reason: "LastRunFailed", Message: "failed", LastTransitionTime: success})
	g.Expect(k8s.Status().Update(ctx, ls)).To(Succeed())

	var table metav1.Table
	g.Expect(getJSON(t, "/apis/labs.ambientlab.io/v1alpha1/namespaces/"+ns+"/labschedules/ls-columns?includeObject=None",
		"application/json;as=Table;v=v1;g=meta.k8s.io", &table)).To(Succeed())
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	g.Expect(names).To(Equal([]string{"Name", "Schedule", "Mode", "Suspend", "Active", "Last Run", "Last Success",
		"Ready", "Age"}))
	g.Expect(table.ColumnDefinitions[4].Priority).To(BeEquivalentTo(1), "Active is a wide column")
	cells := table.Rows[0].Cells
	g.Expect(cells[1]).To(Equal("@every 5m"))
	g.Expect(cells[2]).To(Equal("Verify"))
	g.Expect(cells[4]).To(ContainSubstring("ls-columns-1"), "active runs")
	g.Expect(cells[5]).To(Equal("Failed"))
	g.Expect(cells[6]).NotTo(BeEmpty())
	g.Expect(cells[7]).To(Equal("False"))
}
