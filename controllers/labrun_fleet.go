package controllers

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// Enforcement is per node: the source node's ztunnel sends (HBONE, mTLS) and the destination node's ztunnel
// enforces inbound (STRICT, AuthorizationPolicy). A Verify run therefore probes from every node that runs a ready
// ztunnel, to every ready endpoint of the target, and a failure names the node.

// observerKey names the observer (or, per node, the observers) a probe step reads.
func observerKey(run *labsv1.LabRun, step labs.Step) string {
	o := observerOf(step)
	if steps.PerNode(run, step) {
		o.node = "any"
	}
	return o.key()
}

// endpoint is one ready pod behind the target Service, on the container port behind the target port.
type endpoint struct {
	pod, node, ip string
	port          int32
}

func (e endpoint) addr() string { return net.JoinHostPort(e.ip, strconv.Itoa(int(e.port))) }

func (e endpoint) String() string { return e.pod + " (" + e.addr() + ")" }

// fleet is what a per-node step covers.
type fleet struct {
	nodes     []string   // nodes with a ready ztunnel, sorted
	endpoints []endpoint // ready target pods, by name
	// calls are the endpoints (indexes into endpoints) each node calls: all of them (Matrix), or pairs.
	calls map[string][]int
}

// url is an endpoint's URL.
func (e endpoint) url(path string) string { return "http://" + e.addr() + path }

// urls are the URLs node's observer calls in turn, in the fleet's order.
func (f fleet) urls(node, path string) []string {
	out := make([]string, 0, len(f.calls[node]))
	for _, i := range f.calls[node] {
		out = append(out, f.endpoints[i].url(path))
	}
	return out
}

// pace is how often a node's observer calls: every observerInterval on a small cluster, more slowly on a large
// one (10ms a node, at most a second): every attempt writes a ztunnel line on two nodes, and those lines are what
// a run reads, so attempts beyond what a step needs cost the manager memory and time for nothing. Never so slowly,
// though, that a node's pairs could not each show count attempts in a row within half the settle timeout.
func (f fleet) pace(settle time.Duration, count int) time.Duration {
	calls := 1
	for _, c := range f.calls {
		calls = max(calls, len(c))
	}
	p := min(time.Duration(len(f.nodes))*10*time.Millisecond, time.Second, settle/time.Duration(2*max(count, 1)*calls))
	return max(p, observerInterval)
}

// fleetCount is the most attempts in a row a per-node step of the run needs.
func fleetCount(run *labsv1.LabRun) int {
	plan, _ := planOf(run)
	n := 1
	for _, s := range plan {
		if steps.PerNode(run, s) {
			n = max(n, s.Count)
		}
	}
	return n
}

// coveragePairs picks which of n nodes call which of e endpoints so that each node calls two endpoints and each
// endpoint is called from two nodes (where there are two): node i calls endpoints i and i+1, and endpoint j is
// called from nodes j and j+1 (modulo their numbers). A node whose ztunnel fails then fails at every endpoint it
// calls while each of those endpoints answers another node, and an endpoint's node that fails does so from every
// node while each of those nodes reaches another endpoint: attribute still lays the fault at its node. That is at
// most 2(n+e) pairs instead of n·e; with one or two endpoints (or nodes), every pair.
func coveragePairs(n, e int) [][]int {
	calls := make([]map[int]bool, n)
	for i := range calls {
		calls[i] = map[int]bool{}
	}
	for i := range n {
		calls[i][i%e], calls[i][(i+1)%e] = true, true
	}
	for j := range e {
		calls[j%n][j], calls[(j+1)%n][j] = true, true
	}
	out := make([][]int, n)
	for i, m := range calls {
		for j := range e {
			if m[j] {
				out[i] = append(out[i], j)
			}
		}
	}
	return out
}

// serving: running, Ready and not being deleted.
func serving(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp.IsZero() && podReady(p)
}

