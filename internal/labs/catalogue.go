// Package labs is the lab catalogue: each lab of the ambient-mode lab guide as an ordered plan of small steps,
// with the outcome the guide expects for each. Expectations live here, never in the data plane that is probed.
package labs

import (
	"fmt"
	"slices"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// Kind is what a step does.
type Kind string

// Step kinds.
const (
	// KindProbe runs one probe pod and compares its outcome with the expectation.
	KindProbe Kind = "Probe"
	// KindCheckMode expects the target's effective mTLS mode (from every PeerAuthentication that applies) STRICT.
	KindCheckMode Kind = "CheckMode"
	// KindSetAside takes the AuthorizationPolicy out of force (journaled first).
	KindSetAside Kind = "SetAside"
	// KindSetPermissive sets the PeerAuthentication to PERMISSIVE (journaled first).
	KindSetPermissive Kind = "SetPermissive"
	// KindRestore puts the journaled objects of the step's Restores back (PeerAuthentication STRICT).
	KindRestore Kind = "Restore"
	// KindCreateFixture creates a temporary object the lab needs (non-mesh namespace, attacker ServiceAccount).
	KindCreateFixture Kind = "CreateFixture"
	// KindRemoveFixture removes it.
	KindRemoveFixture Kind = "RemoveFixture"
	// KindEvidence looks for matching ztunnel access-log lines in the step's time window.
	KindEvidence Kind = "Evidence"
	// KindNoSidecars checks the target namespace's pods carry no sidecar.
	KindNoSidecars Kind = "NoSidecars"
	// KindZtunnelUsage measures the ztunnel pods (metrics.k8s.io, else their requests).
	KindZtunnelUsage Kind = "ZtunnelUsage"
	// KindSidecarEstimate compares ambient with the sidecars it replaces.
	KindSidecarEstimate Kind = "SidecarEstimate"
	// KindAudit proves every policy of the audited namespaces with probes derived from its spec, from every node.
	KindAudit Kind = "Audit"
)

// Caller is who a probe runs as.
type Caller string

// Callers.
const (
	// CallerClient is the in-mesh client (spec.client.serviceAccount in the target namespace).
	CallerClient Caller = "client"
	// CallerNonMesh is a pod in a namespace outside the mesh: plaintext, no identity.
	CallerNonMesh Caller = "non-mesh"
	// CallerAttacker is an in-mesh pod with the attacker ServiceAccount, which the policy does not allow.
	CallerAttacker Caller = "attacker"
)

// Fixture is a temporary object a lab creates and removes.
type Fixture string

// Fixtures.
const (
	FixtureNonMeshNamespace Fixture = "non-mesh-namespace"
	FixtureAttacker         Fixture = "attacker-serviceaccount"
)

// Evidence describes the access-log lines an evidence step needs.
type Evidence struct {
	// Since names the step whose start opens the time window (the window closes when the evidence step runs).
	Since string
	// Direction is "inbound" or "outbound".
	Direction string
	// SrcCaller, when set, requires src.identity to be that caller's SPIFFE ID.
	SrcCaller Caller
	// DstTarget requires dst.identity to be the target's SPIFFE ID.
	DstTarget bool
	// HBONE requires dst.addr on port 15008 with dst.hbone_addr.
	HBONE bool
	// PolicyRejected requires a policy rejection error (true) or no error (false).
	PolicyRejected bool
	// Plaintext requires a source without identity (outside the mesh).
	Plaintext bool
	// DeniedByStrict requires the denial to name <root namespace>/istio_converted_static_strict, the DENY
	// policy istiod derives from STRICT PeerAuthentication (ISTIO-FACTS.md).
	DeniedByStrict bool
	// MinLines is how many matching lines are needed (default 1).
	MinLines int
}

// Denier is what refuses a denied probe in the lab guide's story.
type Denier string

// Deniers of the guide's denied probes.
const (
	// DenierStrict: STRICT mTLS, i.e. the DENY policy istiod generates from the PeerAuthentication
	// (<root>/istio_converted_static_strict, or <ns>/converted_peer_authentication_<name> for port-level
	// policies; ISTIO-FACTS.md).
	DenierStrict Denier = "STRICT mTLS"
	// DenierPolicy: the AuthorizationPolicy (no ALLOW rule matched, or it denied explicitly).
	DenierPolicy Denier = "the AuthorizationPolicy"
)

// Step is one planned step of a lab.
type Step struct {
	Lab         labsv1.LabName
	Name        string
	Description string
	Kind        Kind
	// Probe steps.
	Caller Caller
	Expect probe.Expectation
	Count  int
	// Denier, on a denied probe, is who must have denied it: the step passes only when the destination
	// ztunnel's line for this very probe names it (a reset alone does not say who refused).
	Denier Denier
	// Observes, on a probe, names the step of the same lab whose change the probe is to see take effect: its
	// caller's observer, running since before that change, must see the expected outcome begin after the change
	// was applied. Seen before it, the mesh was not enforcing what it should, and the step fails.
	Observes string
	// Bystander, on a probe, calls another enrolled workload than the target (one the run does not weaken).
	Bystander bool
	// Restore steps: which journaled kinds to put back.
	Restores []string
	// Fixture steps.
	Fixture Fixture
	// Evidence steps.
	Evidence *Evidence
	// Weakens is true for steps that leave the mesh weaker than found (counted in exposure).
	Weakens bool
	// Verify is true for steps that Verify mode runs too: those that assert the protections as they stand and
	// change no PeerAuthentication or AuthorizationPolicy.
	Verify bool
}

// Expected is the step's expectation in the words recorded in status.
func (s Step) Expected() string {
	switch s.Kind {
	case KindProbe:
		who := string(s.Caller)
		if s.Bystander {
			who += " → bystander"
		}
		e := fmt.Sprintf("%s denied (connection reset, curl 56)", who)
		if s.Expect == probe.ExpectAllowed {
			e = fmt.Sprintf("%s allowed (HTTP 2xx)", who)
		}
		if s.Denier != "" {
			e += " by " + string(s.Denier)
		}
		if s.Observes != "" {
			e += ", first seen after " + s.Observes
		}
		return e
	case KindCheckMode:
		return "target's effective mTLS mode STRICT"
	case KindSetAside:
		return "AuthorizationPolicy set aside"
	case KindSetPermissive:
		return "PeerAuthentication mode PERMISSIVE, target no longer STRICT"
	case KindRestore:
		if slices.Contains(s.Restores, mesh.KindPeerAuthentication) {
			return "originals restored and read back (PeerAuthentication STRICT)"
		}
		return "AuthorizationPolicy restored as found and read back"
	case KindCreateFixture:
		return string(s.Fixture) + " created"
	case KindRemoveFixture:
		return string(s.Fixture) + " removed"
	case KindEvidence:
		return s.Evidence.describe()
	case KindNoSidecars:
		return "one container per pod, no istio-proxy or istio-init"
	case KindZtunnelUsage:
		return "a ready ztunnel pod on every node"
	case KindSidecarEstimate:
		return "sidecar-mode estimate recorded in status.footprint"
	case KindAudit:
		return "every policy that applies to the audited namespaces enforced as its spec says (or as istiod narrowed it), from every node"
	}
	return string(s.Kind)
}

func (e *Evidence) describe() string {
	d := fmt.Sprintf("%s connection complete", e.Direction)
	if e.SrcCaller != "" {
		d += fmt.Sprintf(" with src.identity of %s", e.SrcCaller)
	}
	if e.DstTarget {
		d += " with dst.identity of the target"
	}
	if e.HBONE {
		d += " over HBONE (dst.addr :15008, dst.hbone_addr)"
	}
	if e.Plaintext {
		d += " from a plaintext source (no src.identity)"
	}
	if e.PolicyRejected {
		d += " rejected by policy"
	}
	if e.DeniedByStrict {
		d += " by istio_converted_static_strict"
	}
	if e.MinLines > 1 {
		d += fmt.Sprintf(" (at least %d lines)", e.MinLines)
	}
	return d
}

// ID names the step uniquely within a run.
func (s Step) ID() string { return fmt.Sprintf("%s/%s", s.Lab, s.Name) }

// Mutates tells whether the step changes mesh policy (and so needs the mesh lock).
func (s Step) Mutates() bool {
	return s.Kind == KindSetAside || s.Kind == KindSetPermissive || s.Kind == KindRestore
}

// Plan is the ordered steps of the given labs in Lab mode.
func Plan(names []labsv1.LabName) ([]Step, error) { return PlanMode(names, labsv1.ModeLab) }

// PlanMode is the ordered steps of the given labs in a mode: Lab runs every step; Verify only those marked
// Verify, none of which changes the mesh, and none of which waits for a change to take effect.
func PlanMode(names []labsv1.LabName, mode labsv1.Mode) ([]Step, error) {
	var plan []Step
	for _, name := range names {
		steps, ok := catalogue[name]
		if !ok {
			return nil, fmt.Errorf("lab %q is not in the catalogue", name)
		}
		for _, s := range steps {
			if mode == labsv1.ModeVerify {
				if !s.Verify {
					continue
				}
				s.Observes = ""
			}
			s.Lab = name
			plan = append(plan, s)
		}
	}
	return plan, nil
}

// Mutates tells whether any step of the plan changes mesh policy.
func Mutates(plan []Step) bool {
	for _, s := range plan {
		if s.Mutates() {
			return true
		}
	}
	return false
}
