// Package policyreport writes a wgpolicyk8s.io PolicyReport per LabRun (internal/report builds it) when the
// PolicyReport API is served.
package policyreport

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
)

// Reconciler writes one wgpolicyk8s.io PolicyReport per LabRun, a result per judged step, when the
// PolicyReport API is served. The report is derived from the run's status, which only the manager writes
// (config/admission's status-writes), so it carries the same trust; anyone else's edit to it is undone at once
// (the reconciler watches the reports).
//
// The API may appear after the manager started (Kyverno or Policy Reporter installed later): a poller looks it
// up through the RESTMapper, which asks discovery again for a group it does not know yet, and once it is served
// wakes every run, so no restart is needed. Until then a run's events cost nothing.
type Reconciler struct {
	client.Client
	// Mapper resolves the PolicyReport kind; controller-runtime's dynamic mapper re-reads discovery for a
	// group it does not know yet.
	Mapper meta.RESTMapper
	// Poll is how often the poller looks for the API while it is missing (default one minute).
	Poll time.Duration

	controller controller.Controller
	mgr        ctrl.Manager
	appeared   chan event.GenericEvent
	// served is set by the poller once the API is served and the reports are watched.
	served atomic.Bool
}

// +kubebuilder:rbac:groups=wgpolicyk8s.io,resources=policyreports,verbs=get;list;watch;create;update;patch;delete

// SetupWithManager watches LabRuns whose steps changed, and registers the poller that notices the PolicyReport
// API appearing. The reports themselves are watched only once their API is served.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Poll == 0 {
		r.Poll = time.Minute
	}
	if r.Mapper == nil {
		r.Mapper = mgr.GetRESTMapper()
	}
	r.mgr = mgr
	r.appeared = make(chan event.GenericEvent)
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&labsv1.LabRun{}, builder.WithPredicates(stepsChanged())).
		WatchesRawSource(source.Channel(r.appeared, handler.EnqueueRequestsFromMapFunc(r.allRuns))).
		Named("policyreport").
		Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	return mgr.Add(manager.RunnableFunc(r.pollAPI))
}

// stepsChanged lets through creations, deletions and updates that changed the run's steps: the report is
// built from them alone.
func stepsChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*labsv1.LabRun)
		cur, okNew := e.ObjectNew.(*labsv1.LabRun)
		return !okOld || !okNew || !equality.Semantic.DeepEqual(old.Status.Steps, cur.Status.Steps)
	}}
}

// Reconcile applies the run's report. Without the API it does nothing: the poller wakes the run later.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.served.Load() {
		return ctrl.Result{}, nil
	}
	run := &labsv1.LabRun{}
	if err := r.Get(ctx, req.NamespacedName, run); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !run.DeletionTimestamp.IsZero() || run.Spec.DryRun || len(report.JudgedSteps(run)) == 0 {
		return ctrl.Result{}, nil
	}
	rep, err := r.report(run)
	if err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Applying the PolicyReport", "policyReport", rep.GetName())
	// Server-side apply with force: a field someone else changed is taken back; an unchanged report is not
	// written (the API server drops a no-op apply).
	err = r.Apply(ctx, client.ApplyConfigurationFromUnstructured(rep), client.FieldOwner(report.ReportOwner), client.ForceOwnership)
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil // the CRD was removed meanwhile
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("applying PolicyReport %s/%s of LabRun %s: %w", rep.GetNamespace(),
			rep.GetName(), run.Name, err)
	}
	return ctrl.Result{}, nil
}

// apiServed tells whether the PolicyReport API is served; while it is missing each call costs one discovery
// request.
func (r *Reconciler) apiServed() (bool, error) {
	_, err := r.Mapper.RESTMapping(report.PolicyReportGVK.GroupKind(), report.PolicyReportGVK.Version)
	if meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up the %s API: %w", report.PolicyReportGVK.GroupVersion(), err)
	}
	return true, nil
}

// watchReports watches the metadata of the PolicyReports (not their content: Kyverno may keep one per resource)
// and reacts to those named like the operator's, so that an edit or deletion by someone else is undone.
func (r *Reconciler) watchReports(ctx context.Context) error {
	reports := &metav1.PartialObjectMetadata{}
	reports.SetGroupVersionKind(report.PolicyReportGVK)
	src := source.Kind[client.Object](r.mgr.GetCache(), reports, handler.EnqueueRequestsFromMapFunc(reportRuns),
		predicate.NewPredicateFuncs(func(o client.Object) bool { return strings.HasPrefix(o.GetName(), report.ReportPrefix) }))
	if err := r.controller.Watch(src); err != nil {
		return fmt.Errorf("watching PolicyReports: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Watching PolicyReports: the API is served")
	return nil
}

// reportRuns names the run a report belongs to: its controller owner, and the run its name names (labrun-<run>),
// so that a report someone stripped of its owner, or edited before the watch had listed it, is still taken back.
// A report whose name was shortened (ReportName) is found through its owner only.
func reportRuns(_ context.Context, rep client.Object) []reconcile.Request {
	names := map[string]bool{strings.TrimPrefix(rep.GetName(), report.ReportPrefix): true}
	if owner := metav1.GetControllerOf(rep); owner != nil && owner.Kind == "LabRun" &&
		strings.HasPrefix(owner.APIVersion, labsv1.GroupVersion.Group+"/") {
		names[owner.Name] = true
	}
	reqs := make([]reconcile.Request, 0, len(names))
	for name := range names {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rep.GetNamespace(), Name: name}})
	}
	return reqs
}

// pollAPI looks for the PolicyReport API every r.Poll until it is served, then watches the reports and wakes
// every run once.
func (r *Reconciler) pollAPI(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("policyreport")
	tick := time.NewTicker(r.Poll)
	defer tick.Stop()
	for {
		served, err := r.apiServed()
		if err == nil && served {
			err = r.watchReports(ctx)
		}
		if err != nil {
			log.Error(err, "Looking for the PolicyReport API")
		}
		if err == nil && served {
			r.served.Store(true)
			select {
			case r.appeared <- event.GenericEvent{Object: &labsv1.LabRun{}}:
			case <-ctx.Done():
			}
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// allRuns names every LabRun: the API just appeared, so each may lack its report.
func (r *Reconciler) allRuns(ctx context.Context, _ client.Object) []reconcile.Request {
	runs := &labsv1.LabRunList{}
	if err := r.List(ctx, runs); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing LabRuns for their PolicyReports")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(runs.Items))
	for _, run := range runs.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: run.Namespace, Name: run.Name}})
	}
	return reqs
}

// report builds the run's PolicyReport, owned by the run.
func (r *Reconciler) report(run *labsv1.LabRun) (*unstructured.Unstructured, error) {
	u := report.BuildPolicyReport(run)
	if err := controllerutil.SetControllerReference(run, u, r.Scheme()); err != nil {
		return nil, fmt.Errorf("owning PolicyReport %s by LabRun %s/%s: %w", u.GetName(), run.Namespace, run.Name, err)
	}
	return u, nil
}