// fleetOf reads the nodes with a ready ztunnel and the target's ready endpoints.
func (r *LabRunReconciler) fleetOf(ctx context.Context, run *labsv1.LabRun) (fleet, error) {
	var f fleet
	nodes, err := r.ztunnelNodes(ctx)
	if err != nil {
		return f, err
	}
	f.nodes = nodes
	svc, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return f, err
	}
	for i := range pods {
		p := &pods[i]
		if serving(p) && p.Status.PodIP != "" {
			f.endpoints = append(f.endpoints, endpoint{pod: p.Name, node: p.Spec.NodeName, ip: p.Status.PodIP,
				port: containerPort(svc, run.Spec.Target.Port, p)})
		}
	}
	sort.Slice(f.endpoints, func(i, j int) bool { return f.endpoints[i].pod < f.endpoints[j].pod })
	if len(f.nodes) > 0 && len(f.endpoints) > 0 {
		calls := coveragePairs(len(f.nodes), len(f.endpoints))
		if run.Spec.Probe.Coverage == labsv1.CoverageMatrix {
			all := make([]int, len(f.endpoints))
			for j := range all {
				all[j] = j
			}
			for i := range calls {
				calls[i] = all
			}
		}
		f.calls = map[string][]int{}
		for i, n := range f.nodes {
			f.calls[n] = calls[i]
		}
	}
	if len(f.endpoints) == 0 {
		return f, stepBlocked{fmt.Errorf("no ready endpoint backs Service %s/%s", run.TargetNamespace(), run.Spec.Target.Service)}
	}
	return f, nil
}

// ensureFleet creates the step's per-node observers that are missing: node → pod (nil while just created). A
// schedule's warm observers are then armed for this run (armFleet), and those of nodes gone from the cluster
// are deleted.
func (r *LabRunReconciler) ensureFleet(ctx context.Context, run *labsv1.LabRun, step labs.Step) (map[string]*corev1.Pod, fleet, error) {
	f, err := r.fleetOf(ctx, run)
	if err != nil {
		return nil, f, err
	}
	b, err := r.fleetBook(ctx, run)
	if err != nil {
		return nil, f, err
	}
	pods := map[string]*corev1.Pod{}
	obs := make([]observer, len(f.nodes))
	for i, node := range f.nodes {
		obs[i] = observerOf(step)
		obs[i].node = node
	}
	created, reasons, err := r.ensureMany(ctx, run, b, obs, func(o observer) func() (observerDest, string, error) {
		return func() (observerDest, string, error) {
			n, tolerations, err := r.noExecuteTolerations(ctx, o.node)
			return observerDest{urls: f.urls(o.node, run.Spec.Target.Path), tolerations: tolerations, nodeUID: n.UID,
				interval: f.pace(run.Spec.Probe.SettleTimeout.Duration, fleetCount(run))}, "", err
		}
	})
	if err != nil {
		return nil, f, err
	}
	for i, node := range f.nodes {
		if reasons[i] != "" {
			return nil, f, stepBlocked{fmt.Errorf("observer on node %s: %s", node, reasons[i])}
		}
		pods[node] = created[i]
	}
	// The containers first seen running in this pass, written once for the fleet (an unwritten one is seen again
	// next pass, as if not seen yet).
	if err := b.flush(ctx); err != nil {
		return nil, f, err
	}
	if k := r.keeper(run); k.warm() {
		key := observerKey(run, step)
		ns, _ := r.caller(run, step.Caller)
		if err := r.armFleet(ctx, run, k, key, ns, f); err != nil {
			return nil, f, err
		}
		if err := r.dropGoneNodes(ctx, b, k, key, ns, f.nodes); err != nil {
			return nil, f, err
		}
	}
	return pods, f, nil
}

// fleetBook is where the run's per-node observers are recorded: its trusted record, or its schedule's warm one.
func (r *LabRunReconciler) fleetBook(ctx context.Context, run *labsv1.LabRun) (observerBook, error) {
	if k := r.keeper(run); k.warm() {
		return r.warmBookOf(ctx, k)
	}
	rec, err := r.trustedRecord(ctx, run)
	if err != nil {
		return nil, err
	}
	return runBook{r: r, rec: rec, batch: new(bool)}, nil
}

// noExecuteTolerations tolerates the node's NoExecute taints as they are now. An observer pinned by
// spec.nodeName bypasses the scheduler, so NoSchedule taints do not keep it off a node, but kubelet still refuses
// a pod that does not tolerate the node's NoExecute taints (pkg/kubelet/lifecycle/predicate.go). ztunnel
// tolerates every taint (the Istio chart), so without these the observer could not run on a node whose ztunnel
// enforces. The taints are read from the Node, which only the cluster's administrators and kubelet write, not from
// a pod spec a tenant could shape.
func (r *LabRunReconciler) noExecuteTolerations(ctx context.Context, node string) (*corev1.Node, []corev1.Toleration, error) {
	n := &corev1.Node{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		return n, nil, fmt.Errorf("reading node %s's taints: %w", node, err)
	}
	var out []corev1.Toleration
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOpEqual, Value: t.Value,
				Effect: corev1.TaintEffectNoExecute})
		}
	}
	return n, out, nil
}

