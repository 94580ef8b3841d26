package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

// PolicyReportGVK is the wg-policy PolicyReport version Kyverno's Policy Reporter reads.
var PolicyReportGVK = schema.GroupVersionKind{Group: "wgpolicyk8s.io", Version: "v1alpha2", Kind: "PolicyReport"}

// Names and words of the reports. Policy Reporter groups results by source, then category, then policy.
const (
	ReportSource   = "labrun-operator"
	ReportCategory = "Istio ambient security"
	// ReportPrefix starts the name of every report the operator writes; config/admission's manager-limits lets
	// the manager write no other PolicyReport.
	ReportPrefix = "labrun-"
	// labelManagedBy marks the reports the operator writes, for people and selectors.
	labelManagedBy = "app.kubernetes.io/managed-by"
	reportOwner    = "labrun-operator"
)

// PolicyReportReconciler writes one wgpolicyk8s.io PolicyReport per LabRun, a result per judged step, when the
// PolicyReport API is served. The report is derived from the run's status, which only the manager writes
// (config/admission's status-writes), so it carries the same trust; anyone else's edit to it is undone at once
// (the reconciler watches the reports).
//
// The API may appear after the manager started (Kyverno or Policy Reporter installed later): a poller looks it
// up through the RESTMapper, which asks discovery again for a group it does not know yet, and once it is served
// wakes every run, so no restart is needed. Until then a run's events cost nothing.
type PolicyReportReconciler struct {
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
func (r *PolicyReportReconciler) SetupWithManager(mgr ctrl.Manager) error {
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
func (r *PolicyReportReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.served.Load() {
		return ctrl.Result{}, nil
	}
	run := &labsv1.LabRun{}
	if err := r.Get(ctx, req.NamespacedName, run); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !run.DeletionTimestamp.IsZero() || run.Spec.DryRun || len(judgedSteps(run)) == 0 {
		return ctrl.Result{}, nil
	}
	report, err := r.report(run)
	if err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Applying the PolicyReport", "policyReport", report.GetName())
	// Server-side apply with force: a field someone else changed is taken back; an unchanged report is not
	// written (the API server drops a no-op apply).
	err = r.Apply(ctx, client.ApplyConfigurationFromUnstructured(report), client.FieldOwner(reportOwner), client.ForceOwnership)
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil // the CRD was removed meanwhile
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("applying PolicyReport %s/%s of LabRun %s: %w", report.GetNamespace(),
			report.GetName(), run.Name, err)
	}
	return ctrl.Result{}, nil
}

// apiServed tells whether the PolicyReport API is served; while it is missing each call costs one discovery
// request.
func (r *PolicyReportReconciler) apiServed() (bool, error) {
	_, err := r.Mapper.RESTMapping(PolicyReportGVK.GroupKind(), PolicyReportGVK.Version)
	if meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up the %s API: %w", PolicyReportGVK.GroupVersion(), err)
	}
	return true, nil
}

// watchReports watches the metadata of the PolicyReports (not their content: Kyverno may keep one per resource)
// and reacts to those named like the operator's, so that an edit or deletion by someone else is undone.
func (r *PolicyReportReconciler) watchReports(ctx context.Context) error {
	reports := &metav1.PartialObjectMetadata{}
	reports.SetGroupVersionKind(PolicyReportGVK)
	src := source.Kind[client.Object](r.mgr.GetCache(), reports, handler.EnqueueRequestsFromMapFunc(reportRuns),
		predicate.NewPredicateFuncs(func(o client.Object) bool { return strings.HasPrefix(o.GetName(), ReportPrefix) }))
	if err := r.controller.Watch(src); err != nil {
		return fmt.Errorf("watching PolicyReports: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Watching PolicyReports: the API is served")
	return nil
}

// reportRuns names the run a report belongs to: its controller owner, and the run its name names (labrun-<run>),
// so that a report someone stripped of its owner, or edited before the watch had listed it, is still taken back.
// A report whose name was shortened (ReportName) is found through its owner only.
func reportRuns(_ context.Context, report client.Object) []reconcile.Request {
	names := map[string]bool{strings.TrimPrefix(report.GetName(), ReportPrefix): true}
	if owner := metav1.GetControllerOf(report); owner != nil && owner.Kind == "LabRun" &&
		strings.HasPrefix(owner.APIVersion, labsv1.GroupVersion.Group+"/") {
		names[owner.Name] = true
	}
	reqs := make([]reconcile.Request, 0, len(names))
	for name := range names {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: report.GetNamespace(), Name: name}})
	}
	return reqs
}

