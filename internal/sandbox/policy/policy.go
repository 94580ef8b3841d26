// Package policy is a pure evaluator of Istio ambient L4 security, as enforced by
// ztunnel on the destination side of a connection.
//
// It answers two questions for a simulated ztunnel at connection time:
//   - which mTLS mode (PeerAuthentication) is in effect for a destination workload
//     and port (EffectiveMTLS), and
//   - whether a connection from a peer is allowed by the L4 authorization policy
//     ztunnel would hold for that workload (Evaluate).
//
// The rules follow /work/shared/ISTIO-FACTS.md ("PeerAuthentication in ambient" and
// "AuthorizationPolicy in ambient"); where that file is silent the behaviour of
// istiod's ambient conversion (pilot/pkg/serviceregistry/kube/controller/ambient,
// authorization.go and policies.go) and of ztunnel's matcher (src/rbac.rs,
// src/state.rs assert_rbac) is followed. Each such choice is noted at the code that
// implements it.
package policy

import (
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// Effective mTLS modes reported by EffectiveMTLS and Decision.MTLSMode.
const (
	ModeStrict     = "STRICT"
	ModePermissive = "PERMISSIVE"
	ModeDisable    = "DISABLE"
)

// Defaults applied when Config.RootNamespace or Peer.TrustDomain are empty.
const (
	DefaultRootNamespace = "istio-system"
	DefaultTrustDomain   = "cluster.local"
)

// StaticStrictPolicyName is the name of the DENY policy istiod synthesises in the
// root namespace when any PeerAuthentication exists; it rejects peers without an
// identity on workloads whose effective mode is STRICT (ISTIO-FACTS.md,
// "PeerAuthentication in ambient").
const StaticStrictPolicyName = "istio_converted_static_strict"

// ztunnel's access-log error strings for policy rejections (ISTIO-FACTS.md,
// "ztunnel access logs").
const (
	// ErrPolicyRejectionPrefix starts every policy-rejection error.
	ErrPolicyRejectionPrefix = "connection closed due to policy rejection: "
	// ErrNoAllowMatched is the error when ALLOW policies exist but none matched.
	ErrNoAllowMatched = ErrPolicyRejectionPrefix + "allow policies exist, but none allowed"
	// ErrExplicitlyDeniedPrefix is followed by "<ns>/<name>" of the matching DENY policy.
	ErrExplicitlyDeniedPrefix = ErrPolicyRejectionPrefix + "explicitly denied by: "
)

// Peer is the connecting side.
type Peer struct {
	// Mesh is false for a non-mesh (uncaptured) source: plaintext, no identity,
	// no namespace (ISTIO-FACTS.md: "A non-mesh source has no principal and no
	// namespace").
	Mesh bool
	// Namespace of the peer's identity; meaningful only when Mesh.
	Namespace string
	// ServiceAccount of the peer's identity; meaningful only when Mesh.
	ServiceAccount string
	// TrustDomain of the peer's identity; DefaultTrustDomain when empty.
	TrustDomain string
	// IP is the source address as the destination ztunnel sees it.
	IP string
}

// Workload is the destination.
type Workload struct {
	Namespace string
	// Name is the pod's name: istiod attaches policies to workloads by it.
	Name   string
	Labels map[string]string
	IP     string
	// Port is the destination (container/app) port.
	Port int
}

// Config is the security configuration visible to istiod.
type Config struct {
	// RootNamespace is the mesh root namespace; DefaultRootNamespace when empty.
	RootNamespace         string
	PeerAuthentications   []*securityv1.PeerAuthentication
	AuthorizationPolicies []*securityv1.AuthorizationPolicy
}

// Decision is the outcome of Evaluate.
type Decision struct {
	// Allowed reports whether ztunnel lets the connection through.
	Allowed bool
	// MTLSMode is the effective mode for the workload and port: ModeStrict,
	// ModePermissive or ModeDisable (see EffectiveMTLS).
	MTLSMode string
	// Policy is "<ns>/<name>" of the deciding policy: the matching DENY policy
	// (possibly "<root>/istio_converted_static_strict") or the matching ALLOW
	// policy; "" when no single policy decided.
	Policy string
	// Error is ztunnel's error string when denied, "" when allowed.
	Error string
}

func (c Config) rootNamespace() string {
	if c.RootNamespace == "" {
		return DefaultRootNamespace
	}
	return c.RootNamespace
}

func (c Config) hasPeerAuthentication() bool {
	for _, pa := range c.PeerAuthentications {
		if pa != nil {
			return true
		}
	}
	return false
}

func key(namespace, name string) string {
	return namespace + "/" + name
}

// isSubset reports whether every selector label is present with the same value in
// labels (an empty selector selects everything).
func isSubset(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