// stepBlocked is a reason a step cannot go on, as opposed to a transient error to retry.
type stepBlocked struct{ error }

// retireFleet deletes a caller's per-node observers.
func (r *LabRunReconciler) retireFleet(ctx context.Context, run *labsv1.LabRun, ns, key string) error {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(ns),
		client.MatchingLabels{labsv1.LabelLabRun: string(run.UID), labsv1.LabelStep: "observe-" + key}); err != nil {
		return fmt.Errorf("listing observer pods: %w", err)
	}
	if err := mesh.DeletePods(ctx, r.Client, pods.Items, r.retiredPod(run)); err != nil {
		return err
	}
	if _, running := r.once.Load(string(run.UID) + "/retired/" + key); !running {
		return nil // the run was cleaned up meanwhile: nothing more to remember of it
	}
	for i := range pods.Items {
		r.once.Store(string(run.UID)+"/deleted/"+string(pods.Items[i].UID), true)
	}
	return nil
}

// retiredPod tells whether this manager deleted the run's pod already (a fleet retired when no step needed it):
// the cache may list it a while longer, and deleting it again would change nothing.
func (r *LabRunReconciler) retiredPod(run *labsv1.LabRun) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool {
		_, ok := r.once.Load(string(run.UID) + "/deleted/" + string(p.UID))
		return ok
	}
}

// pair is what one source node saw calling one endpoint.
type pair struct {
	node     string
	endpoint endpoint
	j        steps.Judgement
}

