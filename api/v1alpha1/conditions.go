package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow kstatus so Argo CD and Flux read a LabRun's health.
const (
	// ConditionReady is True when the run ended with every step passing and the mesh restored.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the run is in progress (present only while True).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the run ended without success (present only while True).
	ConditionStalled = "Stalled"
	// ConditionMeshRestored is True when every mesh object the run changed is back, with PeerAuthentication STRICT.
	ConditionMeshRestored = "MeshRestored"
)

// Condition reasons.
const (
	ReasonSucceeded       = "Succeeded"
	ReasonStepsFailed     = "StepsFailed"
	ReasonPreflightFailed = "PreflightFailed"
	ReasonRunning         = "Running"
	ReasonPending         = "Pending"
	ReasonQueued          = "Queued"
	// ReasonWaitingForSlot: the run waits for one of the active runs to end (--max-active-runs).
	ReasonWaitingForSlot   = "WaitingForSlot"
	ReasonRestored         = "Restored"
	ReasonRestoring        = "Restoring"
	ReasonUnchanged        = "Unchanged"
	ReasonDryRun           = "DryRun"
	ReasonRestoreFailed    = "RestoreFailed"
	ReasonWasNotStrict     = "WasNotStrict"
	ReasonExposureExceeded = "ExposureExceeded"
	ReasonStatusTampered   = "StatusTampered"
	// ReasonAdmissionNotEnforced: a Lab run waits, before any change, until the admission policies that hold
	// the trust boundary are installed as shipped and enforced; the message names what is missing or altered.
	ReasonAdmissionNotEnforced = "AdmissionNotEnforced"
)

// Labels, annotations and the finalizer, all under the labs.ambientlab.io/ prefix.
const (
	// Finalizer keeps a LabRun until the mesh it changed is restored.
	Finalizer = "labs.ambientlab.io/restore-mesh"
	// LabelProbe marks probe pods; the manager caches only pods with it.
	LabelProbe = "labs.ambientlab.io/probe"
	// LabelLabRun names the LabRun that owns a probe pod or a temporary object.
	LabelLabRun = "labs.ambientlab.io/labrun"
	// LabelLab names the lab of a probe pod.
	LabelLab = "labs.ambientlab.io/lab"
	// LabelStep names the step of a probe pod.
	LabelStep = "labs.ambientlab.io/step"
	// LabelSchedule names the LabSchedule that created a LabRun.
	LabelSchedule = "labs.ambientlab.io/schedule"
	// LabelNode names the node a probe pod is pinned to (observers of a per-node step).
	LabelNode = "labs.ambientlab.io/node"
	// LabelWarm names, by UID, the LabSchedule that keeps a warm observer, fixture or arm ConfigMap between its
	// runs.
	LabelWarm = "labs.ambientlab.io/warm"
	// LabelArm marks an arm ConfigMap: what a schedule's warm observers call, for which run and until when. The
	// observers read it from a ConfigMap volume (one key per node).
	LabelArm = "labs.ambientlab.io/arm"
	// AnnotationOwner marks a mesh object changed by a run: <namespace>/<name> of the LabRun.
	AnnotationOwner = "labs.ambientlab.io/owner"
	// LabelEnabled, with value "true" on a namespace, lets runs touch it (probe pods, fixtures, policies, the
	// mesh lock). An administrator sets it; the manager's --allow-any-namespace turns the check off.
	LabelEnabled = "labs.ambientlab.io/enabled"
	// AnnotationRestoreBy marks a mesh object changed by a run with the RFC 3339 time by which it must be restored.
	AnnotationRestoreBy = "labs.ambientlab.io/restore-by"
)

// TargetNamespace is the namespace of the target Service: spec.target.namespace or the LabRun's own.
func (r *LabRun) TargetNamespace() string {
	if r.Spec.Target.Namespace != "" {
		return r.Spec.Target.Namespace
	}
	return r.Namespace
}
