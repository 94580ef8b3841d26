package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// Probe steps read observers: one probe pod per caller and destination, started before anything is weakened,
// that keeps calling and logs every attempt with its time (`manager probe --observe`). A step judges the
// attempts in its own time range from the pod's log (pods/log; the pod has no API access and nothing is
// exec'd). So no pod starts inside a weakened window, and a step that observes a change sees it take effect:
// its settle is the real propagation time, and an expected outcome seen before the change is a finding.

// observerInterval paces an observer's attempts: how soon after a change it can see it.
const observerInterval = 100 * time.Millisecond

// observerPoll is how often a waiting step reads its observer's log again (a log is read, not watched).
const observerPoll = 50 * time.Millisecond

// observer is one caller calling one destination for the whole run; with a node, one of a caller's per-node
// observers, pinned there and calling every endpoint of the target in turn (a per-node step's).
type observer struct {
	caller    labs.Caller
	bystander bool
	node      string
}

func observerOf(s labs.Step) observer { return observer{caller: s.Caller, bystander: s.Bystander} }

// key names what the observer watches; a caller's per-node observers share it.
func (o observer) key() string {
	if isAuditCaller(o.caller) {
		// An audit caller names a ServiceAccount a policy names: hashed into a label value.
		o.caller = labs.Caller("audit-" + hash(string(o.caller)))
	}
	switch {
	case o.bystander:
		return string(o.caller) + "-bystander"
	case o.node != "":
		return string(o.caller) + "-nodes"
	}
	return string(o.caller) + "-target"
}

// observerPodName: a per-node observer's name is its caller's prefix (observerPrefix) and the node's hash. k is
// whose observers they are (observerKeeper): the run's, or its schedule's warm ones.
func observerPodName(k keeper, o observer) string {
	if o.node != "" {
		return observerPrefix(k, o) + hash(o.node)[:6]
	}
	return shortName(k.name, 40) + observerInfix + hash(k.uid+"/"+o.key())
}

// observerPrefix begins the names of a caller's per-node observers, which ztunnel logs as src.workload.
func observerPrefix(k keeper, o observer) string {
	return shortName(k.name, 40) + observerInfix + hash(k.uid+"/"+o.key()) + "-"
}

// observerKeeper is whose observer o is: a per-node observer is the keeper's (warm, for a schedule's run), any
// other the run's own.
func (r *LabRunReconciler) observerKeeper(run *labsv1.LabRun, o observer) keeper {
	if o.node != "" && !isAuditCaller(o.caller) {
		return r.keeper(run)
	}
	return coldKeeper(run)
}

// observerName is the name of the run's observer o.
func (r *LabRunReconciler) observerName(run *labsv1.LabRun, o observer) string {
	return observerPodName(r.observerKeeper(run, o), o)
}

// observerInfix is in every observer pod's name, which ztunnel logs as src.workload.
const observerInfix = "-obs-"

// ObserverLine tells whether a ztunnel line is about a connection from an observer: the only lines a step looks
// for (evidence and denials always name the observer, or its prefix, as src.workload), so the log reader keeps no
// other (ztunnel.LogReader.Keep), however busy the node.
func ObserverLine(e ztunnel.Entry) bool {
	return strings.Contains(e.Fields.Get(ztunnel.FieldSrcWorkload), observerInfix)
}

// bystander is the URL of another enrolled workload's Service in the target namespace that the run does not
// weaken (bystanderService), or the reason there is none.
func (r *LabRunReconciler) bystander(ctx context.Context, run *labsv1.LabRun) (url, reason string, err error) {
	svc, reason, err := r.bystanderService(ctx, run)
	if svc == nil {
		return "", reason, err
	}
	return fmt.Sprintf("http://%s.%s.svc:%d%s", svc.Name, svc.Namespace, svc.Spec.Ports[0].Port, run.Spec.Target.Path), "", nil
}