// observeFleet judges a per-node step: every source node must see the expected outcome at every endpoint it calls
// (fleet.calls). When
// settle runs out first, the failures are laid at the nodes that explain them (attribute).
func (r *LabRunReconciler) observeFleet(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) (steps.Outcome, error) {
	pods, f, err := r.ensureFleet(ctx, run, step)
	if err != nil {
		// Nothing to verify, or an observer refused for good: an Error, never a Pass.
		if pe, ok := err.(stepBlocked); ok {
			return steps.Concluded(labsv1.VerdictError, "", pe.Error()), nil
		}
		return steps.Outcome{}, err
	}
	w := steps.Window{SettleBy: st.StartTime.Add(run.Spec.Probe.SettleTimeout.Duration)}
	var pairs []pair
	var waiting []string
	// A warm observer has called for earlier runs: only what it did under this run's arm counts, and nothing
	// from before the run started is read.
	warm, since := r.keeper(run).warm(), time.Time{}
	if warm && run.Status.StartTime != nil {
		since = run.Status.StartTime.Add(-steps.ClockTolerance)
	}
	var reading []string
	for _, node := range f.nodes {
		pod := pods[node]
		switch {
		case pod == nil:
			waiting = append(waiting, node)
		case probe.Stuck(pod) != "":
			return steps.Concluded(labsv1.VerdictError, "", fmt.Sprintf("observer pod on node %s cannot start: %s", node, probe.Stuck(pod))), nil
		case pod.Status.Phase == corev1.PodPending:
			waiting = append(waiting, node)
		default:
			reading = append(reading, node)
		}
	}
	if len(waiting) > 0 {
		return steps.Outcome{}, r.waitObserver(run, fmt.Sprintf("observers on nodes %v to start", waiting), w)
	}
	readPods := make([]*corev1.Pod, len(reading))
	for i, node := range reading {
		readPods[i] = pods[node]
	}
	judge := func(attempts [][]probe.Attempt) []pair {
		var pairs []pair
		for i, node := range reading {
			urls := f.urls(node, run.Spec.Target.Path)
			byURL := map[string][]probe.Attempt{}
			for _, a := range attempts[i] {
				if warm && a.Arm != string(run.UID) {
					continue // a warm observer's attempt for another run, or before this run armed it
				}
				u := a.URL
				if u == "" && len(urls) == 1 {
					u = urls[0] // one URL: attempts do not name it
				}
				byURL[u] = append(byURL[u], a)
			}
			for k, i := range f.calls[node] {
				pairs = append(pairs, pair{node: node, endpoint: f.endpoints[i],
					j: steps.Judge(byURL[urls[k]], step.Expect, max(step.Count, 1), w)})
			}
		}
		return pairs
	}
	// An earlier step of the run may have read these observers a moment ago (the same caller's client-allowed in
	// every lab): what it read within the settle timeout before this step started passes this step without
	// reading again when every pair passes on it (in Verify mode nothing changes the mesh during a run, and the
	// settle timeout is how long the run gives the mesh to show a state). Anything short of that is read again.
	if held, ok := r.heldAttempts(readPods, since, st.StartTime.Add(-run.Spec.Probe.SettleTimeout.Duration)); ok {
		pairs = judge(held)
	}
	if slices.ContainsFunc(pairs, func(p pair) bool { return !p.j.Pass }) || len(pairs) == 0 {
		attempts, err := r.observerAttempts(ctx, readPods, since)
		if err != nil {
			return steps.Outcome{}, err
		}
		pairs = judge(attempts)
	}
	failing := slices.ContainsFunc(pairs, func(p pair) bool { return !p.j.Pass })
	if failing && r.now().Before(w.SettleBy) {
		return steps.Outcome{}, r.waitObserver(run, fmt.Sprintf("every node to see %s at the endpoints it calls", step.Expect), w)
	}
	if failing {
		// A pair with no attempt at all says nothing about the mesh (a refusal is an attempt too): its observer did
		// not call that endpoint, for this run. A warm observer's arm may have been edited or not read yet; a
		// one-off run's observer was started before the endpoint came.
		for _, p := range pairs {
			if p.j.Last == nil {
				return steps.Errored(fmt.Sprintf("the observer on node %s made no attempt at endpoint %s for this run "+
					"(settle %s): nothing is known of that pair%s", p.node, p.endpoint, run.Spec.Probe.SettleTimeout.Duration,
					r.armHint(run, step))), nil
			}
		}
	}
	cov, blamed := attribute(f, pairs)
	st.Coverage = cov
	st.Attempts = 0
	for _, p := range pairs {
		st.Attempts += int32(p.j.Counted)
	}
	if failing {
		return steps.Concluded(labsv1.VerdictFail, fleetObserved(step, pairs), fmt.Sprintf(
			"Expected %s from every node and at every endpoint; %s (settle %s)", step.Expected(), blamed,
			run.Spec.Probe.SettleTimeout.Duration)), nil
	}
	msg := fmt.Sprintf("Observed %s from %d node(s) at %d endpoint(s), as expected", step.Expect, len(f.nodes), len(f.endpoints))
	if step.Denier != "" {
		return r.judgeFleetDenier(ctx, run, st, step, f, pairs, w)
	}
	return steps.Concluded(labsv1.VerdictPass, fleetObserved(step, pairs), msg), nil
}

