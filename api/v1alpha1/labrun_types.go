package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabName names one lab of the ambient-mode lab guide.
// +kubebuilder:validation:Enum=mtls;peer-authentication;authorization-policy;footprint;hbone;policy-audit
type LabName string

// The five labs, in the order of the lab guide, and the policy audit.
const (
	LabMTLS                LabName = "mtls"
	LabPeerAuthentication  LabName = "peer-authentication"
	LabAuthorizationPolicy LabName = "authorization-policy"
	LabFootprint           LabName = "footprint"
	LabHBONE               LabName = "hbone"
	// LabPolicyAudit proves every PeerAuthentication and AuthorizationPolicy that applies to the audited
	// namespaces (spec.audit) with probes derived from each policy's spec. It changes nothing and takes no lock.
	LabPolicyAudit LabName = "policy-audit"
)

// AllLabs lists every lab of the guide in its order; it is the default of spec.labs (the policy audit is not
// among them: name it).
var AllLabs = []LabName{LabMTLS, LabPeerAuthentication, LabAuthorizationPolicy, LabFootprint, LabHBONE}

// LabRunSpec is what to run and against which mesh. The spec cannot change once the run exists: create a new
// LabRun to run again.
// +kubebuilder:validation:XValidation:rule="duration(self.probe.settleTimeout) <= duration(self.maxExposure)",message="probe.settleTimeout must not be longer than maxExposure: a weakened mesh must be restored before a probe could give up"
// +kubebuilder:validation:XValidation:rule="duration(self.probe.requestTimeout) <= duration(self.probe.settleTimeout)",message="probe.requestTimeout must not be longer than probe.settleTimeout"
// +kubebuilder:validation:XValidation:rule="!(self.labs.exists(l, l == 'peer-authentication' || l == 'authorization-policy')) || has(self.mesh.authorizationPolicy)",message="mesh.authorizationPolicy is required when the peer-authentication or authorization-policy lab runs"
// +kubebuilder:validation:XValidation:rule="!has(self.audit) || self.labs.exists(l, l == 'policy-audit')",message="audit is read only by the policy-audit lab: name it in labs, or leave audit out"
type LabRunSpec struct {
	// Labs to run, in this order. Each name at most once. Defaults to all five labs of the guide:
	// mtls, peer-authentication, authorization-policy, footprint, hbone. policy-audit proves every policy of the
	// namespaces spec.audit names; it changes nothing, in either mode.
	// +kubebuilder:default={mtls,peer-authentication,authorization-policy,footprint,hbone}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=6
	// +kubebuilder:validation:XValidation:rule="self.all(l, self.exists_one(m, m == l))",message="labs must not name a lab twice"
	// +listType=atomic
	// +optional
	Labs []LabName `json:"labs,omitempty"`

	// Target is the in-mesh Service the probes call (the guide's backend).
	Target TargetSpec `json:"target"`

	// Client is the in-mesh identity the allowed probes run as (the guide's frontend).
	// +kubebuilder:default={}
	// +optional
	Client ClientSpec `json:"client,omitempty"`

	// Mesh names the Istio objects the labs read and temporarily change.
	// +kubebuilder:default={}
	// +optional
	Mesh MeshSpec `json:"mesh,omitempty"`

	// Probe tunes the probe pods.
	// +kubebuilder:default={}
	// +optional
	Probe ProbeSpec `json:"probe,omitempty"`

	// Footprint tunes the footprint lab's sidecar-mode estimate.
	// +kubebuilder:default={}
	// +optional
	Footprint FootprintSpec `json:"footprint,omitempty"`

	// Audit says what the policy-audit lab audits.
	// +optional
	Audit *AuditSpec `json:"audit,omitempty"`

	// Mode is what the run does. Lab (default): the lab guide, weakening the mesh for a while to show what each
	// protection does. Verify: asserts the protections as they stand and changes no PeerAuthentication or
	// AuthorizationPolicy (no mesh lock, exposure 0): the client is allowed, plaintext from outside the mesh is
	// refused by STRICT, the attacker identity is refused by the AuthorizationPolicy, the destination ztunnel logs
	// both refusals, mTLS and HBONE evidence carries SPIFFE identities.
	// +kubebuilder:default=Lab
	// +optional
	Mode Mode `json:"mode,omitempty"`

	// Scope is how much of the mesh the peer-authentication lab weakens while it shows PERMISSIVE:
	// Workload (default): a temporary workload-selector PeerAuthentication in the target namespace selects
	// exactly the target Service's pods and makes only the target port PERMISSIVE (portLevelMtls); the mesh-wide
	// policy is never touched. Namespace: a temporary namespace-wide PeerAuthentication in the target namespace.
	// Mesh: the lab guide's literal step, the mesh-wide PeerAuthentication set PERMISSIVE (every workload in
	// every namespace then accepts plaintext). Temporary objects are journaled and removed on restore like any
	// other change.
	// +kubebuilder:default=Workload
	// +optional
	Scope Scope `json:"scope,omitempty"`

	// MaxExposure caps how long the mesh may stay weakened (PeerAuthentication not STRICT or the
	// AuthorizationPolicy set aside) in one run. When it runs out the mesh is restored at once and the step fails.
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('1h')",message="maxExposure must be a positive duration of at most 1h"
	// +optional
	MaxExposure *metav1.Duration `json:"maxExposure,omitempty"`

	// DryRun lists the planned steps and the changes they would make in status, and changes nothing.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// Mode is what a run does: teach by weakening (Lab) or assert without weakening (Verify).
// +kubebuilder:validation:Enum=Lab;Verify
type Mode string

// Modes.
const (
	ModeLab    Mode = "Lab"
	ModeVerify Mode = "Verify"
)

// Scope is how much of the mesh a run weakens.
// +kubebuilder:validation:Enum=Workload;Namespace;Mesh
type Scope string

// Scopes.
const (
	ScopeWorkload  Scope = "Workload"
	ScopeNamespace Scope = "Namespace"
	ScopeMesh      Scope = "Mesh"
)

// TargetSpec is the Service under test.
type TargetSpec struct {
	// Namespace of the Service. Defaults to the LabRun's namespace. It must be enrolled in ambient mode
	// (label istio.io/dataplane-mode=ambient) and enabled for runs by an administrator (label
	// labs.ambientlab.io/enabled=true). The requester must be allowed to create pods there: probe pods run in it.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Service is the name of the target Service (a DNS-1035 label), e.g. backend.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Service string `json:"service"`

	// Port is the Service port the probes call.
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// Path is the HTTP path the probes request.
	// +kubebuilder:default="/get"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^\s]*$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:cntrl:]]')",message="target.path must not contain control characters (NUL, DEL, …)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)')",message="target.path has a % that does not start a two-digit hex escape"
	// +kubebuilder:validation:XValidation:rule="isURL('http://target.invalid' + self)",message="target.path must make a valid URL after http://<service>"
	// +optional
	Path string `json:"path,omitempty"`
}

// ClientSpec is the identity of the allowed caller. Its probes run in the target namespace.
type ClientSpec struct {
	// ServiceAccount the client probes run as; in the mesh it becomes
	// spiffe://<trustDomain>/ns/<target namespace>/sa/<serviceAccount>. Admitted only if the requester may create
	// pods in the target namespace (probe pods get no API token).
	// +kubebuilder:default=frontend
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// AuditSpec is what the policy-audit lab proves.
type AuditSpec struct {
	// Namespaces whose AuthorizationPolicies and PeerAuthentications the audit proves, together with the
	// mesh-wide ones of the root namespace that apply there. Defaults to the target's namespace. Each must be
	// enabled for LabRuns (labs.ambientlab.io/enabled=true), and the requester must be allowed to list
	// AuthorizationPolicies and PeerAuthentications and to create pods in each: the audit calls as the
	// ServiceAccounts a policy names only in these namespaces.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`
}

// MeshSpec names the Istio objects of the mesh under test.
type MeshSpec struct {
	// RootNamespace is Istio's root namespace, where the mesh-wide PeerAuthentication lives. It is the
	// operator's configuration (the manager's --mesh-root-namespace, default istio-system), not the run's: leave
	// it empty, or name the operator's; a run naming another is refused (admission, else preflight: Failed,
	// nothing changed).
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	RootNamespace string `json:"rootNamespace,omitempty"`

	// PeerAuthentication is the name of the mesh-wide PeerAuthentication in the root namespace. The
	// peer-authentication lab sets it PERMISSIVE for a while: the requester must be allowed to update it.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	PeerAuthentication string `json:"peerAuthentication,omitempty"`

	// AuthorizationPolicy is the L4 policy that guards the target (the guide's backend-allow-frontend-only).
	// Required by the peer-authentication and authorization-policy labs, which set it aside for a while: the
	// requester must be allowed to update it.
	// +optional
	AuthorizationPolicy *ObjectRef `json:"authorizationPolicy,omitempty"`

	// Ztunnel says where the ztunnel pods run, for readiness checks and log evidence. It is the operator's
	// configuration (the manager's --ztunnel-namespace and --ztunnel-selector, default istio-system and
	// app=ztunnel), not the run's: leave it empty, or repeat the operator's; a run naming another is refused.
	// +optional
	Ztunnel ZtunnelSpec `json:"ztunnel,omitempty"`

	// TrustDomain of the mesh's SPIFFE identities.
	// +kubebuilder:default=cluster.local
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`
}

// ObjectRef names a namespaced object.
type ObjectRef struct {
	// Namespace of the object. Defaults to the target namespace.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// ZtunnelSpec repeats where the operator reads ztunnel pods; it cannot point the operator elsewhere.
type ZtunnelSpec struct {
	// Namespace the ztunnel DaemonSet runs in: empty, or the operator's (--ztunnel-namespace, default
	// istio-system). A run naming another is refused.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Selector is the label selector of the ztunnel pods: empty, or exactly the operator's (--ztunnel-selector,
	// default app: ztunnel). A run naming another is refused.
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$') && (k.contains('/') ? size(k.split('/')[0]) <= 253 && size(k.split('/')[1]) <= 63 : size(k) <= 63))",message="mesh.ztunnel.selector keys must be label keys: an optional DNS subdomain prefix and '/', then a name of at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
	// +optional
	Selector map[string]LabelValue `json:"selector,omitempty"`
}

// LabelValue is a label value as Kubernetes allows it.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
type LabelValue string

// Labels is the selector as a plain label set.
func (z ZtunnelSpec) Labels() map[string]string {
	out := make(map[string]string, len(z.Selector))
	for k, v := range z.Selector {
		out[k] = string(v)
	}
	return out
}

// ProbeSpec tunes the probe pods.
type ProbeSpec struct {
	// Image runs `manager probe`. Defaults to the operator's own image (the manager's --probe-image flag).
	// Setting it needs the custom permission verb set-probe-image on labruns in the LabRun's namespace, and the
	// image must be listed in the ConfigMap labrun-system/labrun-probe-images. Pin it by digest
	// (registry/name@sha256:…) for a reproducible check.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[^\s]+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:cntrl:]]')",message="probe.image must not contain control characters"
	// +optional
	Image string `json:"image,omitempty"`

	// RequestTimeout bounds one HTTP request of a probe (curl's --max-time).
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="requestTimeout must be a positive duration"
	// +optional
	RequestTimeout *metav1.Duration `json:"requestTimeout,omitempty"`

	// SettleTimeout is how long a probe keeps retrying, with fresh connections, until the expected outcome
	// shows; it bounds how long a policy change may take to reach the data plane.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="settleTimeout must be a positive duration"
	// +optional
	SettleTimeout *metav1.Duration `json:"settleTimeout,omitempty"`

	// Coverage is which node calls which endpoint in Verify mode, where every node with a ztunnel probes the
	// target's endpoints. Pairs (default): each node calls at least two endpoints and each endpoint is called from
	// at least two nodes (where there are two), so a failure is still laid at its node, with connections growing
	// with nodes plus endpoints; with one or two endpoints that is every pair. Matrix: every node calls every
	// endpoint (nodes times endpoints connections; for small clusters).
	// +kubebuilder:default=Pairs
	// +optional
	Coverage Coverage `json:"coverage,omitempty"`
}

// Coverage is which node calls which endpoint in Verify mode.
// +kubebuilder:validation:Enum=Pairs;Matrix
type Coverage string

const (
	CoveragePairs  Coverage = "Pairs"
	CoverageMatrix Coverage = "Matrix"
)

// FootprintSpec holds the per-sidecar cost the footprint lab uses to estimate sidecar mode.
type FootprintSpec struct {
	// SidecarMemory is the memory one Envoy sidecar would take (the lab guide's 50 MB), at most 64Gi.
	// +kubebuilder:default="50M"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="must be a positive quantity"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Gi')) <= 0",message="footprint.sidecarMemory must be at most 64Gi"
	// +optional
	SidecarMemory *resource.Quantity `json:"sidecarMemory,omitempty"`

	// SidecarCPU is the CPU one Envoy sidecar would take (the lab guide's 100m), at most 64 cores.
	// +kubebuilder:default="100m"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="must be a positive quantity"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64')) <= 0",message="footprint.sidecarCPU must be at most 64 (cores)"
	// +optional
	SidecarCPU *resource.Quantity `json:"sidecarCPU,omitempty"`
}

// FootprintStatus compares the ambient data plane with the sidecars it replaces.
type FootprintStatus struct {
	// Nodes in the cluster (one ztunnel each).
	Nodes int32 `json:"nodes"`
	// ZtunnelPods found by the ztunnel selector.
	ZtunnelPods int32 `json:"ztunnelPods"`
	// MeshPods is the number of pods in ambient-enrolled namespaces (each would carry a sidecar in sidecar mode).
	MeshPods int32 `json:"meshPods"`
	// Source of the ztunnel figures: metrics.k8s.io (live usage) or requests (from the pod specs).
	Source string `json:"source"`
	// AmbientCPU is the CPU of all ztunnel pods.
	AmbientCPU resource.Quantity `json:"ambientCPU"`
	// AmbientMemory is the memory of all ztunnel pods.
	AmbientMemory resource.Quantity `json:"ambientMemory"`
	// SidecarCPU is the estimated CPU of sidecar mode: meshPods × spec.footprint.sidecarCPU.
	SidecarCPU resource.Quantity `json:"sidecarCPU"`
	// SidecarMemory is the estimated memory of sidecar mode: meshPods × spec.footprint.sidecarMemory.
	SidecarMemory resource.Quantity `json:"sidecarMemory"`
	// SavedCPU is SidecarCPU − AmbientCPU (negative when ambient costs more, e.g. on a small cluster).
	SavedCPU resource.Quantity `json:"savedCPU"`
	// SavedMemory is SidecarMemory − AmbientMemory.
	SavedMemory resource.Quantity `json:"savedMemory"`
}

// Phase is where a run is.
// +kubebuilder:validation:Enum=Pending;Queued;Running;Restoring;Succeeded;Failed
type Phase string

// Phases of a run.
const (
	PhasePending   Phase = "Pending"
	PhaseQueued    Phase = "Queued"
	PhaseRunning   Phase = "Running"
	PhaseRestoring Phase = "Restoring"
	PhaseSucceeded Phase = "Succeeded"
	PhaseFailed    Phase = "Failed"
)

// Verdict is a step's outcome.
// +kubebuilder:validation:Enum=Pending;Running;Pass;Fail;Error;Skipped
type Verdict string

// Step verdicts.
const (
	VerdictPending Verdict = "Pending"
	VerdictRunning Verdict = "Running"
	VerdictPass    Verdict = "Pass"
	VerdictFail    Verdict = "Fail"
	VerdictError   Verdict = "Error"
	VerdictSkipped Verdict = "Skipped"
)

// StepResult is one step of one lab: what was expected and what was observed.
type StepResult struct {
	// Lab the step belongs to.
	Lab LabName `json:"lab"`

	// Name of the step, unique within its lab, e.g. client-allowed.
	Name string `json:"name"`

	// Description says what the step does, in the words of the lab guide.
	// +optional
	Description string `json:"description,omitempty"`

	// Expected outcome, e.g. allowed (HTTP 200), denied (connection reset, curl 56), or the evidence sought.
	Expected string `json:"expected"`

	// Observed outcome, in the same terms as Expected (at most 2048 bytes: a longer one is cut short and ends
	// in "…").
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Observed string `json:"observed,omitempty"`

	// Verdict: Pass when Observed matches Expected; Fail when it does not; Error when the step could not tell;
	// Skipped when it did not run.
	Verdict Verdict `json:"verdict"`

	// Change is the mesh change this step makes (or, in a dry run, would make), if any.
	// +optional
	Change string `json:"change,omitempty"`

	// HTTPCode is the HTTP status the probe got; 0 means no HTTP response (curl's 000).
	// +optional
	HTTPCode *int32 `json:"httpCode,omitempty"`

	// ExitCode is the curl-style exit code: 0 on an HTTP response, 56 connection reset, 7 refused,
	// 28 timeout, 6 DNS failure.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`

	// Attempts is how many requests the probe made (each on a fresh connection).
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// Settle is how long it took until the expected outcome showed (how long a policy change took to
	// reach the data plane).
	// +optional
	Settle *metav1.Duration `json:"settle,omitempty"`

	// Evidence holds the log lines or facts the verdict rests on (at most 10, each at most 2048 bytes: a longer
	// line is cut short and ends in "…").
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=2048
	// +optional
	Evidence []string `json:"evidence,omitempty"`

	// Message explains the verdict in a sentence (at most 2048 bytes: a longer one is cut short and ends in
	// "…").
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Message string `json:"message,omitempty"`

	// Coverage is what each node saw, for a step that probes from every node and to every endpoint: one
	// entry per source node (the caller ran there; that node's ztunnel sends) and one per endpoint of the
	// target (its node's ztunnel enforces inbound). A failure names the node.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Coverage []NodeResult `json:"coverage,omitempty"`

	// Policies is the policy-audit lab's verdict on each policy it audited, one line per policy, those not
	// enforced first (at most 64; the reports hold every probe).
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Policies []PolicyResult `json:"policies,omitempty"`

	// EvidenceSources are the ztunnel pods whose access logs were read for this step's evidence or for who
	// denied its connections: every pod the ztunnel namespace and selector matched when the step last read the
	// logs, whether or not it had lines for the step. Empty for a step that read no ztunnel log. At most 64,
	// ordered by node and name.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	EvidenceSources []EvidenceSource `json:"evidenceSources,omitempty"`

	// StartTime is when the step started (microsecond precision: evidence windows and reaction latency are
	// measured from it).
	// +optional
	StartTime *metav1.MicroTime `json:"startTime,omitempty"`

	// CompletionTime is when the step ended; for a step that changes the mesh, when it began writing its change
	// (the later steps count from it, and it goes on to read the change back).
	// +optional
	CompletionTime *metav1.MicroTime `json:"completionTime,omitempty"`
}

// PolicyVerdict is what the policy audit found of one policy.
// +kubebuilder:validation:Enum=Enforced;NotEnforced;EnforcedDifferently;NoEffect;Untestable
type PolicyVerdict string

// Policy verdicts.
const (
	// PolicyEnforced: every probe derived from the policy saw what its spec says, from every node.
	PolicyEnforced PolicyVerdict = "Enforced"
	// PolicyNotEnforced: a probe contradicts the policy's spec (the step fails, naming the node and the probe).
	PolicyNotEnforced PolicyVerdict = "NotEnforced"
	// PolicyEnforcedDifferently: istiod narrowed the policy for ztunnel (HTTP rules dropped with no waypoint),
	// and the probes show the narrowed behaviour.
	PolicyEnforcedDifferently PolicyVerdict = "EnforcedDifferently"
	// PolicyNoEffect: the policy selects no pod, belongs to another revision, is a dry run, or ztunnel drops it.
	PolicyNoEffect PolicyVerdict = "NoEffect"
	// PolicyUntestable: the audit cannot prove it (it allows only identities the audit may not call as, a
	// waypoint enforces it, no Service reaches what it selects).
	PolicyUntestable PolicyVerdict = "Untestable"
)

// PolicyResult is the audit's verdict on one policy.
type PolicyResult struct {
	// Kind of the policy.
	// +kubebuilder:validation:Enum=AuthorizationPolicy;PeerAuthentication
	Kind string `json:"kind"`

	// Policy is the policy's <namespace>/<name>.
	// +kubebuilder:validation:MaxLength=317
	Policy string `json:"policy"`

	// Verdict on the policy.
	Verdict PolicyVerdict `json:"verdict"`

	// Reason says why, in a sentence (at most 1024 bytes).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Reason string `json:"reason,omitempty"`

	// Istiod quotes what istiod wrote in the policy's status about ztunnel (its ZtunnelAccepted condition),
	// when it wrote something other than accepted (at most 1024 bytes).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Istiod string `json:"istiod,omitempty"`

	// Probes are what the probes derived from the policy expected and saw: contradictions first (at most 8,
	// each at most 512 bytes).
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=atomic
	// +optional
	Probes []string `json:"probes,omitempty"`
}

// CoverageRole says which side of a connection a node was on.
// +kubebuilder:validation:Enum=Source;Destination
type CoverageRole string

// Coverage roles.
const (
	// RoleSource: the caller ran on the node, so the node's ztunnel sent the connection.
	RoleSource CoverageRole = "Source"
	// RoleDestination: an endpoint of the target ran on the node, so the node's ztunnel enforced inbound.
	RoleDestination CoverageRole = "Destination"
)

// NodeResult is what one node saw in a per-node step.
type NodeResult struct {
	// Node is the node's name.
	Node string `json:"node"`
	// Role: Source (the caller ran on this node) or Destination (an endpoint of the target is on this node).
	Role CoverageRole `json:"role"`
	// Endpoint is the target endpoint, <pod> (<ip>:<port>), for a Destination entry.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Observed outcome there, in the same terms as the step's Expected.
	// +optional
	Observed string `json:"observed,omitempty"`
	// Verdict there: Pass, Fail or Error.
	Verdict Verdict `json:"verdict"`
	// Attempts counted there.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
}

// EvidenceSource is one ztunnel pod whose log a step read.
type EvidenceSource struct {
	// Namespace of the ztunnel pod.
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Pod is the ztunnel pod's name.
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`
	// Node the ztunnel pod runs on (its spec.nodeName): the node whose traffic its log records.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Node string `json:"node,omitempty"`
}

// Summary counts step verdicts.
type Summary struct {
	// Total number of steps planned.
	// +kubebuilder:default=0
	// +optional
	Total int32 `json:"total,omitempty"`
	// Passed steps.
	// +kubebuilder:default=0
	// +optional
	Passed int32 `json:"passed,omitempty"`
	// Failed steps.
	// +kubebuilder:default=0
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// Errored steps.
	// +kubebuilder:default=0
	// +optional
	Errored int32 `json:"errored,omitempty"`
	// Skipped steps.
	// +kubebuilder:default=0
	// +optional
	Skipped int32 `json:"skipped,omitempty"`
}

// Exposure is how long the mesh was weakened during the run.
type Exposure struct {
	// Duration the mesh was weakened in all (PeerAuthentication not STRICT or the AuthorizationPolicy set aside).
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// Since is when the current weakening began; empty while the mesh is as found.
	// +optional
	Since *metav1.MicroTime `json:"since,omitempty"`
	// Scope the run weakened at (spec.scope): Workload, Namespace or Mesh.
	// +optional
	Scope Scope `json:"scope,omitempty"`
	// Pods is the largest number of pods weakened at once: the pods a changed policy applied to (the target's
	// pods for Workload scope, the target namespace's for Namespace, every ambient pod for Mesh), counted when
	// the change was made.
	// +optional
	Pods int32 `json:"pods,omitempty"`
	// WindowPods is how many pods the open weakening applies to; folded into PodSeconds when it closes.
	// +optional
	WindowPods int32 `json:"windowPods,omitempty"`
	// PodSeconds is the sum over weakenings of their duration times the pods they applied to, in seconds
	// (a decimal string, e.g. "1.84").
	// +optional
	PodSeconds string `json:"podSeconds,omitempty"`
}

// JournalEntry is the original of a mesh object, recorded before the run changed it.
type JournalEntry struct {
	// Kind of the object: PeerAuthentication or AuthorizationPolicy.
	// +kubebuilder:validation:Enum=PeerAuthentication;AuthorizationPolicy
	Kind string `json:"kind"`
	// Namespace of the object.
	Namespace string `json:"namespace"`
	// Name of the object.
	Name string `json:"name"`
	// Spec is the object's spec as found.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Spec *apiextensionsv1.JSON `json:"spec,omitempty"`
	// Labels as found.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations as found.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// Change is the change the run made to the object, once made (e.g. "mode PERMISSIVE", "set aside",
	// "created").
	// +optional
	Change string `json:"change,omitempty"`
	// Created is true for an object the run creates (a temporary PeerAuthentication of Workload or Namespace
	// scope): Spec, Labels and Annotations are what the run creates, and restoring deletes it.
	// +optional
	Created bool `json:"created,omitempty"`
	// RecordedAt is when the original was recorded.
	RecordedAt metav1.Time `json:"recordedAt"`
	// Restored is true once the original is back in place.
	// +optional
	Restored bool `json:"restored,omitempty"`
}

// LabRunStatus is what the run observed.
type LabRunStatus struct {
	// ObservedGeneration is the generation the status describes; -1 before the first pass.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase of the run: Pending, Queued, Running, Restoring, Succeeded or Failed. A run is Pending from its
	// creation (the API server's default), before the operator has seen it.
	// +kubebuilder:default=Pending
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// Reason is a CamelCase word for why the run is where it is, e.g. PreflightFailed; the Ready condition
	// carries it too.
	// +optional
	Reason string `json:"reason,omitempty"`

	// Message says in a sentence where the run is or why it ended as it did.
	// +optional
	Message string `json:"message,omitempty"`

	// StartTime is when the run started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// ActiveSince is when the run was let in among the runs the manager works on at once (--max-active-runs);
	// until then it waits Queued, with its queuePosition, and holds nothing: no pod, no lock.
	// +optional
	ActiveSince *metav1.Time `json:"activeSince,omitempty"`

	// CompletionTime is when the run ended.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// Steps holds every planned step with its expected and observed result.
	// +optional
	Steps []StepResult `json:"steps,omitempty"`

	// Summary counts the verdicts.
	// +optional
	Summary Summary `json:"summary,omitempty"`

	// Exposure is how long the mesh was weakened by this run.
	// +optional
	Exposure Exposure `json:"exposure,omitempty"`

	// Footprint is the footprint lab's comparison of ambient and sidecar mode.
	// +optional
	Footprint *FootprintStatus `json:"footprint,omitempty"`

	// LockHolder names, while this run waits for the lock on what its next change reaches (phase Queued), the
	// first of the runs ahead of it: the one holding that lock, or one that asked earlier.
	// +optional
	LockHolder string `json:"lockHolder,omitempty"`

	// QueuePosition is how many runs stand ahead of this one while it waits (phase Queued): runs that hold a
	// lock on part of what its next change reaches, or asked for one earlier. Runs are served in the order they
	// asked; a run whose changes reach nothing another run's do never waits for it. Unset when not waiting.
	// +optional
	QueuePosition int32 `json:"queuePosition,omitempty"`

	// Journal is a copy, for people, of the originals of the mesh objects this run changed. The operator keeps
	// and acts on its own record (a ConfigMap in its namespace); it never reads this copy back.
	// +optional
	Journal []JournalEntry `json:"journal,omitempty"`

	// Conditions: Ready, Reconciling and Stalled (kstatus), and MeshRestored.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// LabRun runs the Istio ambient-mode security labs against the cluster's mesh and records every step's
// expected and observed result. It always leaves the mesh STRICT with its AuthorizationPolicy in place.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lr,categories=labs
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Passed",type=integer,JSONPath=`.status.summary.passed`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.summary.failed`
// +kubebuilder:printcolumn:name="Restored",type=string,JSONPath=`.status.conditions[?(@.type=="MeshRestored")].status`
// +kubebuilder:printcolumn:name="Scope",type=string,JSONPath=`.spec.scope`,priority=1
// +kubebuilder:printcolumn:name="Exposure",type=string,JSONPath=`.status.exposure.duration`,priority=1
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.exposure.pods`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LabRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which labs to run against which mesh. Immutable.
	// Durations compare as durations: a Go client sends the defaulted "2m" back as "2m0s".
	// +kubebuilder:validation:XValidation:rule="self.labs == oldSelf.labs && self.target == oldSelf.target && self.client == oldSelf.client && self.mesh == oldSelf.mesh && self.footprint == oldSelf.footprint && duration(self.probe.requestTimeout) == duration(oldSelf.probe.requestTimeout) && duration(self.probe.settleTimeout) == duration(oldSelf.probe.settleTimeout) && duration(self.maxExposure) == duration(oldSelf.maxExposure) && (has(self.scope) ? self.scope : 'Workload') == (has(oldSelf.scope) ? oldSelf.scope : 'Workload') && (has(self.mode) ? self.mode : 'Lab') == (has(oldSelf.mode) ? oldSelf.mode : 'Lab') && (has(self.probe.image) ? self.probe.image : '') == (has(oldSelf.probe.image) ? oldSelf.probe.image : '') && (has(self.dryRun) && self.dryRun) == (has(oldSelf.dryRun) && oldSelf.dryRun)",message="spec is immutable: create a new LabRun to run the labs again"
	Spec LabRunSpec `json:"spec"`

	// Status records the run.
	// +kubebuilder:default={observedGeneration:-1}
	// +optional
	Status LabRunStatus `json:"status,omitempty"`
}

// LabRunList is a list of LabRuns.
// +kubebuilder:object:root=true
type LabRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LabRun `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LabRun{}, &LabRunList{})
}
