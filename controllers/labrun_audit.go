package controllers

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/authz"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// The policy audit (lab policy-audit) proves every AuthorizationPolicy and PeerAuthentication that applies to the
// audited namespaces. Each policy's probes, and what each must see, are worked out from the policies' specs by the
// operator's own evaluator (internal/authz), never from istiod or the data plane: for an ALLOW policy, an identity
// it allows is let through and the run's attacker is refused; for a DENY policy, an identity it names is refused
// by it; for a PeerAuthentication, plaintext from outside the mesh is refused on each STRICT port it decides and
// let through (to the AuthorizationPolicies) on each PERMISSIVE one. Probes run as the identities they need, one
// observer per identity and node, each calling every endpoint its identity probes: with coverage Matrix every
// identity runs on every node with a ready ztunnel; with Pairs (the default) every node runs one identity's
// observer and each identity runs on at least two nodes, so the pods grow with nodes plus identities, every
// node sends, and every probe is made from two nodes or more (a fault at a destination shows from all of them). A denied probe passes only when the destination ztunnel's line names the policy expected to
// refuse it.

// auditPrefix marks the callers of the audit: "audit:<namespace>/<serviceAccount>", or auditNonMesh.
const (
	auditPrefix  = "audit:"
	auditNonMesh = labs.Caller(auditPrefix + "non-mesh")
)

// auditCaller is the audit's caller for a peer: plaintext from the non-mesh namespace, or a ServiceAccount.
func auditCaller(p authz.Peer) labs.Caller {
	if !p.Mesh {
		return auditNonMesh
	}
	return labs.Caller(auditPrefix + p.Namespace + "/" + p.ServiceAccount)
}

// isAuditCaller tells the audit's callers from the labs' own.
func isAuditCaller(c labs.Caller) bool { return strings.HasPrefix(string(c), auditPrefix) }

// auditIdentity is where an audit caller's pods run and as whom; ok is false for a caller that is not the audit's.
func (r *LabRunReconciler) auditIdentity(run *labsv1.LabRun, c labs.Caller) (namespace, serviceAccount string, ok bool) {
	if c == auditNonMesh {
		return nonMeshNamespace(r.keeper(run)), "", true
	}
	ns, sa, found := strings.Cut(strings.TrimPrefix(string(c), auditPrefix), "/")
	return ns, sa, isAuditCaller(c) && found
}

// auditNamespaces are the namespaces the run audits: spec.audit.namespaces, else the target's.
func auditNamespaces(run *labsv1.LabRun) []string {
	if run.Spec.Audit != nil && len(run.Spec.Audit.Namespaces) > 0 {
		return slices.Sorted(slices.Values(run.Spec.Audit.Namespaces))
	}
	return []string{run.TargetNamespace()}
}

// auditWorkload is one serving pod behind a Service of an audited namespace, and the ports it serves there.
type auditWorkload struct {
	pod, node string
	w         authz.Workload
	ports     []uint32
}

func (w auditWorkload) addr(port uint32) string {
	return net.JoinHostPort(w.w.IP.String(), strconv.Itoa(int(port)))
}

// auditProbe is one connection the audit makes, from every node, and what it must see.
type auditProbe struct {
	caller labs.Caller
	src    authz.Peer
	dst    auditWorkload
	port   uint32
	want   authz.Decision
	why    string
	strict bool // refused by STRICT (the PeerAuthentication's DENY), not by an AuthorizationPolicy
}

func (p auditProbe) url(path string) string { return "http://" + p.dst.addr(p.port) + path }

func (p auditProbe) expect() probe.Expectation {
	if p.want.Allowed {
		return probe.ExpectAllowed
	}
	return probe.ExpectDenied
}

// wanted says what the probe must see, as the status words it.
func (p auditProbe) wanted() string {
	switch {
	case p.want.Allowed && p.want.By != "":
		return "allowed by " + p.want.By
	case p.want.Allowed:
		return "allowed (" + p.want.Reason + ")"
	case p.strict:
		return "denied by STRICT mTLS"
	case p.want.By != "":
		return "denied by " + p.want.By
	}
	return "denied (" + p.want.Reason + ")"
}

// who names the caller as the status words it.
func (p auditProbe) who() string {
	if p.caller == auditNonMesh {
		return "plaintext (non-mesh)"
	}
	return "as " + strings.TrimPrefix(string(p.caller), auditPrefix)
}

func (p auditProbe) String() string {
	return fmt.Sprintf("%s → %s (%s)", p.who(), p.dst.pod, p.dst.addr(p.port))
}

// auditLine is the audit of one policy.
type auditLine struct {
	kind, key string
	verdict   labsv1.PolicyVerdict // set when no probe can prove it
	reason    string
	istiod    string
	narrowed  bool
	// narrowedWhy is the evaluator's account of the narrowing, in istiod's words.
	narrowedWhy string
	probes      []auditProbe
}

