package labschedule

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/klog/v2"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// A LabSchedule acts with its author's rights of today. The manager creates its runs, so requester-rights
// (config/admission/requester_policy.yaml) checks the manager, and schedule-requester-rights checked the author
// only when the spec was written. Admission records who wrote the spec (config/admission/schedule_author_policy.yaml:
// annotations only admission can set), and before each run the schedule asks the cluster's authorizer, with a
// SubjectAccessReview as that author (user, UID, groups), for every right requester-rights checks. A schedule whose
// author lost one is Stalled, naming it, and creates no run.
//
// The rights below mirror requester_policy.yaml's checks, on the template's spec; TestAuthorRightsMatchRequesterPolicy
// keeps the two in step. (The policies' cap on how many checks one request may need is not a right: a template
// over it was refused when the schedule was written.)

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// scheduleAuthor is who wrote a schedule's spec, as admission recorded it.
type scheduleAuthor struct {
	username, uid string
	groups        []string
}

// authorOf reads the author annotations; the error says why there is no usable author.
func authorOf(ls *labsv1.LabSchedule) (scheduleAuthor, error) {
	a := ls.Annotations
	user, ok := a[labsv1.AnnotationAuthor]
	if !ok || user == "" {
		return scheduleAuthor{}, fmt.Errorf("the schedule does not name its author (annotation %s, which admission stamps "+
			"when the spec is written); write its spec again to record who answers for its runs", labsv1.AnnotationAuthor)
	}
	groups, err := parseQuotedList(a[labsv1.AnnotationAuthorGroups])
	if err != nil {
		return scheduleAuthor{}, fmt.Errorf("annotation %s does not parse: %w", labsv1.AnnotationAuthorGroups, err)
	}
	return scheduleAuthor{username: user, uid: a[labsv1.AnnotationAuthorUID], groups: groups}, nil
}

// parseQuotedList reads a comma-separated list of quoted strings, as CEL's strings.quote writes them (its escapes
// are Go's).
func parseQuotedList(s string) ([]string, error) {
	var out []string
	for s != "" {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return nil, err
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		s = s[len(q):]
		if s != "" {
			if s[0] != ',' || len(s) == 1 {
				return nil, fmt.Errorf("expected a comma between quoted strings at %q", s)
			}
			s = s[1:]
		}
	}
	return out, nil
}

// right is one access a schedule's runs need, and what for.
type right struct {
	verb, group, resource, subresource, namespace, name string
	why                                                 string
}

func (r right) String() string {
	res := r.resource
	if r.group != "" {
		res += "." + r.group
	}
	if r.subresource != "" {
		res += "/" + r.subresource
	}
	s := r.verb + " " + res
	if r.name != "" {
		s += " " + r.name
	}
	if r.namespace != "" {
		return s + " in namespace " + r.namespace
	}
	return s + " in all namespaces"
}