// bystanderService is the first Service by name in the target namespace whose pods are not the target's and
// that has pods. With Namespace or Mesh scope there is none (the namespace, or the mesh, is weakened as a
// whole): reason says why.
func (r *LabRunReconciler) bystanderService(ctx context.Context, run *labsv1.LabRun) (svc *corev1.Service, reason string, err error) {
	if s := scopeOf(run); s != labsv1.ScopeWorkload {
		return nil, fmt.Sprintf("scope %s weakens every workload of the %s: no enrolled bystander stays STRICT",
			s, map[labsv1.Scope]string{labsv1.ScopeNamespace: "namespace", labsv1.ScopeMesh: "mesh"}[s]), nil
	}
	_, targets, err := r.targetPods(ctx, run)
	if err != nil {
		return nil, "", err
	}
	svcs := &corev1.ServiceList{}
	if err := r.APIReader.List(ctx, svcs, client.InNamespace(run.TargetNamespace())); err != nil {
		return nil, "", fmt.Errorf("listing Services: %w", err)
	}
	sort.Slice(svcs.Items, func(i, j int) bool { return svcs.Items[i].Name < svcs.Items[j].Name })
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		// An ExternalName Service would send the probe out of the cluster: never a bystander.
		if svc.Name == run.Spec.Target.Service || svc.Spec.Type == corev1.ServiceTypeExternalName ||
			len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		if slices.ContainsFunc(targets, func(p corev1.Pod) bool { return sel.Matches(labels.Set(p.Labels)) }) {
			continue
		}
		pods, err := r.appPods(ctx, client.InNamespace(svc.Namespace), client.MatchingLabels(svc.Spec.Selector))
		if err != nil {
			return nil, "", err
		}
		if len(pods) > 0 {
			return svc, "", nil
		}
	}
	return nil, "no other Service with pods in namespace " + run.TargetNamespace() + " to call", nil
}

// observerBudget bounds an observer's life: every step that is left, each within its own budget.
func (r *LabRunReconciler) observerBudget(run *labsv1.LabRun) time.Duration {
	n := 0
	for _, st := range run.Status.Steps {
		if !terminal(st.Verdict) {
			n++
		}
	}
	return min(time.Duration(max(n, 1))*r.stepBudget(run), 4*time.Hour-r.PodStartGrace)
}

// observerPod builds the observer; urls are the destinations it calls in turn.
func (r *LabRunReconciler) observerPod(run *labsv1.LabRun, o observer, d observerDest) *corev1.Pod {
	if k := r.observerKeeper(run, o); k.warm() {
		return r.warmPod(run, k, o, d)
	}
	urls, tolerations, interval := d.urls, d.tolerations, d.interval
	if interval <= 0 {
		interval = observerInterval
	}
	ns, sa := r.caller(run, o.caller)
	image := run.Spec.Probe.Image
	if image == "" {
		image = r.ProbeImage
	}
	return probe.Pod(probe.PodRequest{
		Name: r.observerName(run, o), Namespace: ns, ServiceAccount: sa, Image: image,
		Labels: map[string]string{
			labsv1.LabelProbe: "true", labsv1.LabelLabRun: string(run.UID), labsv1.LabelStep: "observe-" + o.key(),
		},
		Annotations: ownerAnnotation(run), NodeName: o.node, Tolerations: tolerations,
		Options: probe.Options{URL: urls[0], URLs: urls[1:], Observe: true, Timeout: run.Spec.Probe.RequestTimeout.Duration,
			Settle: r.observerBudget(run), Interval: interval},
	})
}

// ensureObserver creates the step's observer if it is missing. It returns the pod (nil while just created), or
// a reason the step cannot have one (refused for good, or no bystander to call).
func (r *LabRunReconciler) ensureObserver(ctx context.Context, run *labsv1.LabRun, step labs.Step) (*corev1.Pod, string, error) {
	o := observerOf(step)
	rec, err := r.trustedRecord(ctx, run)
	if err != nil {
		return nil, "", err
	}
	return r.ensure(ctx, run, runBook{r: r, rec: rec}, o, func() (observerDest, string, error) {
		if !o.bystander {
			return observerDest{urls: []string{targetURL(run)}}, "", nil
		}
		url, reason, err := r.bystander(ctx, run)
		return observerDest{urls: []string{url}}, reason, err
	})
}