// auditPlan is what the audit proves this pass: the nodes probed from, a line per policy and the probes.
type auditPlan struct {
	nodes    []string
	lines    []*auditLine
	readings []authz.Reading
	// from are the nodes each caller's observers run on.
	from map[labs.Caller][]string
}

// spread places the callers' observers: every node for each (Matrix); or node i to caller i mod callers, and
// each caller on two nodes at least, where there are two (Pairs).
func (plan *auditPlan) spread(callers []labs.Caller, coverage labsv1.Coverage) {
	plan.from = map[labs.Caller][]string{}
	for ci, c := range callers {
		if coverage == labsv1.CoverageMatrix {
			plan.from[c] = plan.nodes
			continue
		}
		var on []string
		for i, n := range plan.nodes {
			if i%len(callers) == ci {
				on = append(on, n)
			}
		}
		for k := 0; len(on) < min(2, len(plan.nodes)); k++ {
			if n := plan.nodes[(ci+k)%len(plan.nodes)]; !slices.Contains(on, n) {
				on = append(on, n)
			}
		}
		slices.Sort(on)
		plan.from[c] = on
	}
}

// at is probe p as called from the pod at ip: where a policy that applies to its destination decides by source
// address, what ztunnel must answer is worked out again with the address the observer got (a STRICT refusal
// does not depend on it).
func (plan auditPlan) at(p auditProbe, ip string) auditProbe {
	addr, err := netip.ParseAddr(ip)
	if p.strict || err != nil || !slices.ContainsFunc(plan.readings, func(r authz.Reading) bool {
		return r.AppliesTo(p.dst.w) && r.BySource()
	}) {
		return p
	}
	src := p.src
	src.IP = addr
	p.want = authz.Decide(plan.readings, src, p.dst.w, p.port)
	return p
}

// callers are the identities the plan calls as, each with the URLs it calls, sorted.
func (p auditPlan) callers(path string) map[labs.Caller][]string {
	out := map[labs.Caller][]string{}
	for _, l := range p.lines {
		for _, pr := range l.probes {
			if u := pr.url(path); !slices.Contains(out[pr.caller], u) {
				out[pr.caller] = append(out[pr.caller], u)
			}
		}
	}
	for c := range out {
		sort.Strings(out[c])
	}
	return out
}

// auditPolicyLimit bounds the policies one run audits (those past it are named as untestable): each is listed,
// read and probed from every node.
const auditPolicyLimit = 64

// planAudit lists the policies that apply to the audited namespaces, reads each as ztunnel enforces it, and
// works out each one's probes.
func (r *LabRunReconciler) planAudit(ctx context.Context, run *labsv1.LabRun) (auditPlan, error) {
	var plan auditPlan
	nodes, err := r.ztunnelNodes(ctx)
	if err != nil {
		return plan, err
	}
	plan.nodes = nodes
	root := r.meshConfig().RootNamespace
	audited := auditNamespaces(run)
	aps, err := r.auditPolicies(ctx, append([]string{root}, audited...))
	if err != nil {
		return plan, err
	}
	for i := range aps {
		plan.readings = append(plan.readings, authz.Read(authz.FromObject(aps[i]), authz.Options{RootNamespace: root}))
	}
	readings := plan.readings
	workloads, all, err := r.auditWorkloads(ctx, run, audited)
	if err != nil {
		return plan, err
	}
	auditor := authz.Peer{Mesh: true, Namespace: run.TargetNamespace(), ServiceAccount: attackerServiceAccount(r.keeper(run))}
	sas := map[string]bool{}
	for i, rd := range readings {
		line := &auditLine{kind: mesh.KindAuthorizationPolicy, key: rd.Policy.Key(), istiod: istiodSays(aps[i])}
		plan.lines = append(plan.lines, line)
		if len(plan.lines) > auditPolicyLimit {
			line.verdict, line.reason = labsv1.PolicyUntestable, fmt.Sprintf("past the first %d policies a run audits", auditPolicyLimit)
			continue
		}
		if err := r.planPolicy(ctx, line, rd, readings, workloads, all, audited, auditor, sas); err != nil {
			return plan, err
		}
	}
	if err := r.planPeerAuthentications(ctx, &plan, readings, workloads, audited); err != nil {
		return plan, err
	}
	return plan, nil
}