// judgeFleetDenier passes a denied per-node step only when each endpoint's node's ztunnel logged, for this
// caller's observers, a refusal by the expected denier: the refusal is the one the lab demonstrates, on every
// node that enforces. An endpoint whose newest line names another denier (or none) fails its node.
func (r *LabRunReconciler) judgeFleetDenier(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, f fleet, pairs []pair, w steps.Window) (steps.Outcome, error) {
	since := pairs[0].j.First.Time
	for _, p := range pairs {
		if p.j.First.Time.Before(since) {
			since = p.j.First.Time
		}
	}
	// Each endpoint's refusals are logged by its node's ztunnel: only those are read.
	var scope ztunnel.Scope
	for _, e := range f.endpoints {
		scope.OnNode(e.node)
	}
	entries, err := r.readZtunnel(ctx, run, st, since.Add(-steps.ClockTolerance), scope)
	if err != nil && !ztunnel.IsIncomplete(err) {
		return steps.Errored(steps.LogsUnread(err)), nil
	}
	partial := err
	// Each pair's first refusal wrote its line on the endpoint's node by then: a read that holds up to there holds
	// the lines this judges, however far behind the log's end it is.
	needed := latestFirst(pairs).Add(steps.ClockTolerance + steps.ClockSlack)
	if t := run.Spec.Probe.RequestTimeout; t != nil {
		needed = needed.Add(t.Duration)
	}
	if ztunnel.HoldsWindow(partial, since.Add(-steps.ClockTolerance), needed) {
		partial = nil
	}
	rejected := true
	newest := map[string]ztunnel.Entry{} // endpoint pod → the newest refusal its node logged for the observers
	callerNS, _ := r.caller(run, step.Caller)
	for _, e := range ztunnel.Match(entries, ztunnel.Criteria{Since: since.Add(-steps.ClockTolerance), Direction: "inbound",
		SrcWorkloadPrefix: observerPrefix(r.keeper(run), observer{caller: step.Caller, node: "any"}), SrcNamespace: callerNS,
		DstNamespace: run.TargetNamespace(), PolicyRejected: &rejected}) {
		newest[e.Fields.Get(ztunnel.FieldDstWorkload)] = e
	}
	var wrong []string
	var evidence []string
	for _, e := range f.endpoints {
		line, ok := newest[e.pod]
		switch {
		case !ok && r.now().Before(latestFirst(pairs).Add(r.EvidenceWait)):
			return steps.Outcome{}, r.waitObserver(run, "endpoint "+e.pod+"'s ztunnel line naming "+string(step.Denier), w)
		case !ok && partial != nil:
			// The line may be among those not held: that is no finding about the node.
			return steps.Errored(fmt.Sprintf("endpoint %s: %s", e, steps.LogsUnread(partial))), nil
		case !ok:
			wrong = append(wrong, fmt.Sprintf("destination node %s (endpoint %s): no ztunnel line says who denied", e.node, e))
			markFailed(st.Coverage, e)
		case !r.deniedAsExpected(run, step.Denier, deniedBy(line)):
			wrong = append(wrong, fmt.Sprintf("destination node %s (endpoint %s): denied by %s", e.node, e, deniedBy(line)))
			markFailed(st.Coverage, e)
			evidence = append(evidence, steps.EvidenceLine(ztunnel.FormatText(line)))
		default:
			evidence = append(evidence, steps.EvidenceLine(ztunnel.FormatText(line)))
		}
	}
	st.Evidence = evidence[:min(len(evidence), 10)]
	if len(wrong) > 0 {
		return steps.Concluded(labsv1.VerdictFail, fleetObserved(step, pairs), fmt.Sprintf(
			"Denied from every node, but not by %s at %s", step.Denier, strings.Join(wrong, "; "))), nil
	}
	return steps.Concluded(labsv1.VerdictPass, fleetObserved(step, pairs)+" by "+deniedBy(newest[f.endpoints[0].pod]), fmt.Sprintf(
		"Denied by %s from %d node(s) at %d endpoint(s), each endpoint's ztunnel says so, as expected",
		step.Denier, len(f.nodes), len(f.endpoints))), nil
}

// latestFirst is when the last pair first saw its outcome: a refusal's line is awaited from then.
func latestFirst(pairs []pair) time.Time {
	var t time.Time
	for _, p := range pairs {
		if p.j.First.Time.After(t) {
			t = p.j.First.Time
		}
	}
	return t
}

// markFailed fails the coverage entry of endpoint e.
func markFailed(cov []labsv1.NodeResult, e endpoint) {
	for i := range cov {
		if cov[i].Role == labsv1.RoleDestination && cov[i].Endpoint == e.String() {
			cov[i].Verdict = labsv1.VerdictFail
		}
	}
}

// fleetObserved sums a per-node step up in the terms of its Expected.
func fleetObserved(step labs.Step, pairs []pair) string {
	outcomes := map[string]int{}
	var order []string
	for _, p := range pairs {
		o := p.j.Described()
		if outcomes[o] == 0 {
			order = append(order, o)
		}
		outcomes[o]++
	}
	parts := make([]string, len(order))
	for i, o := range order {
		parts[i] = fmt.Sprintf("%s on %d of %d node-endpoint pairs", o, outcomes[o], len(pairs))
	}
	return string(step.Caller) + " " + strings.Join(parts, "; ")
}

