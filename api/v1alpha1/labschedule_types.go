package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations admission stamps on a LabSchedule when its spec is written (config/admission/
// schedule_author_policy.yaml): who wrote it. Nobody can set, change or remove them by hand; the manager checks
// that author's rights before each run.
const (
	// AnnotationAuthor is the author's username.
	AnnotationAuthor = "labs.ambientlab.io/author"
	// AnnotationAuthorUID is the author's UID (empty when the authenticator gives none).
	AnnotationAuthorUID = "labs.ambientlab.io/author-uid"
	// AnnotationAuthorGroups is the author's groups: a comma-separated list of quoted strings ("a","b").
	AnnotationAuthorGroups = "labs.ambientlab.io/author-groups"
)

// ConcurrencyPolicy says what a LabSchedule does when a run is due while an earlier one is still active.
// +kubebuilder:validation:Enum=Forbid;Replace;Allow
type ConcurrencyPolicy string

// Concurrency policies, as in a CronJob.
const (
	// ConcurrencyForbid skips the due run while one is active (the default: a check that is still running
	// is still the current check).
	ConcurrencyForbid ConcurrencyPolicy = "Forbid"
	// ConcurrencyReplace deletes the active run (which restores the mesh) and starts a new one. A triggered run
	// never replaces one: it waits, as with Forbid.
	ConcurrencyReplace ConcurrencyPolicy = "Replace"
	// ConcurrencyAllow starts the new run anyway. Lab-mode runs still take the mesh lock one at a time.
	ConcurrencyAllow ConcurrencyPolicy = "Allow"
)

// LabScheduleSpec says when to create LabRuns and from which template.
// +kubebuilder:validation:XValidation:rule="!has(self.timeZone) || !self.schedule.startsWith('CRON_TZ=') && !self.schedule.startsWith('TZ=')",message="set the time zone in timeZone, not in schedule"
type LabScheduleSpec struct {
	// Schedule in cron syntax: five fields ("0 * * * *"), a descriptor (@hourly, @daily) or @every <duration>
	// ("@every 15m"). It is parsed with github.com/robfig/cron/v3. The API server refuses the wrong number of
	// fields and unknown descriptors; a schedule that still does not parse (a minute of 61) sets Stalled and
	// Ready=False and creates no run.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.startsWith('CRON_TZ=') || self.startsWith('TZ=') || (self.startsWith('@') ? self in ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'] || self.matches('^@every ([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') : self.split(' ').filter(f, f != '').size() == 5)",message="schedule must be five cron fields (minute hour day-of-month month day-of-week), a descriptor (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly) or @every <duration>"
	Schedule string `json:"schedule"`

	// TimeZone is the IANA time zone the schedule is read in, e.g. Europe/Berlin. Default: UTC. An unknown zone
	// sets Stalled and creates no run.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	TimeZone *string `json:"timeZone,omitempty"`

	// Suspend stops new runs from being created; runs already created go on. Default: false.
	// +optional
	Suspend *bool `json:"suspend,omitempty"`

	// ConcurrencyPolicy says what to do when a run is due while an earlier one is still active: Forbid (skip
	// it), Replace (delete the active run, which restores the mesh, then start a new one) or Allow (start it;
	// Lab-mode runs still take the mesh lock one at a time, so they queue). Default: Forbid. A run started by a
	// trigger never replaces an active run, whatever the policy: it waits until that run ends (changes made by
	// others must not abort the schedule's runs).
	// +kubebuilder:default=Forbid
	// +optional
	ConcurrencyPolicy ConcurrencyPolicy `json:"concurrencyPolicy,omitempty"`

	// StartingDeadlineSeconds: a run that could not start within this many seconds of its scheduled time (the
	// manager was down, say) is skipped and counted as missed. Default: no deadline; after a restart only the
	// most recent missed time is run, never more than one.
	// +kubebuilder:validation:Minimum=0
	// +optional
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`

	// SuccessfulRunsHistoryLimit is how many finished, successful runs to keep. Default: 3.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=3
	// +optional
	SuccessfulRunsHistoryLimit *int32 `json:"successfulRunsHistoryLimit,omitempty"`

	// FailedRunsHistoryLimit is how many finished, failed runs to keep. Default: 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	FailedRunsHistoryLimit *int32 `json:"failedRunsHistoryLimit,omitempty"`

	// Trigger starts an extra run, besides the schedule, when what the runs depend on changes.
	// +optional
	Trigger *TriggerSpec `json:"trigger,omitempty"`

	// Template is the LabRun each run is created from.
	Template LabRunTemplate `json:"template"`
}

// TriggerSpec starts a run when the mesh's protections may have changed. The operator's own temporary
// changes never trigger a run: it recognises them by its labs.ambientlab.io/changed-by mark (which only its
// ServiceAccount may write) naming a run it recorded, never by an object's name. Anyone who may change a policy
// the runs depend on can cause a triggered run, so triggered runs are rate-limited per schedule (minInterval).
type TriggerSpec struct {
	// OnPolicyChange starts a run when a PeerAuthentication or AuthorizationPolicy that the template's runs
	// depend on (in the mesh root namespace or the target namespace) is created, changed or deleted.
	// +optional
	OnPolicyChange bool `json:"onPolicyChange,omitempty"`

	// OnZtunnelChange starts a run when the ztunnel DaemonSet's pod template changes (an upgrade, a new
	// image or configuration).
	// +optional
	OnZtunnelChange bool `json:"onZtunnelChange,omitempty"`

	// Debounce waits this long after the last change before starting the run, so a burst of changes
	// starts one run. Default: 10s.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="trigger.debounce must be at most 1h"
	// +optional
	Debounce *metav1.Duration `json:"debounce,omitempty"`

	// MinInterval is the least time between two runs started by this schedule's trigger: changes made in
	// between are folded into one run, started once the interval has passed (status.nextTriggerAllowedTime). It
	// also bounds the debounce: changes that keep coming start a run at most max(debounce, minInterval) after
	// the first of them. Scheduled runs are not limited by it. Default: 5m; 1s to 24h.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="trigger.minInterval must be between 1s and 24h"
	// +optional
	MinInterval *metav1.Duration `json:"minInterval,omitempty"`
}

// LabRunTemplate is the part of a LabRun a schedule stamps out.
type LabRunTemplate struct {
	// Labels and annotations copied onto every run (besides the labs.ambientlab.io/schedule label).
	// +optional
	Metadata TemplateMetadata `json:"metadata,omitempty"`

	// Spec of every run.
	Spec LabRunSpec `json:"spec"`
}

// TemplateMetadata is the metadata a template may set.
type TemplateMetadata struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RunSummary is the outcome of one run a schedule created.
type RunSummary struct {
	// Name of the LabRun.
	Name string `json:"name"`
	// Phase it ended in (or is in).
	Phase Phase `json:"phase,omitempty"`
	// Summary counts its step verdicts.
	// +optional
	Summary Summary `json:"summary,omitempty"`
	// FailedSteps names the steps that did not pass, as <lab>/<step>, with the node when the failure was on
	// one node: <lab>/<step>@<node> (at most 20).
	// +kubebuilder:validation:MaxItems=20
	// +optional
	FailedSteps []string `json:"failedSteps,omitempty"`
	// CompletionTime is when it ended.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// SchedulePolicy is what a schedule remembers of one policy its runs audited.
type SchedulePolicy struct {
	// Kind of the policy.
	// +kubebuilder:validation:Enum=AuthorizationPolicy;PeerAuthentication
	Kind string `json:"kind"`

	// Policy is the policy's <namespace>/<name>.
	// +kubebuilder:validation:MaxLength=317
	Policy string `json:"policy"`

	// Verdict is the newest audit's verdict on the policy (the run named by lastRun has the reason and the
	// probes, while the schedule keeps it).
	Verdict PolicyVerdict `json:"verdict"`

	// LastEnforced is when the last run that found the policy Enforced or EnforcedDifferently ended (it may
	// since have been pruned); absent while no run recorded since the audit began to list the policy has (a
	// policy the audit stops listing is forgotten). Set beside any other verdict, the policy regressed:
	// labrun_schedule_failing_step names it and LabRunPolicyRegressed fires.
	// +optional
	LastEnforced *metav1.Time `json:"lastEnforced,omitempty"`

	// LastRun names the LabRun that gave the verdict.
	// +kubebuilder:validation:MaxLength=253
	LastRun string `json:"lastRun"`
}

// LabScheduleStatus is what the schedule did.
type LabScheduleStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// LastScheduleTime is the scheduled time of the last run the schedule created (or skipped past its
	// startingDeadlineSeconds). A triggered run does not move it. Only the manager writes status.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// LastTriggerTime is when the last run a trigger created was started (a pending trigger is kept in the
	// manager's memory only).
	// +optional
	LastTriggerTime *metav1.Time `json:"lastTriggerTime,omitempty"`

	// NextTriggerAllowedTime is the earliest time a trigger may start another run: lastTriggerTime plus
	// trigger.minInterval. Changes before it are folded into one run started then.
	// +optional
	NextTriggerAllowedTime *metav1.Time `json:"nextTriggerAllowedTime,omitempty"`

	// LastSuccessfulTime is when the last successful run ended.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`

	// NextScheduleTime is when the next run is due.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// Active names the runs that have not finished.
	// +optional
	Active []string `json:"active,omitempty"`

	// LastRun is the outcome of the last finished run.
	// +optional
	LastRun *RunSummary `json:"lastRun,omitempty"`

	// Policies is the schedule's memory of the policy-audit lab: each policy the newest audit of its runs judged,
	// with that verdict and when a run last found it enforced. It outlives the runs' history, so a policy that
	// regressed stays named (labrun_schedule_failing_step, alert LabRunPolicyRegressed) however few runs are
	// kept. Written from each finished run the schedule records as lastRun, when its audit-policies step gave a
	// verdict (a run that erred before it leaves the memory as it was, a run without the policy-audit lab empties
	// it); a policy that audit no longer lists is dropped. At most 64, in the audit's order (those not enforced
	// first).
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Policies []SchedulePolicy `json:"policies,omitempty"`

	// Conditions: Ready (the schedule parses and its last finished run succeeded), Reconciling, Stalled
	// (the schedule cannot run: it does not parse, the time zone is unknown, or its author no longer has a
	// right its runs need, named in the message).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// LabSchedule creates LabRuns from a template on a cron schedule (and, optionally, when the mesh's policies or
// ztunnel change): continuous proof that the mesh's protections hold. Use spec.template.spec.mode: Verify for a
// check that never weakens anything.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ls,categories=labs
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.template.spec.mode`
// +kubebuilder:printcolumn:name="Suspend",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.active`,priority=1
// +kubebuilder:printcolumn:name="Last Run",type=string,JSONPath=`.status.lastRun.phase`
// +kubebuilder:printcolumn:name="Last Success",type=date,JSONPath=`.status.lastSuccessfulTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LabSchedule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says when and what to run.
	Spec LabScheduleSpec `json:"spec"`

	// Status records what the schedule did.
	// +optional
	Status LabScheduleStatus `json:"status,omitempty"`
}

// LabScheduleList is a list of LabSchedules.
// +kubebuilder:object:root=true
type LabScheduleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LabSchedule `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LabSchedule{}, &LabScheduleList{})
}