// authorRights lists the rights a run of spec, created in namespace ns, needs its requester to have: the checks
// of requester_policy.yaml, plus creating LabRuns in ns (schedule_policy.yaml). mesh is where the operator reads
// the mesh (its configuration, not the spec's).
func authorRights(spec *labsv1.LabRunSpec, ns string, mesh mesh.Config) []right {
	has := func(names ...labsv1.LabName) bool {
		for _, l := range spec.Labs {
			for _, n := range names {
				if l == n {
					return true
				}
			}
		}
		return false
	}
	// first is the first of names that runs: the lab a right's reason names.
	first := func(names ...labsv1.LabName) (labsv1.LabName, bool) {
		for _, n := range names {
			if has(n) {
				return n, true
			}
		}
		return "", false
	}
	target := orDefaultString(spec.Target.Namespace, ns)
	labMode := spec.Mode == "" || spec.Mode == labsv1.ModeLab
	meshScope := spec.Scope == labsv1.ScopeMesh
	out := []right{{verb: "create", group: labsv1.GroupVersion.Group, resource: "labruns", namespace: ns,
		why: "the schedule creates them for its author"}}
	if labMode && has(labsv1.LabPeerAuthentication) {
		if meshScope {
			out = append(out, right{verb: "update", group: "security.istio.io", resource: "peerauthentications",
				namespace: mesh.RootNamespace, name: spec.Mesh.PeerAuthentication,
				why: "the peer-authentication lab sets it PERMISSIVE with scope Mesh"})
		} else {
			for _, verb := range []string{"create", "delete"} {
				out = append(out, right{verb: verb, group: "security.istio.io", resource: "peerauthentications",
					namespace: target, why: "the peer-authentication lab creates a temporary PERMISSIVE one there"})
			}
		}
	}
	if ap := spec.Mesh.AuthorizationPolicy; labMode && ap != nil && has(labsv1.LabPeerAuthentication, labsv1.LabAuthorizationPolicy) {
		out = append(out, right{verb: "update", group: "security.istio.io", resource: "authorizationpolicies",
			namespace: orDefaultString(ap.Namespace, target), name: ap.Name,
			why: "the peer-authentication and authorization-policy labs set it aside"})
	}
	out = append(out, right{verb: "create", resource: "pods", namespace: target,
		why: "the probe pods run there as ServiceAccount " + spec.Client.ServiceAccount})
	if l, ok := first(labsv1.LabAuthorizationPolicy, labsv1.LabPolicyAudit); ok {
		out = append(out, right{verb: "create", resource: "serviceaccounts", namespace: target,
			why: "the " + string(l) + " lab creates the attacker ServiceAccount there"})
	}
	for _, l := range spec.Labs {
		if l != labsv1.LabFootprint {
			out = append(out, right{verb: "get", resource: "pods", subresource: "log", namespace: mesh.ZtunnelNamespace,
				why: "the labs read ztunnel access logs there"})
			break
		}
	}
	if l, ok := first(labsv1.LabPeerAuthentication, labsv1.LabPolicyAudit); ok {
		out = append(out, right{verb: "create", resource: "namespaces",
			why: "the " + string(l) + " lab creates one for its non-mesh client"})
	}
	if spec.Probe.Image != "" {
		out = append(out, right{verb: "set-probe-image", group: labsv1.GroupVersion.Group, resource: "labruns",
			namespace: ns, why: "choosing the probe image (" + spec.Probe.Image + ") needs that custom permission"})
	}
	if has(labsv1.LabFootprint) {
		out = append(out,
			right{verb: "list", resource: "pods", namespace: mesh.ZtunnelNamespace,
				why: "the footprint lab reads the ztunnel pods there"},
			right{verb: "list", group: "metrics.k8s.io", resource: "pods", namespace: mesh.ZtunnelNamespace,
				why: "the footprint lab reads ztunnel's usage there"},
			right{verb: "list", resource: "pods", namespace: target, why: "the footprint lab looks for sidecars there"},
			right{verb: "list", resource: "pods",
				why: "the footprint lab counts the pods of every ambient-enrolled namespace"})
	}
	if has(labsv1.LabPolicyAudit) {
		out = append(out, auditRights(spec, target)...)
	}
	return out
}

// auditRights are the policy-audit lab's rights in each namespace it audits (spec.audit.namespaces, else the
// target's): it reads both kinds of policy there and calls as the ServiceAccounts they name. Creating pods in the
// target namespace is already among authorRights.
func auditRights(spec *labsv1.LabRunSpec, target string) []right {
	audited := []string{target}
	if spec.Audit != nil && len(spec.Audit.Namespaces) > 0 {
		audited = spec.Audit.Namespaces
	}
	var out []right
	for _, ns := range audited {
		for _, res := range []string{"authorizationpolicies", "peerauthentications"} {
			out = append(out, right{verb: "list", group: "security.istio.io", resource: res, namespace: ns,
				why: "the policy-audit lab reads and proves the policies there"})
		}
		if ns != target {
			out = append(out, right{verb: "create", resource: "pods", namespace: ns,
				why: "the policy-audit lab's probe pods run there as the ServiceAccounts its policies name"})
		}
	}
	return out
}

// authorLacks asks, as the schedule's author, for every right its runs need; it returns why the schedule may not
// run ("" when every right is there). An error is a failed review, retried.
func (r *Reconciler) authorLacks(ctx context.Context, ls *labsv1.LabSchedule) (string, error) {
	author, err := authorOf(ls)
	if err != nil {
		return err.Error(), nil
	}
	var missing []string
	for _, rt := range authorRights(&ls.Spec.Template.Spec, ls.Namespace, r.Mesh.WithDefaults()) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: author.username, UID: author.uid, Groups: author.groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: rt.namespace, Verb: rt.verb,
				Group: rt.group, Resource: rt.resource, Subresource: rt.subresource, Name: rt.name},
		}}
		if err := r.Create(ctx, sar); err != nil {
			return "", fmt.Errorf("reviewing the rights of LabSchedule %s's author %s: %w", klog.KObj(ls), author.username, err)
		}
		if !sar.Status.Allowed {
			missing = append(missing, fmt.Sprintf("%s (%s)", rt, rt.why))
		}
	}
	if len(missing) == 0 {
		return "", nil
	}
	return fmt.Sprintf("its author %s may no longer %s", author.username, strings.Join(missing, "; nor ")), nil
}
