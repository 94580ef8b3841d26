package labs

import (
	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// HBONERequests is how many requests the HBONE lab sends (the guide loops five times).
const HBONERequests = 5

// catalogue is the lab guide (seed/ambient-mode-lab-guide.ko.md), lab by lab, step by step.
var catalogue = map[labsv1.LabName][]Step{
	// Lab 1: mTLS between ztunnels, seen in their access logs.
	labsv1.LabMTLS: {
		{Name: "client-allowed", Verify: true, Kind: KindProbe, Caller: CallerClient, Expect: probe.ExpectAllowed,
			Description: "The in-mesh client calls the target (curl http://backend.demo/get → 200)"},
		{Name: "outbound-identity", Verify: true, Kind: KindEvidence, Evidence: &Evidence{Since: "client-allowed",
			Direction: "outbound", SrcCaller: CallerClient},
			Description: "The source ztunnel logs the outbound connection with the client's SPIFFE identity"},
		{Name: "inbound-identity", Verify: true, Kind: KindEvidence, Evidence: &Evidence{Since: "client-allowed",
			Direction: "inbound", SrcCaller: CallerClient, DstTarget: true},
			Description: "The destination ztunnel logs the inbound connection with the target's SPIFFE identity"},
	},
	// Lab 2: PeerAuthentication STRICT refuses plaintext from outside the mesh; PERMISSIVE lets it in.
	// The plaintext refusal under STRICT is shown before anything is weakened (STRICT's DENY policy decides before
	// any ALLOW policy, and the destination ztunnel's line names it), so the weakened window holds only the two
	// changes and what must be seen inside it.
	labsv1.LabPeerAuthentication: {
		{Name: "baseline-strict", Verify: true, Kind: KindCheckMode,
			Description: "The target's effective mTLS mode is STRICT"},
		{Name: "client-allowed", Verify: true, Kind: KindProbe, Caller: CallerClient, Expect: probe.ExpectAllowed,
			Description: "The in-mesh client is allowed (ztunnel applies mTLS)"},
		{Name: "create-non-mesh-namespace", Verify: true, Kind: KindCreateFixture, Fixture: FixtureNonMeshNamespace,
			Description: "Create a namespace outside the mesh (no ambient label)"},
		{Name: "non-mesh-denied", Verify: true, Kind: KindProbe, Caller: CallerNonMesh, Expect: probe.ExpectDenied, Denier: DenierStrict,
			Description: "Plaintext from outside the mesh is reset under STRICT (curl 56)"},
		{Name: "strict-rejection-logged", Verify: true, Kind: KindEvidence, Evidence: &Evidence{Since: "non-mesh-denied",
			Direction: "inbound", Plaintext: true, PolicyRejected: true, DeniedByStrict: true},
			Description: "The destination ztunnel logs the plaintext connection denied by STRICT (istio_converted_static_strict)"},
		{Name: "set-aside-policy", Kind: KindSetAside, Weakens: true,
			Description: "Set the AuthorizationPolicy aside, so only PeerAuthentication decides for plaintext"},
		{Name: "set-permissive", Kind: KindSetPermissive, Weakens: true,
			Description: "Make the target PERMISSIVE (spec.scope: only its pods and port by default)"},
		{Name: "non-mesh-allowed", Kind: KindProbe, Caller: CallerNonMesh, Expect: probe.ExpectAllowed, Observes: "set-permissive",
			Description: "Plaintext from outside the mesh is allowed under PERMISSIVE (200), from the moment the change is in force"},
		{Name: "bystander-denied", Kind: KindProbe, Caller: CallerNonMesh, Bystander: true, Expect: probe.ExpectDenied,
			Denier:      DenierStrict,
			Description: "Meanwhile another enrolled workload still refuses plaintext (Workload scope)"},
		{Name: "restore-strict", Kind: KindRestore, Restores: []string{mesh.KindPeerAuthentication, mesh.KindAuthorizationPolicy},
			Description: "Restore STRICT and the AuthorizationPolicy"},
		{Name: "non-mesh-denied-again", Kind: KindProbe, Caller: CallerNonMesh, Expect: probe.ExpectDenied, Denier: DenierStrict,
			Observes:    "restore-strict",
			Description: "Plaintext from outside the mesh is reset again"},
		{Name: "remove-non-mesh-namespace", Verify: true, Kind: KindRemoveFixture, Fixture: FixtureNonMeshNamespace,
			Description: "Remove the non-mesh namespace"},
	},
	// Lab 3: an L4 AuthorizationPolicy by SPIFFE identity keeps an attacker out.
	labsv1.LabAuthorizationPolicy: {
		{Name: "create-attacker", Verify: true, Kind: KindCreateFixture, Fixture: FixtureAttacker,
			Description: "Create the attacker ServiceAccount in the target namespace"},
		{Name: "set-aside-policy", Kind: KindSetAside, Weakens: true,
			Description: "Set the AuthorizationPolicy aside to compare before and after"},
		{Name: "attacker-allowed-without-policy", Kind: KindProbe, Caller: CallerAttacker, Expect: probe.ExpectAllowed,
			Observes:    "set-aside-policy",
			Description: "Without the policy the attacker reaches the target (200), from the moment it is set aside"},
		{Name: "reapply-policy", Kind: KindRestore, Restores: []string{mesh.KindAuthorizationPolicy},
			Description: "Re-apply the AuthorizationPolicy"},
		{Name: "client-allowed", Verify: true, Kind: KindProbe, Caller: CallerClient, Expect: probe.ExpectAllowed,
			Description: "The client's identity is in the policy's principals (200)"},
		{Name: "attacker-denied", Verify: true, Kind: KindProbe, Caller: CallerAttacker, Expect: probe.ExpectDenied, Denier: DenierPolicy,
			Observes:    "reapply-policy",
			Description: "The attacker's identity is not: ztunnel rejects it (000, curl 56)"},
		{Name: "rejection-logged", Verify: true, Kind: KindEvidence, Evidence: &Evidence{Since: "attacker-denied",
			Direction: "inbound", SrcCaller: CallerAttacker, PolicyRejected: true},
			Description: "The destination ztunnel logs the policy rejection for the attacker's identity"},
		{Name: "remove-attacker", Verify: true, Kind: KindRemoveFixture, Fixture: FixtureAttacker,
			Description: "Remove the attacker ServiceAccount"},
	},
	// Lab 4: what ambient costs compared with sidecars.
	labsv1.LabFootprint: {
		{Name: "no-sidecars", Verify: true, Kind: KindNoSidecars,
			Description: "Target-namespace pods run one container, without istio-proxy or istio-init"},
		{Name: "ztunnel-usage", Verify: true, Kind: KindZtunnelUsage,
			Description: "Measure ztunnel per node (kubectl top, else its requests)"},
		{Name: "sidecar-estimate", Verify: true, Kind: KindSidecarEstimate,
			Description: "Estimate sidecar mode for the live mesh pods and compare"},
	},
	// Lab 5: HBONE tunnels on port 15008 in ztunnel's logs.
	labsv1.LabHBONE: {
		{Name: "client-requests", Verify: true, Kind: KindProbe, Caller: CallerClient, Expect: probe.ExpectAllowed, Count: HBONERequests,
			Description: "The client sends several requests"},
		{Name: "hbone-tunnel", Verify: true, Kind: KindEvidence, Evidence: &Evidence{Since: "client-requests",
			Direction: "inbound", SrcCaller: CallerClient, DstTarget: true, HBONE: true, MinLines: HBONERequests},
			Description: "Each went through an HBONE tunnel: dst.addr on 15008, dst.hbone_addr, SPIFFE IDs on both ends"},
	},
	// The policy audit: not a lab of the guide, but its question asked of every policy a cluster has. Each policy's
	// probes and their expectations come from its spec (internal/authz), never from istiod or the data plane.
	labsv1.LabPolicyAudit: {
		{Name: "create-non-mesh-namespace", Verify: true, Kind: KindCreateFixture, Fixture: FixtureNonMeshNamespace,
			Description: "Create a namespace outside the mesh: plaintext probes run there"},
		{Name: "create-attacker", Verify: true, Kind: KindCreateFixture, Fixture: FixtureAttacker,
			Description: "Create the attacker ServiceAccount: an identity no policy names"},
		{Name: "audit-policies", Verify: true, Kind: KindAudit,
			Description: "Prove every PeerAuthentication and AuthorizationPolicy that applies to the audited namespaces, from every node"},
		{Name: "remove-attacker", Verify: true, Kind: KindRemoveFixture, Fixture: FixtureAttacker,
			Description: "Remove the attacker ServiceAccount"},
		{Name: "remove-non-mesh-namespace", Verify: true, Kind: KindRemoveFixture, Fixture: FixtureNonMeshNamespace,
			Description: "Remove the non-mesh namespace"},
	},
}