// observerDest is what a new observer calls, and the tolerations it needs where it is pinned (and, for a warm
// observer, the UID of its node, which owns it).
type observerDest struct {
	urls        []string
	tolerations []corev1.Toleration
	nodeUID     types.UID
	// interval paces the attempts (zero: observerInterval).
	interval time.Duration
}

// ensure creates observer o if it is missing, as dest describes it (or not, for the reason dest gives), and
// records it in rec. A pod found under its name is returned only if it is the one the run created, unchanged
// (trustObserver); else the reason names the tampering.
func (r *LabRunReconciler) ensure(ctx context.Context, run *labsv1.LabRun, b observerBook, o observer,
	dest func() (observerDest, string, error)) (*corev1.Pod, string, error) {
	pod, reason, missing, err := r.checkObserver(ctx, run, b, o)
	if !missing || err != nil {
		return pod, reason, err
	}
	created, reason, err := r.newObserver(ctx, run, o, dest)
	if created == nil || err != nil {
		return nil, reason, err
	}
	return nil, "", b.put(ctx, ownRecord(created))
}

// checkObserver reads observer o: the pod when it is there and the run's own, or why it is not usable, or (missing)
// that it is to be created.
func (r *LabRunReconciler) checkObserver(ctx context.Context, run *labsv1.LabRun, b observerBook, o observer) (pod *corev1.Pod, reason string, missing bool, err error) {
	pod, reason, err = r.readObserver(ctx, run, b, o)
	if apierrors.IsNotFound(err) {
		return nil, "", true, nil
	}
	return pod, reason, false, err
}

// readObserver is checkObserver's reading: a NotFound error when there is no pod under o's name.
func (r *LabRunReconciler) readObserver(ctx context.Context, run *labsv1.LabRun, b observerBook, o observer) (*corev1.Pod, string, error) {
	ns, _ := r.caller(run, o.caller)
	pod := &corev1.Pod{}
	err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: r.observerName(run, o)}, pod)
	if err == nil {
		trusted, reason, err := r.trustObserver(ctx, b, pod)
		if trusted == nil {
			return nil, reason, err
		}
		if k := r.observerKeeper(run, o); k.warm() && probe.Digest(r.warmPod(run, k, o, observerDest{})) != b.lookup(pod.Namespace, pod.Name).Digest {
			// The schedule's template changed (image, timeout, identity): a new observer replaces the old one.
			ctrl.LoggerFrom(ctx).Info("Replacing a warm observer for a changed template", "pod", klog.KObj(pod))
			return nil, "", r.replaceObserver(ctx, b, pod)
		}
	}
	if err == nil && pod.Status.Phase == corev1.PodFailed && pod.Status.StartTime == nil {
		// kubelet refused it before starting it (its admission: an untolerated NoExecute taint, no room, …). A
		// copy would be refused alike; the step ends with the node's reason rather than replace it until its
		// deadline.
		return nil, fmt.Sprintf("node %s refused observer pod %s: %s: %s", pod.Spec.NodeName, pod.Name,
			pod.Status.Reason, pod.Status.Message), nil
	}
	if err == nil && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
		// Its budget ran out (a run queued for long): a fresh observer replaces it, and a window waits until
		// that one has been watching.
		ctrl.LoggerFrom(ctx).Info("Replacing an observer that ended", "pod", klog.KObj(pod), "phase", pod.Status.Phase)
		return nil, "", r.replaceObserver(ctx, b, pod)
	}
	if err == nil {
		return pod, "", nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("reading observer pod: %w", err)
	}
	return nil, "", err
}