// planPolicy works out the probes of one AuthorizationPolicy on every workload with a Service it applies to.
func (r *LabRunReconciler) planPolicy(ctx context.Context, line *auditLine, rd authz.Reading, readings []authz.Reading,
	workloads []auditWorkload, all []authz.Workload, audited []string, auditor authz.Peer, sas map[string]bool) error {
	switch {
	case rd.Effect == authz.NoEffect:
		line.verdict, line.reason = labsv1.PolicyNoEffect, rd.Reason
		return nil
	case rd.Effect == authz.Untestable:
		line.verdict, line.reason = labsv1.PolicyUntestable, rd.Reason
		return nil
	case !slices.ContainsFunc(all, rd.AppliesTo):
		line.verdict, line.reason = labsv1.PolicyNoEffect, "it selects no pod in the audited namespaces"
		return nil
	}
	line.narrowed, line.narrowedWhy = rd.Effect == authz.Narrowed, rd.Reason
	var usable, refused []authz.Peer
	for _, c := range authz.Candidates(rd) {
		ok, err := r.mayCallAs(ctx, c, audited, sas)
		if err != nil {
			return err
		}
		if ok {
			usable = append(usable, c)
		} else {
			refused = append(refused, c)
		}
	}
	var reasons []string
	for _, w := range workloads {
		if !rd.AppliesTo(w.w) {
			continue
		}
		probes, why := authz.ProbesFor(rd, readings, w.w, w.ports, usable, auditor)
		if len(probes) == 0 && line.narrowed && !rd.Deny() {
			// istiod omitted the rules with HTTP attributes: an identity they allow is refused, as istiod says.
			probes = narrowedProbes(rd, readings, w, usable)
		}
		if len(probes) == 0 {
			reasons = append(reasons, why)
			continue
		}
		for _, p := range probes {
			line.probes = append(line.probes, auditProbe{caller: auditCaller(p.Src), src: p.Src, dst: w, port: p.Port, want: p.Want, why: p.Why})
		}
	}
	if len(line.probes) > 0 {
		return nil
	}
	line.verdict = labsv1.PolicyUntestable
	switch {
	case len(reasons) == 0:
		line.reason = "no Service reaches a pod it selects"
	case rd.BySource():
		line.reason = "it decides by source address (ipBlocks, source.ip), and the addresses the audit's probes get are " +
			"not known when they are chosen: " + reasons[0]
	case len(usable) == 0 && len(refused) > 0:
		line.reason = fmt.Sprintf("it names only identities the audit may not call as: %s (the audit calls as a "+
			"ServiceAccount only in an audited namespace %v, and only one that exists)", peerNames(refused), audited)
	default:
		line.reason = reasons[0]
	}
	return nil
}

// narrowedProbes prove an ALLOW policy istiod narrowed: each identity its YAML allows, called on each port, must
// see what ztunnel decides without the omitted rules (refused, unless another policy lets it through).
func narrowedProbes(rd authz.Reading, readings []authz.Reading, w auditWorkload, usable []authz.Peer) []authz.Probe {
	var out []authz.Probe
	for _, c := range usable {
		for _, port := range w.ports {
			out = append(out, authz.Probe{Src: c, Port: port, Want: authz.Decide(readings, c, w.w, port),
				Why: "an identity the policy's YAML allows, which istiod's narrowing refuses"})
		}
		if len(out) > 0 {
			break
		}
	}
	return out
}

// mayCallAs tells whether the audit may run a probe as peer p: a ServiceAccount of the default trust domain that
// exists in an audited namespace (where the requester was admitted to create pods).
func (r *LabRunReconciler) mayCallAs(ctx context.Context, p authz.Peer, audited []string, sas map[string]bool) (bool, error) {
	if !p.Mesh || (p.TrustDomain != "" && p.TrustDomain != authz.DefaultTrustDomain) || !slices.Contains(audited, p.Namespace) {
		return false, nil
	}
	key := p.Namespace + "/" + p.ServiceAccount
	if ok, seen := sas[key]; seen {
		return ok, nil
	}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.ServiceAccount}, &corev1.ServiceAccount{})
	if client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("reading ServiceAccount %s: %w", key, err)
	}
	sas[key] = err == nil
	return err == nil, nil
}

func peerNames(ps []authz.Peer) string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		td := p.TrustDomain
		if td == "" {
			td = authz.DefaultTrustDomain
		}
		out = append(out, td+"/ns/"+p.Namespace+"/sa/"+p.ServiceAccount)
	}
	return strings.Join(out, ", ")
}

// planPeerAuthentications gives each PeerAuthentication of the root and audited namespaces a line, and the
// plaintext probes of the workload ports whose effective mode it decides.
func (r *LabRunReconciler) planPeerAuthentications(ctx context.Context, plan *auditPlan, readings []authz.Reading,
	workloads []auditWorkload, audited []string) error {
	root := r.meshConfig().RootNamespace
	lines := map[string]*auditLine{}
	var pas []string
	byNS := map[string][]string{} // namespace → the PeerAuthentications deciding its modes, listed once
	seen := map[string]bool{}
	for _, ns := range audited {
		list, err := mesh.PeerAuthentications(ctx, r.APIReader, root, ns)
		if err != nil {
			return err
		}
		for _, pa := range list {
			key := pa.GetNamespace() + "/" + pa.GetName()
			byNS[ns] = append(byNS[ns], key)
			if !seen[key] {
				seen[key] = true
				pas = append(pas, key)
				lines[key] = &auditLine{kind: mesh.KindPeerAuthentication, key: key}
			}
		}
		nonMesh := authz.Peer{}
		for _, w := range workloads {
			if w.w.Namespace != ns {
				continue
			}
			for _, port := range w.ports {
				d := mesh.EffectiveMode(list, root, ns, w.w.Labels, int32(port))
				if d.By == nil {
					continue // Istio's default decides: no policy to prove
				}
				mode := d.Mode
				if mode != authz.Strict {
					mode = "PERMISSIVE"
				}
				for _, p := range authz.PlaintextProbes(map[uint32]string{port: mode}, readings, w.w, nonMesh) {
					lines[d.By.Namespace+"/"+d.By.Name].probes = append(lines[d.By.Namespace+"/"+d.By.Name].probes, auditProbe{
						caller: auditNonMesh, src: nonMesh, dst: w, port: p.Port, want: p.Want, why: p.Why, strict: mode == authz.Strict})
				}
			}
		}
	}
	sort.Strings(pas)
	for _, key := range pas {
		l := lines[key]
		if len(l.probes) == 0 {
			l.verdict, l.reason = labsv1.PolicyNoEffect, "it decides the mode of no port of an audited pod behind a Service "+
				"(it selects none, or a more specific PeerAuthentication decides)"
		}
		plan.lines = append(plan.lines, l)
	}
	return nil
}

