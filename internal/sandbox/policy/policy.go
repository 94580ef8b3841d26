// Package policy is the simulated ztunnel's L4 authorization: it holds what the real istiod computed for
// ztunnel (converted policies and their attachment to workloads, istiod.go) and decides, for a connection at the
// destination's ztunnel, whether it is allowed and which policy decided, as ztunnel's src/rbac.rs and
// src/state.rs assert_rbac do (checked in upstream_rbac_test.go against ztunnel's own tests, the table in
// internal/authz/authztest that internal/authz is checked against too). It converts nothing: istiod turns
// PeerAuthentication and AuthorizationPolicy objects into these policies.
package policy

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

// Decision is the outcome of Evaluate.
type Decision struct {
	// Allowed reports whether ztunnel lets the connection through.
	Allowed bool
	// Policy is "<ns>/<name>" of the deciding policy: the matching DENY policy
	// (possibly "<root>/istio_converted_static_strict") or the matching ALLOW
	// policy; "" when no single policy decided.
	Policy string
	// Error is ztunnel's error string when denied, "" when allowed.
	Error string
}

func key(namespace, name string) string {
	return namespace + "/" + name
}