// newObserver creates observer o as dest describes it, and returns the pod created (nil when it was not: dest's
// reason, a refusal for good, a ServiceAccount not admitted yet, or one created already). The caller records it.
// It writes nothing of the run's: fleets create their observers side by side, and record them one after another.
func (r *LabRunReconciler) newObserver(ctx context.Context, run *labsv1.LabRun, o observer,
	dest func() (observerDest, string, error)) (*corev1.Pod, string, error) {
	d, reason, err := dest()
	if err != nil || reason != "" {
		return nil, reason, err
	}
	pod := r.observerPod(run, o, d)
	ctrl.LoggerFrom(ctx).Info("Creating observer pod", "pod", klog.KObj(pod), "urls", d.urls, "node", o.node)
	if err := r.Create(ctx, pod); err != nil {
		switch {
		case apierrors.IsAlreadyExists(err):
			return nil, "", nil // the next pass reads it, and trusts it only if it is in the record
		case awaitingServiceAccount(err):
			return nil, "", nil // a ServiceAccount just created is not admitted yet: the step's budget bounds this
		case refusedForGood(err):
			return nil, "probe pod refused: " + err.Error(), nil
		}
		return nil, "", fmt.Errorf("creating observer pod: %w", err)
	}
	return pod, "", nil
}

// startObservers creates every observer the run's remaining probe steps need, at once, so that they start
// together and before any change (fixtures first: the non-mesh namespace and the attacker ServiceAccount). It
// reports the observers not running yet, and why an observer cannot run (refused, tampered with): no window may
// open then.
func (r *LabRunReconciler) startObservers(ctx context.Context, run *labsv1.LabRun, plan []labs.Step) (starting, blocked []string, err error) {
	for _, step := range neededObservers(run, plan) {
		if needsFixture(plan, run, step) {
			continue
		}
		if steps.PerNode(run, step) {
			pods, _, err := r.ensureFleet(ctx, run, step)
			if err != nil {
				return nil, nil, err
			}
			for node, pod := range pods {
				if pod == nil || (pod.Status.Phase == corev1.PodPending && probe.Stuck(pod) == "") {
					starting = append(starting, observerOf(step).key()+"@"+node)
				}
			}
			continue
		}
		pod, reason, err := r.ensureObserver(ctx, run, step)
		if err != nil {
			return nil, nil, err
		}
		if reason == "" && pod != nil && probe.Stuck(pod) != "" {
			reason = "observer pod " + klog.KObj(pod).String() + " cannot start: " + probe.Stuck(pod)
		}
		if reason != "" && steps.BlocksWindow(step, reason) {
			blocked = append(blocked, observerOf(step).key()+": "+reason)
		}
		if reason == "" && (pod == nil || pod.Status.Phase == corev1.PodPending) {
			starting = append(starting, observerOf(step).key())
		}
	}
	return starting, blocked, nil
}

// observersWatching reports the observers the remaining probe steps need that have not been watching long
// enough for a window to open: each must have logged an attempt at least twice the clock tolerance ago, so that
// what it saw before a change is known to be from before it.
func (r *LabRunReconciler) observersWatching(ctx context.Context, run *labsv1.LabRun, plan []labs.Step) ([]string, error) {
	var waiting []string
	since := r.now().Add(-2 * steps.ClockTolerance)
	rec, err := r.trustedRecord(ctx, run)
	if err != nil {
		return nil, err
	}
	for _, step := range neededObservers(run, plan) {
		if steps.PerNode(run, step) {
			continue // Verify mode: no window waits for them
		}
		o := observerOf(step)
		ns, _ := r.caller(run, o.caller)
		pod := &corev1.Pod{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: r.observerName(run, o)}, pod); err != nil {
			if apierrors.IsNotFound(err) {
				continue // refused or not needed: its steps say so
			}
			return nil, err
		}
		if trusted, _, err := r.trustObserver(ctx, runBook{r: r, rec: rec}, pod); trusted == nil || err != nil {
			// Not the run's own (startObservers names the tampering) or being replaced: not watching.
			if err != nil {
				return nil, err
			}
			waiting = append(waiting, o.key())
			continue
		}
		if pod.Status.Phase != corev1.PodRunning {
			continue
		}
		raw, err := r.observerLog(ctx, pod, time.Time{})
		if err != nil {
			return nil, fmt.Errorf("reading observer log: %w", err)
		}
		if a := probe.ParseAttempts(raw); len(a) == 0 || a[0].Time.After(since) {
			waiting = append(waiting, o.key())
		}
	}
	return waiting, nil
}