// auditPolicies lists the AuthorizationPolicies of the namespaces, a page at a time (a tenant may make them
// large; only what the audit reads is kept).
func (r *LabRunReconciler) auditPolicies(ctx context.Context, namespaces []string) ([]*securityv1.AuthorizationPolicy, error) {
	var out []*securityv1.AuthorizationPolicy
	for _, ns := range slices.Compact(slices.Sorted(slices.Values(namespaces))) {
		cont := ""
		for {
			list := &securityv1.AuthorizationPolicyList{}
			if err := r.APIReader.List(ctx, list, client.InNamespace(ns), client.Limit(50), client.Continue(cont)); err != nil {
				return nil, fmt.Errorf("listing AuthorizationPolicies in %s: %w", ns, err)
			}
			for i := range list.Items {
				ap := list.Items[i]
				keep := map[string]string{}
				for _, k := range []string{"istio.io/dry-run"} {
					if v, ok := ap.Annotations[k]; ok {
						keep[k] = v
					}
				}
				ap.Annotations, ap.ManagedFields = keep, nil
				out = append(out, ap)
			}
			if cont = list.Continue; cont == "" {
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out, nil
}

// istiodSays quotes istiod's ZtunnelAccepted condition on a policy, when it says anything but accepted.
func istiodSays(ap *securityv1.AuthorizationPolicy) string {
	for _, c := range ap.Status.GetConditions() {
		if c.GetType() == "ZtunnelAccepted" && (c.GetStatus() != "True" || c.GetReason() != "Accepted") {
			return fmt.Sprintf("ZtunnelAccepted=%s (%s): %s", c.GetStatus(), c.GetReason(), c.GetMessage())
		}
	}
	return ""
}

// auditWorkloads are the serving pods behind the Services of the audited namespaces (each once, with every port
// a Service sends it), and every pod of those namespaces as a policy sees it (whether it selects any).
func (r *LabRunReconciler) auditWorkloads(ctx context.Context, run *labsv1.LabRun, audited []string) ([]auditWorkload, []authz.Workload, error) {
	var out []auditWorkload
	var all []authz.Workload
	for _, ns := range audited {
		pods, err := r.appPods(ctx, client.InNamespace(ns))
		if err != nil {
			return nil, nil, err
		}
		svcs := &corev1.ServiceList{}
		if err := r.APIReader.List(ctx, svcs, client.InNamespace(ns)); err != nil {
			return nil, nil, fmt.Errorf("listing Services in %s: %w", ns, err)
		}
		byPod := map[string]*auditWorkload{}
		var order []string
		for i := range pods {
			p := &pods[i]
			if p.Labels[labsv1.LabelProbe] == "true" && p.Labels[labsv1.LabelLabRun] == string(run.UID) {
				continue // the run's own probes are no workload of the namespace
			}
			ip, _ := netip.ParseAddr(p.Status.PodIP)
			w := authz.Workload{Namespace: ns, Labels: p.Labels, IP: ip}
			all = append(all, w)
			if !serving(p) || !ip.IsValid() {
				continue
			}
			for j := range svcs.Items {
				svc := &svcs.Items[j]
				if svc.Spec.Type == corev1.ServiceTypeExternalName || len(svc.Spec.Selector) == 0 ||
					!labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.Labels)) {
					continue
				}
				aw := byPod[p.Name]
				if aw == nil {
					aw = &auditWorkload{pod: p.Name, node: p.Spec.NodeName, w: w}
					byPod[p.Name] = aw
					order = append(order, p.Name)
				}
				for _, sp := range svc.Spec.Ports {
					if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
						continue
					}
					if port := uint32(containerPort(svc, sp.Port, p)); port > 0 && !slices.Contains(aw.ports, port) {
						aw.ports = append(aw.ports, port)
					}
				}
			}
		}
		sort.Strings(order)
		for _, name := range order {
			slices.Sort(byPod[name].ports)
			out = append(out, *byPod[name])
		}
	}
	return out, all, nil
}

