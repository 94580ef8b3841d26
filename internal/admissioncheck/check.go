package admissioncheck

import (
	"context"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// managerLimits is the shipped policy (by its name in config/admission) that binds the manager's own
// ServiceAccount: the one policy whose enforcement the manager can prove by being refused itself.
const managerLimits = "manager-limits"

// ProbeNamespace is the namespace the manager asks, in a server-side dry run, to create: manager-limits lets it
// create only its labrun-non-mesh-* namespaces, so the API server must refuse this one.
const ProbeNamespace = "labrun-admission-check"

// Checker compares the cluster's admission policies with the shipped ones and proves that the API server
// enforces them.
//
// What the manager's identity can prove. Of the shipped policies, requester-rights and schedule-requester-rights
// judge other users' requests by their rights (the manager holds every right they check, so no request of its
// own is refused by them), and mesh-marks and status-writes exempt the manager by name; only manager-limits
// binds the manager. So the proof is twofold: every shipped policy and binding is on the cluster with its shipped
// spec (Deny, failurePolicy Fail, the same match constraints, conditions and validations), and a dry-run create
// of a Namespace the manager may not create is refused by manager-limits. The refusal shows that the API server
// enforces ValidatingAdmissionPolicies at all (the admission plugin may be disabled, or the API older than
// 1.30), and that the identity written in the policies' CEL is the manager's own (installed under another
// ServiceAccount or namespace, none of the policies would apply as intended). Together they imply that the
// other policies, identical to the shipped ones, are enforced too.
type Checker struct {
	// Reader reads the installed policies and bindings (the manager's cache).
	Reader client.Reader
	// Client makes the dry run, as the manager.
	Client  client.Client
	Shipped *Shipped
}

// Check returns every problem found; none means the policies are installed as shipped and enforced. An error
// reading them is a problem too: until the check passes, the trust boundary is not proven.
func (c *Checker) Check(ctx context.Context) []Problem {
	var problems []Problem
	for _, p := range c.Shipped.Policies {
		live := &admissionv1.ValidatingAdmissionPolicy{}
		found, err := c.get(ctx, p.Name, live)
		if err != nil {
			problems = append(problems, Problem(fmt.Sprintf("reading ValidatingAdmissionPolicy %s: %v", p.Name, err)))
			continue
		}
		if !found {
			live = nil
		}
		problems = append(problems, comparePolicy(p, live)...)
	}
	for _, b := range c.Shipped.Bindings {
		live := &admissionv1.ValidatingAdmissionPolicyBinding{}
		found, err := c.get(ctx, b.Name, live)
		if err != nil {
			problems = append(problems, Problem(fmt.Sprintf("reading ValidatingAdmissionPolicyBinding %s: %v", b.Name, err)))
			continue
		}
		if !found {
			live = nil
		}
		problems = append(problems, compareBinding(b, live)...)
	}
	for _, p := range c.Shipped.MutatingPolicies {
		live := &admissionv1.MutatingAdmissionPolicy{}
		found, err := c.get(ctx, p.Name, live)
		if err != nil {
			problems = append(problems, Problem(fmt.Sprintf("reading MutatingAdmissionPolicy %s: %v", p.Name, err)))
			continue
		}
		if !found {
			live = nil
		}
		problems = append(problems, compareMutatingPolicy(p, live)...)
	}
	for _, b := range c.Shipped.MutatingBindings {
		live := &admissionv1.MutatingAdmissionPolicyBinding{}
		found, err := c.get(ctx, b.Name, live)
		if err != nil {
			problems = append(problems, Problem(fmt.Sprintf("reading MutatingAdmissionPolicyBinding %s: %v", b.Name, err)))
			continue
		}
		if !found {
			live = nil
		}
		problems = append(problems, compareMutatingBinding(b, live)...)
	}
	return append(problems, c.prove(ctx)...)
}

func (c *Checker) get(ctx context.Context, name string, obj client.Object) (bool, error) {
	err := c.Reader.Get(ctx, client.ObjectKey{Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// prove asks the API server, in a dry run, to create a namespace manager-limits refuses the manager.
func (c *Checker) prove(ctx context.Context) []Problem {
	policy := c.Shipped.policy(managerLimits)
	if policy == "" {
		return []Problem{Problem("no shipped ValidatingAdmissionPolicy is named *" + managerLimits)}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ProbeNamespace}}
	err := c.Client.Create(ctx, ns, client.DryRunAll)
	refusedBy := "ValidatingAdmissionPolicy '" + policy + "'"
	switch {
	case err == nil:
		return []Problem{Problem(fmt.Sprintf("the API server does not enforce ValidatingAdmissionPolicy %s: a dry-run "+
			"create of Namespace %s by the manager was admitted", policy, ProbeNamespace))}
	case (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) && strings.Contains(err.Error(), refusedBy):
		return nil
	default:
		return []Problem{Problem(fmt.Sprintf("a dry-run create of Namespace %s by the manager was not refused by "+
			"ValidatingAdmissionPolicy %s: %v", ProbeNamespace, policy, err))}
	}
}

// policy is the installed name of the shipped policy named name in config/admission (config/default prefixes
// names).
func (s *Shipped) policy(name string) string {
	for _, p := range s.Policies {
		if p.Name == name || strings.HasSuffix(p.Name, "-"+name) {
			return p.Name
		}
	}
	return ""
}