// pollAPI looks for the PolicyReport API every r.Poll until it is served, then watches the reports and wakes
// every run once.
func (r *PolicyReportReconciler) pollAPI(ctx context.Context) error {
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
func (r *PolicyReportReconciler) allRuns(ctx context.Context, _ client.Object) []reconcile.Request {
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
func (r *PolicyReportReconciler) report(run *labsv1.LabRun) (*unstructured.Unstructured, error) {
	u := BuildPolicyReport(run)
	if err := controllerutil.SetControllerReference(run, u, r.Scheme()); err != nil {
		return nil, fmt.Errorf("owning PolicyReport %s by LabRun %s/%s: %w", u.GetName(), run.Namespace, run.Name, err)
	}
	return u, nil
}

// BuildPolicyReport is the run's report, without its owner: one result per judged step (a step still Pending
// or Running has none yet), a summary of them, and the run as scope.
func BuildPolicyReport(run *labsv1.LabRun) *unstructured.Unstructured {
	steps := judgedSteps(run)
	results := make([]any, 0, len(steps))
	summary := map[string]any{"pass": int64(0), "fail": int64(0), "warn": int64(0), "error": int64(0), "skip": int64(0)}
	for _, st := range steps {
		res := stepResult(run, st)
		results = append(results, res)
		summary[res["result"].(string)] = summary[res["result"].(string)].(int64) + 1
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"scope": map[string]any{"apiVersion": labsv1.GroupVersion.String(), "kind": "LabRun",
			"namespace": run.Namespace, "name": run.Name, "uid": string(run.UID)},
		"results": results,
		"summary": summary,
	}}
	u.SetGroupVersionKind(PolicyReportGVK)
	u.SetNamespace(run.Namespace)
	u.SetName(ReportName(run.Name))
	u.SetLabels(map[string]string{labelManagedBy: reportOwner})
	return u
}

// ReportName is labrun-<run>, shortened with a hash when that would exceed an object name's 253 characters.
func ReportName(run string) string {
	name := ReportPrefix + run
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(run))
	return name[:253-11] + "-" + hex.EncodeToString(sum[:])[:10]
}

// judgedSteps are the steps with a verdict a PolicyReport result can carry.
func judgedSteps(run *labsv1.LabRun) []labsv1.StepResult {
	var out []labsv1.StepResult
	for _, st := range run.Status.Steps {
		if _, ok := reportResult[st.Verdict]; ok {
			out = append(out, st)
		}
	}
	return out
}

// reportResult maps a verdict to the PolicyReport result enum.
var reportResult = map[labsv1.Verdict]string{
	labsv1.VerdictPass: "pass", labsv1.VerdictFail: "fail", labsv1.VerdictError: "error", labsv1.VerdictSkipped: "skip",
}

// labSeverity: a broken protection is high; the footprint lab only measures cost.
func labSeverity(lab labsv1.LabName) string {
	if lab == labsv1.LabFootprint {
		return "info"
	}
	return "high"
}

// stepResult is one result: policy labrun-<lab>, rule <step>, and the step's facts as properties.
func stepResult(run *labsv1.LabRun, st labsv1.StepResult) map[string]any {
	res := map[string]any{
		"source":     ReportSource,
		"category":   ReportCategory,
		"policy":     ReportPrefix + string(st.Lab),
		"rule":       st.Name,
		"result":     reportResult[st.Verdict],
		"severity":   labSeverity(st.Lab),
		"message":    firstNonEmpty(st.Message, st.Description, st.Observed),
		"properties": stepProperties(run, st),
	}
	if ts := stepTime(run, st); ts != nil {
		res["timestamp"] = map[string]any{"seconds": ts.Unix(), "nanos": int64(ts.Nanosecond())}
	}
	return res
}

// stepProperties are the facts Policy Reporter shows next to a result; empty ones are left out.
func stepProperties(run *labsv1.LabRun, st labsv1.StepResult) map[string]any {
	props := map[string]any{}
	for k, v := range map[string]string{
		"labrun":   run.Name,
		"mode":     string(run.Spec.Mode),
		"lab":      string(st.Lab),
		"step":     st.Name,
		"expected": st.Expected,
		"observed": st.Observed,
		"change":   st.Change,
		"node":     strings.Join(failingNodes(st.Coverage), ","),
		"spiffe":   strings.Join(SPIFFEIdentities(st.Evidence), ","),
		// Where the evidence came from: the ztunnel pods whose logs the step read.
		"evidenceSources": strings.Join(sourceLines(st.EvidenceSources), ","),
	} {
		if v != "" {
			props[k] = v
		}
	}
	return props
}

// sourceLines names each ztunnel pod a step read, as the other reports do.
func sourceLines(sources []labsv1.EvidenceSource) []string {
	out := make([]string, 0, len(sources))
	for _, s := range sources {
		out = append(out, report.SourceLine(s))
	}
	return out
}

// failingNodes names, once each and in order, the nodes where a per-node step did not pass.
func failingNodes(cov []labsv1.NodeResult) []string {
	var out []string
	for _, n := range cov {
		if n.Verdict != labsv1.VerdictPass && n.Node != "" && !slices.Contains(out, n.Node) {
			out = append(out, n.Node)
		}
	}
	return out
}

// spiffeID matches a SPIFFE ID inside a log line (ztunnel writes them quoted: src.identity="spiffe://…").
var spiffeID = regexp.MustCompile(`spiffe://[A-Za-z0-9._~%!$&'()*+,;=:@/-]+`)

// SPIFFEIdentities are the distinct SPIFFE IDs in the evidence lines, in order of appearance.
func SPIFFEIdentities(evidence []string) []string {
	var out []string
	for _, line := range evidence {
		for _, id := range spiffeID.FindAllString(line, -1) {
			id = strings.TrimRight(id, `'),;`)
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// stepTime is when the step was judged: its completion, else its start, else the run's end.
func stepTime(run *labsv1.LabRun, st labsv1.StepResult) *time.Time {
	switch {
	case st.CompletionTime != nil:
		return &st.CompletionTime.Time
	case st.StartTime != nil:
		return &st.StartTime.Time
	case run.Status.CompletionTime != nil:
		return &run.Status.CompletionTime.Time
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