// audit is the policy-audit lab's audit step.
func (r *LabRunReconciler) audit(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) (steps.Outcome, error) {
	plan, err := r.auditPlanOf(ctx, run)
	if err != nil {
		if pe, ok := err.(stepBlocked); ok {
			return steps.Errored(pe.Error()), nil
		}
		return steps.Outcome{}, err
	}
	path := run.Spec.Target.Path
	callers := plan.callers(path)
	pods, waiting, blocked, err := r.ensureAuditObservers(ctx, run, plan, callers)
	if err != nil {
		return steps.Outcome{}, err
	}
	w := steps.Window{SettleBy: st.StartTime.Add(run.Spec.Probe.SettleTimeout.Duration)}
	if blocked != "" {
		return r.concludeAudit(ctx, run, plan, steps.Errored(blocked))
	}
	if len(waiting) > 0 {
		return steps.Outcome{}, r.waitObserver(run, fmt.Sprintf("audit observers %v to start", waiting), w)
	}
	// What each caller's observer on each node saw at each URL.
	seen := map[labs.Caller]map[string]map[string][]probe.Attempt{}
	type read struct {
		c    labs.Caller
		node string
	}
	var reads []read
	var readPods []*corev1.Pod
	for c, byNode := range pods {
		seen[c] = map[string]map[string][]probe.Attempt{}
		for node, pod := range byNode {
			reads, readPods = append(reads, read{c, node}), append(readPods, pod)
		}
	}
	attempts, err := r.observerAttempts(ctx, readPods, time.Time{})
	if err != nil {
		return steps.Outcome{}, err
	}
	for i, rd := range reads {
		byURL := map[string][]probe.Attempt{}
		for _, a := range attempts[i] {
			u := a.URL
			if u == "" && len(callers[rd.c]) == 1 {
				u = callers[rd.c][0]
			}
			byURL[u] = append(byURL[u], a)
		}
		seen[rd.c][rd.node] = byURL
	}
	judged := map[*auditLine][]auditResult{}
	failing := false
	for _, l := range plan.lines {
		for i, p := range l.probes {
			for _, node := range plan.from[p.caller] {
				at := plan.at(p, pods[p.caller][node].Status.PodIP)
				j := steps.Judge(seen[p.caller][node][p.url(path)], at.expect(), max(step.Count, 1), w)
				judged[l] = append(judged[l], auditResult{probe: i, node: node, want: at.want, j: j})
				failing = failing || !j.Pass
			}
		}
	}
	if failing && r.now().Before(w.SettleBy) {
		return steps.Outcome{}, r.waitObserver(run, "every audit probe to see what its policy says from each node that makes it", w)
	}
	for _, l := range plan.lines {
		for _, res := range judged[l] {
			if res.j.Last == nil {
				return r.concludeAudit(ctx, run, plan, steps.Errored(fmt.Sprintf(
					"policy %s: the observer on node %s made no attempt %s (settle %s): nothing is known of that probe",
					l.key, res.node, l.probes[res.probe], run.Spec.Probe.SettleTimeout.Duration)))
			}
		}
	}
	deniers, out, err := r.auditDeniers(ctx, run, st, plan, pods, judged, w)
	if err != nil || out != nil {
		if out != nil {
			return r.concludeAudit(ctx, run, plan, *out)
		}
		return steps.Outcome{}, err
	}
	st.Coverage = auditCoverage(plan, judged)
	st.Policies = nil
	st.Attempts = 0
	counts := map[labsv1.PolicyVerdict]int{}
	for _, l := range plan.lines {
		res := l.result(judged[l], deniers, r.meshConfig().RootNamespace)
		for _, r := range judged[l] {
			st.Attempts += int32(r.j.Counted)
		}
		counts[res.Verdict]++
		st.Policies = append(st.Policies, res)
	}
	sort.SliceStable(st.Policies, func(i, j int) bool {
		return st.Policies[i].Verdict == labsv1.PolicyNotEnforced && st.Policies[j].Verdict != labsv1.PolicyNotEnforced
	})
	if len(st.Policies) > 64 {
		st.Policies = st.Policies[:64]
	}
	var parts []string
	for _, v := range []labsv1.PolicyVerdict{labsv1.PolicyEnforced, labsv1.PolicyEnforcedDifferently, labsv1.PolicyNotEnforced,
		labsv1.PolicyNoEffect, labsv1.PolicyUntestable} {
		if counts[v] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[v], v))
		}
	}
	observed := fmt.Sprintf("%d policies: %s", len(plan.lines), strings.Join(parts, ", "))
	if len(plan.lines) == 0 {
		observed = "no policy applies to the audited namespaces"
	}
	outcome := steps.Concluded(labsv1.VerdictPass, observed, fmt.Sprintf(
		"Every policy that applies to %v is enforced as its spec says, or has no effect, or cannot be probed (each says why), from %d node(s)",
		auditNamespaces(run), len(plan.nodes)))
	if counts[labsv1.PolicyNotEnforced] > 0 {
		var bad []string
		for _, p := range st.Policies {
			if p.Verdict == labsv1.PolicyNotEnforced {
				bad = append(bad, p.Kind+" "+p.Policy+": "+p.Reason)
			}
		}
		outcome = steps.Concluded(labsv1.VerdictFail, observed, "Not enforced as written: "+strings.Join(bad, "; "))
	}
	return r.concludeAudit(ctx, run, plan, outcome)
}