// neededObservers is, for each observer the run's remaining probe steps read, the first such step.
func neededObservers(run *labsv1.LabRun, plan []labs.Step) []labs.Step {
	var out []labs.Step
	seen := map[string]bool{}
	for i, step := range plan {
		if step.Kind == labs.KindProbe && !terminal(run.Status.Steps[i].Verdict) && !seen[observerKey(run, step)] {
			seen[observerKey(run, step)] = true
			out = append(out, step)
		}
	}
	return out
}

// needsFixture: the step's caller needs a fixture that is not created yet.
func needsFixture(plan []labs.Step, run *labsv1.LabRun, step labs.Step) bool {
	want := map[labs.Caller]labs.Fixture{labs.CallerNonMesh: labs.FixtureNonMeshNamespace, labs.CallerAttacker: labs.FixtureAttacker}[step.Caller]
	if want == "" {
		return false
	}
	for i, s := range plan {
		if s.Kind == labs.KindCreateFixture && s.Fixture == want && run.Status.Steps[i].Verdict != labsv1.VerdictPass {
			return true
		}
	}
	return false
}

// retireWithin bounds the deletes of a fleet retired beside the run's steps.
const retireWithin = 2 * time.Minute

// retireObservers deletes the observers no remaining step needs.
func (r *LabRunReconciler) retireObservers(ctx context.Context, run *labsv1.LabRun, plan []labs.Step) error {
	needed, all := map[string]bool{}, map[string]labs.Step{}
	for _, step := range neededObservers(run, plan) {
		needed[observerKey(run, step)] = true
	}
	for _, step := range plan {
		if step.Kind == labs.KindProbe {
			all[observerKey(run, step)] = step
		}
	}
	for key, step := range all {
		if needed[key] {
			continue
		}
		ns, _ := r.caller(run, step.Caller)
		if k := r.keeper(run); k.warm() && steps.PerNode(run, step) {
			// A schedule's observers stay; they stop calling (their arm goes) until its next run.
			if err := r.disarm(ctx, run, ns, mesh.ArmName(k.uid, key)); err != nil {
				return err
			}
			continue
		}
		if steps.PerNode(run, step) {
			memo := string(run.UID) + "/retired/" + key
			if _, done := r.once.LoadOrStore(memo, true); done {
				continue
			}
			// A fleet is one pod per node: its deletes go on beside the run's next steps, which need none of
			// them. Any it leaves (a failed delete, a manager that stopped) the run's cleanup deletes, as
			// every probe pod of the run.
			go func(ctx context.Context, run *labsv1.LabRun) {
				ctx, cancel := context.WithTimeout(ctx, retireWithin)
				defer cancel()
				if err := r.retireFleet(ctx, run, ns, key); err != nil {
					ctrl.LoggerFrom(ctx).Info("Retiring observers: the run's cleanup deletes what is left", "observers", key, "reason", err.Error())
				}
			}(context.WithoutCancel(ctx), run.DeepCopy())
			continue
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: r.observerName(run, observerOf(step))}}
		if err := r.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting observer pod %s: %w", klog.KObj(pod), err)
		}
	}
	return nil
}

// podLogReader is a LogSource that can read a pod it is handed: keyed by the pod's UID, it fetches only what the
// pod logged since its last read (ztunnel.LogReader), and never mixes in the log of a pod that had the name before.
type podLogReader interface {
	PodLogOf(ctx context.Context, pod *corev1.Pod, since time.Time) ([]byte, error)
}

