package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// stepEnv is the controller's side of steps.Env: the services step executors work through, each the
// reconciler's own (the files named below hold them). An executor holds only the part of it its kind needs.
type stepEnv struct{ r *LabRunReconciler }

var _ steps.Env = stepEnv{}

// Clock (labrun_controller.go, labrun_steps.go).

func (e stepEnv) Now() time.Time { return e.r.now() }
func (e stepEnv) DeadlineAfter(run *labsv1.LabRun, d time.Duration) time.Duration {
	return e.r.deadlineAfter(run, d)
}
func (e stepEnv) EvidenceWait() time.Duration { return e.r.EvidenceWait }

// Target (labrun_target.go, labrun_mesh.go).

func (e stepEnv) TargetPods(ctx context.Context, run *labsv1.LabRun) (*corev1.Service, []corev1.Pod, error) {
	return e.r.targetPods(ctx, run)
}
func (e stepEnv) TargetModes(ctx context.Context, run *labsv1.LabRun) ([]steps.PodMode, error) {
	return e.r.targetModes(ctx, run)
}

// Observers (labrun_observe.go, labrun_fleet.go, labrun_probe.go).

func (e stepEnv) EnsureObserver(ctx context.Context, run *labsv1.LabRun, step labs.Step) (*corev1.Pod, string, error) {
	return e.r.ensureObserver(ctx, run, step)
}
func (e stepEnv) ObserverLog(ctx context.Context, pod *corev1.Pod, since time.Time) ([]byte, error) {
	return e.r.observerLog(ctx, pod, since)
}
func (e stepEnv) WaitObserver(run *labsv1.LabRun, what string, w steps.Window) error {
	return e.r.waitObserver(run, what, w)
}
func (e stepEnv) Audit(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) (steps.Outcome, error) {
	return e.r.audit(ctx, run, st, step)
}
func (e stepEnv) ObserveFleet(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) (steps.Outcome, error) {
	return e.r.observeFleet(ctx, run, st, step)
}
func (e stepEnv) Denial(ctx context.Context, run *labsv1.LabRun, since time.Time, pod *corev1.Pod, dst []corev1.Pod) (steps.Denial, error) {
	return e.r.denial(ctx, run, since, pod, dst)
}
func (e stepEnv) DeniedAsExpected(run *labsv1.LabRun, denier labs.Denier, who string) bool {
	return e.r.deniedAsExpected(run, denier, who)
}

// Evidence (labrun_evidence.go, labrun_sources.go).

func (e stepEnv) Criteria(ctx context.Context, run *labsv1.LabRun, lab labsv1.LabName, ev *labs.Evidence, since time.Time) (ztunnel.Criteria, error) {
	return e.r.criteria(ctx, run, lab, ev, since)
}
func (e stepEnv) ReadZtunnel(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, since time.Time, enough func([]ztunnel.Entry) bool) ([]ztunnel.Entry, error) {
	// The target's nodes first: they log the inbound lines, and a node's observers' outbound lines are logged on
	// every node that sends.
	return e.r.readZtunnel(ctx, run, st, since, ztunnel.Scope{Prefer: e.r.endpointNodes(ctx, run), Enough: enough})
}

// Fixtures (labrun_fixtures.go).

func (e stepEnv) CreateFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (string, error) {
	return e.r.createFixture(ctx, run, f)
}
func (e stepEnv) RemoveFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (string, bool, error) {
	return e.r.removeFixture(ctx, run, f)
}

// Footprint (labrun_footprint.go).

func (e stepEnv) NoSidecars(ctx context.Context, run *labsv1.LabRun) (labsv1.Verdict, string, string, error) {
	return e.r.noSidecars(ctx, run)
}
func (e stepEnv) ZtunnelUsage(ctx context.Context, run *labsv1.LabRun) (labsv1.Verdict, string, string, error) {
	return e.r.ztunnelUsage(ctx, run)
}
func (e stepEnv) SidecarEstimate(ctx context.Context, run *labsv1.LabRun) (labsv1.Verdict, string, string, error) {
	return e.r.sidecarEstimate(ctx, run)
}

// Mesh (labrun_mesh.go, labrun_scope.go, restore.go).

func (e stepEnv) Writer() client.Client { return e.r.Client }
func (e stepEnv) Records() mesh.Store   { return e.r.Records }
func (e stepEnv) RecordOrNew(ctx context.Context, run *labsv1.LabRun) (*mesh.Record, error) {
	return e.r.recordOrNew(ctx, run)
}
func (e stepEnv) PolicyRef(run *labsv1.LabRun) mesh.Ref     { return policyRef(run) }
func (e stepEnv) PermissiveRef(run *labsv1.LabRun) mesh.Ref { return e.r.permissiveRef(run) }
func (e stepEnv) PrepareEntry(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, ref mesh.Ref, create bool) (labsv1.JournalEntry, string, error) {
	return e.r.prepareEntry(ctx, run, rec, ref, create)
}
func (e stepEnv) PermissiveBlocked(ctx context.Context, run *labsv1.LabRun, en labsv1.JournalEntry) (string, error) {
	return e.r.permissiveBlocked(ctx, run, en)
}
func (e stepEnv) CountWeakened(ctx context.Context, run *labsv1.LabRun, en labsv1.JournalEntry) {
	e.r.countWeakened(ctx, run, en)
}
func (e stepEnv) Journal(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, en labsv1.JournalEntry) error {
	return e.r.journal(ctx, run, rec, en)
}
func (e stepEnv) Owner(run *labsv1.LabRun, rec *mesh.Record) mesh.Owner { return e.r.owner(run, rec) }
func (e stepEnv) Interference(ctx context.Context, run *labsv1.LabRun) string {
	return e.r.interference(ctx, run)
}
func (e stepEnv) MarkRestored(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, en *labsv1.JournalEntry) error {
	return e.r.markRestored(ctx, run, rec, en)
}
func (e stepEnv) CloseExposureAt(run *labsv1.LabRun, at time.Time) { e.r.closeExposureAt(run, at) }
func (e stepEnv) Fault(point string) error                         { return e.r.fault(point) }
func (e stepEnv) Event(run *labsv1.LabRun, typ, reason, action, format string, args ...any) {
	e.r.event(run, typ, reason, action, format, args...)
}