// auditCoverage is one entry per node the audit sent from: how many of the probes made there saw what their policy
// says.
func auditCoverage(plan auditPlan, judged map[*auditLine][]auditResult) []labsv1.NodeResult {
	var out []labsv1.NodeResult
	for _, node := range plan.nodes {
		made, ok, attempts := 0, 0, 0
		for _, l := range plan.lines {
			for _, res := range judged[l] {
				if res.node != node {
					continue
				}
				made++
				attempts += res.j.Counted
				if res.j.Pass {
					ok++
				}
			}
		}
		if made == 0 {
			continue
		}
		v := labsv1.VerdictPass
		if ok < made {
			v = labsv1.VerdictFail
		}
		out = append(out, labsv1.NodeResult{Node: node, Role: labsv1.RoleSource, Verdict: v, Attempts: int32(attempts),
			Observed: fmt.Sprintf("as its policy says for %d of %d probes", ok, made)})
	}
	return boundCoverage(out)
}

// auditResult is what one probe of a policy saw from one node.
type auditResult struct {
	probe int
	node  string
	want  authz.Decision // what ztunnel must answer the probe from this node
	j     steps.Judgement
}

// deniedKey names a denied probe's connections at the destination ztunnel: caller, destination pod and port.
type deniedKey struct {
	caller labs.Caller
	pod    string
	port   uint32
}

// auditDeniers reads, for each denied probe, who the destination ztunnel says refused it (its newest line for the
// caller's observers): a refusal by anything but the expected policy is no proof of it. out, when set, ends the
// step (an Error: the lines could not be read).
func (r *LabRunReconciler) auditDeniers(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, plan auditPlan,
	pods map[labs.Caller]map[string]*corev1.Pod, judged map[*auditLine][]auditResult, w steps.Window) (map[deniedKey]ztunnel.Entry, *steps.Outcome, error) {
	var since, latest time.Time
	want := map[deniedKey]bool{}
	var scope ztunnel.Scope // the destinations' nodes, whose ztunnels log their refusals
	for _, l := range plan.lines {
		for _, res := range judged[l] {
			p := l.probes[res.probe]
			if res.want.Allowed || !res.j.Pass {
				continue
			}
			want[deniedKey{p.caller, p.dst.pod, p.port}] = true
			scope.OnNode(p.dst.node)
			if since.IsZero() || res.j.First.Time.Before(since) {
				since = res.j.First.Time
			}
			if res.j.First.Time.After(latest) {
				latest = res.j.First.Time
			}
		}
	}
	out := map[deniedKey]ztunnel.Entry{}
	if len(want) == 0 {
		return out, nil, nil
	}
	entries, err := r.readZtunnel(ctx, run, st, since.Add(-steps.ClockTolerance), scope)
	if err != nil && !ztunnel.IsIncomplete(err) {
		o := steps.Errored(steps.LogsUnread(err))
		return nil, &o, nil
	}
	needed := latest.Add(steps.ClockTolerance + steps.ClockSlack)
	if t := run.Spec.Probe.RequestTimeout; t != nil {
		needed = needed.Add(t.Duration)
	}
	partial := err
	if ztunnel.HoldsWindow(partial, since.Add(-steps.ClockTolerance), needed) {
		partial = nil
	}
	rejected := true
	keeper := coldKeeper(run)
	for c := range plan.callers(run.Spec.Target.Path) {
		ns, _ := r.caller(run, c)
		// The caller's namespace is an audited one, where others may create pods named like the observers: a line
		// counts only from the address of one of the run's own observers (pods it created and recorded).
		ips := map[string]bool{}
		for _, pod := range pods[c] {
			ips[pod.Status.PodIP] = true
		}
		for _, e := range ztunnel.Match(entries, ztunnel.Criteria{Since: since.Add(-steps.ClockTolerance), Direction: "inbound",
			SrcWorkloadPrefix: observerPrefix(keeper, observer{caller: c, node: "any"}), SrcNamespace: ns, PolicyRejected: &rejected}) {
			if host, _, err := net.SplitHostPort(e.Fields.Get(ztunnel.FieldSrcAddr)); err != nil || !ips[host] {
				continue
			}
			k := deniedKey{c, e.Fields.Get(ztunnel.FieldDstWorkload), dstPort(e)}
			if want[k] {
				out[k] = e
			}
		}
	}
	for k := range want {
		if _, ok := out[k]; ok {
			continue
		}
		switch {
		case r.now().Before(latest.Add(r.EvidenceWait)):
			return nil, nil, r.waitObserver(run, "the destination ztunnel's line naming who refused "+k.pod, w)
		case partial != nil:
			o := steps.Errored(fmt.Sprintf("who refused %s: %s", k.pod, steps.LogsUnread(partial)))
			return nil, &o, nil
		}
	}
	return out, nil, nil
}