// observerLog is an observer pod's log since the given time.
func (r *LabRunReconciler) observerLog(ctx context.Context, pod *corev1.Pod, since time.Time) ([]byte, error) {
	if p, ok := r.Logs.(podLogReader); ok {
		return p.PodLogOf(ctx, pod, since)
	}
	return r.Logs.PodLog(ctx, pod.Namespace, pod.Name, since)
}

// logReaders bounds how many observers' logs a pass reads side by side: a fleet step reads one per node, and one
// after another they took most of a step's time on a large cluster.
const logReaders = 8

// observerAttempts reads the observers' logs since the given time, logReaders at a time, and parses their
// attempts (in the pods' order).
func (r *LabRunReconciler) observerAttempts(ctx context.Context, pods []*corev1.Pod, since time.Time) ([][]probe.Attempt, error) {
	out := make([][]probe.Attempt, len(pods))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(logReaders)
	for i, pod := range pods {
		g.Go(func() error {
			raw, err := r.observerLog(gctx, pod, since)
			if err != nil {
				return fmt.Errorf("reading the log of observer %s on node %s: %w", klog.KObj(pod), pod.Spec.NodeName, err)
			}
			out[i] = probe.ParseAttempts(raw)
			return nil
		})
	}
	return out, g.Wait()
}

// heldAttempts is observerAttempts without a request: ok only when every observer's log was read to its end at or
// after fresh, and what the reader keeps holds it since the given time.
func (r *LabRunReconciler) heldAttempts(pods []*corev1.Pod, since, fresh time.Time) ([][]probe.Attempt, bool) {
	h, ok := r.Logs.(interface {
		PodLogHeld(pod *corev1.Pod, since, fresh time.Time) ([]byte, bool)
	})
	if !ok {
		return nil, false
	}
	out := make([][]probe.Attempt, len(pods))
	for i, pod := range pods {
		raw, ok := h.PodLogHeld(pod, since, fresh)
		if !ok {
			return nil, false
		}
		out[i] = probe.ParseAttempts(raw)
	}
	return out, true
}

// waitObserver comes back after observerPoll, or at the settle deadline if sooner.
func (r *LabRunReconciler) waitObserver(run *labsv1.LabRun, what string, w steps.Window) error {
	return steps.WaitFor(what, r.deadlineAfter(run, min(observerPoll, max(time.Until(w.SettleBy), 10*time.Millisecond))))
}

// fleetCreators bounds how many observers a fleet creates at once: a first run on a large cluster creates one per
// node and caller, and one after another they took most of its time.
const fleetCreators = 16

// ensureMany is ensure for many observers: each is read in turn, those missing are created side by side (at most
// fleetCreators at once), and what was created is recorded one after another in b. It returns, for each observer,
// its pod (nil while just created) and the reason it cannot have one.
func (r *LabRunReconciler) ensureMany(ctx context.Context, run *labsv1.LabRun, b observerBook, obs []observer,
	dest func(observer) func() (observerDest, string, error)) ([]*corev1.Pod, []string, error) {
	pods, reasons := make([]*corev1.Pod, len(obs)), make([]string, len(obs))
	var missing []int
	for i, o := range obs {
		pod, reason, miss, err := r.checkObserver(ctx, run, b, o)
		if err != nil {
			return nil, nil, err
		}
		pods[i], reasons[i] = pod, reason
		if miss {
			missing = append(missing, i)
		}
	}
	created := make([]*corev1.Pod, len(obs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fleetCreators)
	for _, i := range missing {
		g.Go(func() error {
			pod, reason, err := r.newObserver(gctx, run, obs[i], dest(obs[i]))
			created[i], reasons[i] = pod, reason
			return err
		})
	}
	err := g.Wait()
	// What the API server accepted is recorded even when another creation failed: a pod created and not recorded
	// would not be trusted, and would be replaced by the next pass.
	for _, i := range missing {
		if created[i] != nil {
			if perr := b.put(ctx, ownRecord(created[i])); perr != nil {
				return nil, nil, perr
			}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	return pods, reasons, nil
}