// attribute lays failing pairs at the nodes that explain them. A source node is blamed when every endpoint it called
// failed from it while some endpoint is reachable as expected from elsewhere; an endpoint (its node) is blamed
// when it failed from every source while some source succeeded elsewhere. A failure neither explains is named
// as the pair. If everything failed, no node is singled out: the mesh fails everywhere. It returns the coverage
// (one entry per source node, one per endpoint) and a sentence naming what failed.
func attribute(f fleet, pairs []pair) ([]labsv1.NodeResult, string) {
	srcFail, dstFail := map[string]bool{}, map[string]bool{}
	for _, n := range f.nodes {
		srcFail[n] = !slices.ContainsFunc(pairs, func(p pair) bool { return p.node == n && p.j.Pass })
	}
	for _, e := range f.endpoints {
		dstFail[e.pod] = !slices.ContainsFunc(pairs, func(p pair) bool { return p.endpoint.pod == e.pod && p.j.Pass })
	}
	allSrc := !slices.ContainsFunc(f.nodes, func(n string) bool { return !srcFail[n] })
	allDst := !slices.ContainsFunc(f.endpoints, func(e endpoint) bool { return !dstFail[e.pod] })
	blameSrc := func(n string) bool { return srcFail[n] && !allDst }
	blameDst := func(e endpoint) bool { return dstFail[e.pod] && !allSrc }

	var cov []labsv1.NodeResult
	var names []string
	for _, n := range f.nodes {
		mine := filter(pairs, func(p pair) bool { return p.node == n })
		v := verdictOf(blameSrc(n))
		if blameSrc(n) {
			names = append(names, fmt.Sprintf("source node %s (%s to every endpoint it called)", n, mine[0].j.Described()))
		}
		cov = append(cov, labsv1.NodeResult{Node: n, Role: labsv1.RoleSource, Verdict: v, Observed: tally(mine, "endpoints"),
			Attempts: counted(mine)})
	}
	for _, e := range f.endpoints {
		mine := filter(pairs, func(p pair) bool { return p.endpoint.pod == e.pod })
		if blameDst(e) {
			names = append(names, fmt.Sprintf("destination node %s (endpoint %s: %s from every node that called it)", e.node, e, mine[0].j.Described()))
		}
		cov = append(cov, labsv1.NodeResult{Node: e.node, Role: labsv1.RoleDestination, Endpoint: e.String(),
			Verdict: verdictOf(blameDst(e)), Observed: tally(mine, "nodes"), Attempts: counted(mine)})
	}
	for _, p := range pairs {
		if !p.j.Pass && !blameSrc(p.node) && !blameDst(p.endpoint) && !(allSrc && allDst) {
			names = append(names, fmt.Sprintf("node %s to endpoint %s on node %s (%s)", p.node, p.endpoint, p.endpoint.node, p.j.Described()))
		}
	}
	cov = boundCoverage(cov)
	if allSrc && allDst && len(pairs) > 0 {
		return cov, fmt.Sprintf("it failed everywhere: every node saw %s at every endpoint, so no single node is at fault",
			pairs[0].j.Described())
	}
	return cov, "failed at " + strings.Join(names, "; ")
}

// boundCoverage keeps the API's bound on a step's coverage: failures first.
func boundCoverage(cov []labsv1.NodeResult) []labsv1.NodeResult {
	if len(cov) <= 64 {
		return cov
	}
	sort.SliceStable(cov, func(i, j int) bool {
		return cov[i].Verdict != labsv1.VerdictPass && cov[j].Verdict == labsv1.VerdictPass
	})
	return cov[:64]
}

func filter(pairs []pair, keep func(pair) bool) []pair {
	var out []pair
	for _, p := range pairs {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// verdictOf a coverage entry: Fail when the node is to blame, else Pass (its other failures are explained by
// the other end).
func verdictOf(blamed bool) labsv1.Verdict {
	if blamed {
		return labsv1.VerdictFail
	}
	return labsv1.VerdictPass
}

// tally says how many of a node's pairs saw the expected outcome, and what the others saw.
func tally(pairs []pair, of string) string {
	ok := 0
	var other []string
	for _, p := range pairs {
		if p.j.Pass {
			ok++
		} else if o := p.j.Described(); !slices.Contains(other, o) {
			other = append(other, o)
		}
	}
	s := fmt.Sprintf("as expected at %d of %d %s", ok, len(pairs), of)
	if len(other) > 0 {
		s += "; otherwise " + strings.Join(other, ", ")
	}
	return s
}

func counted(pairs []pair) int32 {
	n := 0
	for _, p := range pairs {
		n += p.j.Counted
	}
	return int32(n)
}