// dstPort is the destination port of an inbound line: the HBONE inner address's, else the address's.
func dstPort(e ztunnel.Entry) uint32 {
	addr := e.HBONEAddr()
	if addr == "" {
		addr = e.DstAddr()
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(p, 10, 32)
	return uint32(n)
}

// result is the line's verdict from what its probes saw, and who refused them.
func (l *auditLine) result(results []auditResult, deniers map[deniedKey]ztunnel.Entry, root string) labsv1.PolicyResult {
	out := labsv1.PolicyResult{Kind: l.kind, Policy: l.key, Verdict: l.verdict, Reason: l.reason, Istiod: l.istiod}
	if l.verdict != "" {
		return out
	}
	// A probe that fails from every node lays the fault at its destination's node (whose ztunnel enforces inbound);
	// one that fails from some nodes only, at those source nodes.
	var wrong, badNodes []string
	blame := func(n string) {
		if !slices.Contains(badNodes, n) {
			badNodes = append(badNodes, n)
		}
	}
	for i, p := range l.probes {
		var all, failed []auditResult
		for _, res := range results {
			if res.probe == i {
				all = append(all, res)
				if !res.j.Pass {
					failed = append(failed, res)
				}
			}
		}
		if len(all) > 0 {
			p.want = all[0].want
		}
		switch {
		case len(failed) == 0:
		case len(failed) == len(all):
			blame(p.dst.node)
			wrong = append(wrong, fmt.Sprintf("destination node %s: %s: expected %s, saw %s from every node that made it", p.dst.node, p,
				p.wanted(), failed[0].j.Described()))
		default:
			for _, res := range failed {
				blame(res.node)
				p.want = res.want
				wrong = append(wrong, fmt.Sprintf("source node %s: %s: expected %s, saw %s", res.node, p, p.wanted(), res.j.Described()))
			}
		}
	}
	// Who refused: one line per denied probe, the destination node's.
	for i, p := range l.probes {
		if k := slices.IndexFunc(results, func(r auditResult) bool { return r.probe == i && r.j.Pass }); k >= 0 {
			p.want = results[k].want
		}
		if p.want.Allowed {
			continue
		}
		e, ok := deniers[deniedKey{p.caller, p.dst.pod, p.port}]
		if !ok {
			if !slices.ContainsFunc(results, func(r auditResult) bool { return r.probe == i && !r.j.Pass }) {
				blame(p.dst.node)
				wrong = append(wrong, fmt.Sprintf("destination node %s: %s: refused, but no ztunnel line says who refused it", p.dst.node, p))
			}
			continue
		}
		if who := deniedBy(e); !auditRefusal(p, who, root) {
			blame(p.dst.node)
			wrong = append(wrong, fmt.Sprintf("destination node %s: %s: expected %s, refused by %s", p.dst.node, p, p.wanted(), who))
		}
	}
	if len(wrong) > 0 {
		out.Verdict = labsv1.PolicyNotEnforced
		out.Reason = fmt.Sprintf("not enforced on node(s) %s: %s", strings.Join(badNodes, ", "), wrong[0])
		out.Probes = capStrings(wrong, 8, 512)
		return out
	}
	out.Verdict = labsv1.PolicyEnforced
	nodes := map[string]bool{}
	for _, res := range results {
		nodes[res.node] = true
	}
	out.Reason = fmt.Sprintf("%d probe(s) from %d node(s) saw what its spec says", len(l.probes), len(nodes))
	if l.narrowed {
		out.Verdict = labsv1.PolicyEnforcedDifferently
		out.Reason = "istiod narrowed it for ztunnel, and the probes saw the narrowed policy: " + l.narrowedWhy
	}
	var lines []string
	for i, p := range l.probes {
		var wants []string
		for _, res := range results {
			if q := p; res.probe == i {
				q.want = res.want
				if w := q.wanted(); !slices.Contains(wants, w) {
					wants = append(wants, w)
				}
			}
		}
		lines = append(lines, fmt.Sprintf("%s: %s from every node that made it (%s)", p, strings.Join(wants, " or "), p.why))
	}
	out.Probes = capStrings(lines, 8, 512)
	return out
}

// auditRefusal compares who refused with the probe's expectation. STRICT's refusal is the DENY policy istiod
// derives from it: the static one of the root namespace, or the workload's converted one (ISTIO-FACTS.md); a
// policy a tenant named alike in another namespace is not it.
func auditRefusal(p auditProbe, who, root string) bool {
	switch {
	case p.strict:
		return who == root+"/istio_converted_static_strict" ||
			strings.HasPrefix(who, p.dst.w.Namespace+"/converted_peer_authentication_")
	case p.want.By != "":
		return who == p.want.By
	}
	return strings.HasPrefix(who, "no ALLOW policy")
}

// capStrings keeps at most n strings of at most size bytes each.
func capStrings(in []string, n, size int) []string {
	out := in[:min(len(in), n)]
	for i, s := range out {
		if len(s) > size {
			out[i] = s[:size-len("…")] + "…"
		}
	}
	return out
}

// ensureAuditObservers creates the audit's observers: one per caller per node, calling the caller's URLs. It
// returns the running ones, what is still starting, and why the audit cannot go on (an observer refused).
func (r *LabRunReconciler) ensureAuditObservers(ctx context.Context, run *labsv1.LabRun, plan auditPlan,
	callers map[labs.Caller][]string) (map[labs.Caller]map[string]*corev1.Pod, []string, string, error) {
	rec, err := r.trustedRecord(ctx, run)
	if err != nil {
		return nil, nil, "", err
	}
	b := runBook{r: r, rec: rec, batch: new(bool)}
	var obs []observer
	for _, c := range slices.Sorted(maps.Keys(callers)) {
		for _, node := range plan.from[c] {
			obs = append(obs, observer{caller: c, node: node})
		}
	}
	got, reasons, err := r.ensureMany(ctx, run, b, obs, func(o observer) func() (observerDest, string, error) {
		return func() (observerDest, string, error) {
			n, tolerations, err := r.noExecuteTolerations(ctx, o.node)
			return observerDest{urls: callers[o.caller], tolerations: tolerations, nodeUID: n.UID}, "", err
		}
	})
	if err != nil {
		return nil, nil, "", err
	}
	pods := map[labs.Caller]map[string]*corev1.Pod{}
	var waiting []string
	for i, o := range obs {
		who := strings.TrimPrefix(string(o.caller), auditPrefix)
		if pods[o.caller] == nil {
			pods[o.caller] = map[string]*corev1.Pod{}
		}
		pod := got[i]
		switch {
		case reasons[i] != "":
			return nil, nil, fmt.Sprintf("audit observer %s on node %s: %s", who, o.node, reasons[i]), b.flush(ctx)
		case pod == nil || (pod.Status.Phase == corev1.PodPending && probe.Stuck(pod) == ""):
			waiting = append(waiting, who+"@"+o.node)
		case probe.Stuck(pod) != "":
			return nil, nil, fmt.Sprintf("audit observer %s on node %s cannot start: %s", who, o.node, probe.Stuck(pod)), b.flush(ctx)
		default:
			pods[o.caller][o.node] = pod
		}
	}
	return pods, waiting, "", b.flush(ctx)
}

// auditPlanTTL is how long a plan serves the passes of a waiting audit step before the policies, workloads and
// ServiceAccounts are listed again: a step polls its observers every observerPoll, and listing every policy and pod
// of the audited namespaces that often would load the API server for nothing.
const auditPlanTTL = 5 * time.Second

// auditPlanned is a plan and when it was worked out.
type auditPlanned struct {
	plan auditPlan
	at   time.Time
}

// auditPlanOf is the run's audit plan: the one worked out within auditPlanTTL, else a new one.
func (r *LabRunReconciler) auditPlanOf(ctx context.Context, run *labsv1.LabRun) (auditPlan, error) {
	if v, ok := r.audits.Load(run.UID); ok && r.now().Sub(v.(auditPlanned).at) < auditPlanTTL {
		return v.(auditPlanned).plan, nil
	}
	plan, err := r.planAudit(ctx, run)
	if err != nil {
		return plan, err
	}
	plan.spread(slices.Sorted(maps.Keys(plan.callers(run.Spec.Target.Path))), run.Spec.Probe.Coverage)
	r.audits.Store(run.UID, auditPlanned{plan: plan, at: r.now()})
	return plan, nil
}

// concludeAudit retires the audit's observers once it has a verdict.
func (r *LabRunReconciler) concludeAudit(ctx context.Context, run *labsv1.LabRun, plan auditPlan, out steps.Outcome) (steps.Outcome, error) {
	r.audits.Delete(run.UID)
	for c := range plan.callers(run.Spec.Target.Path) {
		ns, _ := r.caller(run, c)
		if err := r.retireFleet(ctx, run, ns, observer{caller: c, node: "any"}.key()); err != nil {
			return steps.Outcome{}, err
		}
	}
	return out, nil
}

// ztunnelNodes are the nodes with a ready ztunnel, sorted.
func (r *LabRunReconciler) ztunnelNodes(ctx context.Context) ([]string, error) {
	z := r.meshConfig()
	zpods, err := r.appPods(ctx, client.InNamespace(z.ZtunnelNamespace), client.MatchingLabels(z.ZtunnelSelector))
	if err != nil {
		return nil, err
	}
	var nodes []string
	for i := range zpods {
		if n := zpods[i].Spec.NodeName; serving(&zpods[i]) && n != "" && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	sort.Strings(nodes)
	if len(nodes) == 0 {
		return nil, stepBlocked{fmt.Errorf("no ztunnel pod is ready (namespace %s, selector %s): no node can be verified",
			z.ZtunnelNamespace, mesh.SelectorString(z.ZtunnelSelector))}
	}
	return nodes, nil
}
