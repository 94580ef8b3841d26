package report

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// A run's wg-policy PolicyReport (controllers/policyreport writes it): one result per judged step, and one per
// policy a judged step audited.

// PolicyReportGVK is the wg-policy PolicyReport version Kyverno's Policy Reporter reads.
var PolicyReportGVK = schema.GroupVersionKind{Group: "wgpolicyk8s.io", Version: "v1alpha2", Kind: "PolicyReport"}

// Names and words of the reports. Policy Reporter groups results by source, then category, then policy.
const (
	ReportSource   = "labrun-operator"
	ReportCategory = "Istio ambient security"
	// ReportPrefix starts the name of every report the operator writes; config/admission's manager-limits lets
	// the manager write no other PolicyReport.
	ReportPrefix = "labrun-"
	// LabelManagedBy marks the reports the operator writes, for people and selectors.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ReportOwner is the value of LabelManagedBy, and the field manager of the reports' server-side applies.
	ReportOwner = "labrun-operator"
)

// BuildPolicyReport is the run's report, without its owner: one result per judged step (a step still Pending
// or Running has none yet) followed by one per policy it audited, a summary of them, and the run as scope.
func BuildPolicyReport(run *labsv1.LabRun) *unstructured.Unstructured {
	steps := JudgedSteps(run)
	results := make([]any, 0, len(steps))
	summary := map[string]any{"pass": int64(0), "fail": int64(0), "warn": int64(0), "error": int64(0), "skip": int64(0)}
	add := func(res map[string]any) {
		results = append(results, res)
		summary[res["result"].(string)] = summary[res["result"].(string)].(int64) + 1
	}
	for _, st := range steps {
		add(stepResult(run, st))
		for _, p := range st.Policies {
			add(policyResult(run, st, p))
		}
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"scope": map[string]any{"apiVersion": labsv1.GroupVersion.String(), "kind": "LabRun",
			"namespace": run.Namespace, "name": run.Name, "uid": string(run.UID)},
		"results": results,
		"summary": summary,
	}}
	u.SetGroupVersionKind(PolicyReportGVK)
	u.SetNamespace(run.Namespace)
	u.SetName(ReportName(run.Name))
	u.SetLabels(map[string]string{LabelManagedBy: ReportOwner})
	return u
}

// ReportName is labrun-<run>, shortened with a hash when that would exceed an object name's 253 characters.
func ReportName(run string) string {
	name := ReportPrefix + run
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(run))
	return name[:253-11] + "-" + hex.EncodeToString(sum[:])[:10]
}

// JudgedSteps are the steps with a verdict a PolicyReport result can carry.
func JudgedSteps(run *labsv1.LabRun) []labsv1.StepResult {
	var out []labsv1.StepResult
	for _, st := range run.Status.Steps {
		if _, ok := reportResult[st.Verdict]; ok {
			out = append(out, st)
		}
	}
	return out
}

// reportResult maps a verdict to the PolicyReport result enum.
var reportResult = map[labsv1.Verdict]string{
	labsv1.VerdictPass: "pass", labsv1.VerdictFail: "fail", labsv1.VerdictError: "error", labsv1.VerdictSkipped: "skip",
}

// policyReportResult maps a policy's verdict to the PolicyReport result enum: a policy istiod narrowed holds
// only in part (warn); one that has no effect, or that the audit cannot prove, was not judged (skip).
var policyReportResult = map[labsv1.PolicyVerdict]string{
	labsv1.PolicyEnforced: "pass", labsv1.PolicyNotEnforced: "fail", labsv1.PolicyEnforcedDifferently: "warn",
	labsv1.PolicyNoEffect: "skip", labsv1.PolicyUntestable: "skip",
}

// labSeverity: a broken protection is high; the footprint lab only measures cost.
func labSeverity(lab labsv1.LabName) string {
	if lab == labsv1.LabFootprint {
		return "info"
	}
	return "high"
}

// stepResult is one result: policy labrun-<lab>, rule <step>, and the step's facts as properties.
func stepResult(run *labsv1.LabRun, st labsv1.StepResult) map[string]any {
	res := map[string]any{
		"source":     ReportSource,
		"category":   ReportCategory,
		"policy":     ReportPrefix + string(st.Lab),
		"rule":       st.Name,
		"result":     reportResult[st.Verdict],
		"severity":   labSeverity(st.Lab),
		"message":    firstNonEmpty(st.Message, st.Description, st.Observed),
		"properties": reportProperties(run, st),
	}
	stamp(res, run, st)
	return res
}

// policyResult is one policy's result: policy <namespace>/<name>, rule its kind, the audit's reason as message,
// and the step, the verdict, istiod's word and the probes as properties. A verdict the API does not know is an
// error, not a pass.
func policyResult(run *labsv1.LabRun, st labsv1.StepResult, p labsv1.PolicyResult) map[string]any {
	result, ok := policyReportResult[p.Verdict]
	if !ok {
		result = "error"
	}
	props := map[string]any{}
	for k, v := range map[string]string{
		"labrun":  run.Name,
		"mode":    string(run.Spec.Mode),
		"lab":     string(st.Lab),
		"step":    st.Name,
		"kind":    p.Kind,
		"verdict": string(p.Verdict),
		"istiod":  p.Istiod,
		// What the probes derived from the policy expected and saw, a line each, contradictions first.
		"probes": strings.Join(p.Probes, "\n"),
	} {
		if v != "" {
			props[k] = v
		}
	}
	res := map[string]any{
		"source":     ReportSource,
		"category":   ReportCategory,
		"policy":     p.Policy,
		"rule":       p.Kind,
		"result":     result,
		"severity":   labSeverity(st.Lab),
		"message":    policyMessage(p),
		"properties": props,
	}
	stamp(res, run, st)
	return res
}

// reportProperties are the facts Policy Reporter shows next to a result; empty ones are left out.
func reportProperties(run *labsv1.LabRun, st labsv1.StepResult) map[string]any {
	props := map[string]any{}
	for k, v := range map[string]string{
		"labrun":   run.Name,
		"mode":     string(run.Spec.Mode),
		"lab":      string(st.Lab),
		"step":     st.Name,
		"expected": st.Expected,
		"observed": st.Observed,
		"change":   st.Change,
		"node":     strings.Join(failingNodes(st.Coverage), ","),
		"spiffe":   strings.Join(SPIFFEIdentities(st.Evidence), ","),
		// Where the evidence came from: the ztunnel pods whose logs the step read.
		"evidenceSources": strings.Join(sourceLines(st.EvidenceSources), ","),
	} {
		if v != "" {
			props[k] = v
		}
	}
	return props
}

// sourceLines names each ztunnel pod a step read, as the other reports do.
func sourceLines(sources []labsv1.EvidenceSource) []string {
	out := make([]string, 0, len(sources))
	for _, s := range sources {
		out = append(out, SourceLine(s))
	}
	return out
}

// failingNodes names, once each and in order, the nodes where a per-node step did not pass.
func failingNodes(cov []labsv1.NodeResult) []string {
	var out []string
	for _, n := range cov {
		if n.Verdict != labsv1.VerdictPass && n.Node != "" && !slices.Contains(out, n.Node) {
			out = append(out, n.Node)
		}
	}
	return out
}

// spiffeID matches a SPIFFE ID inside a log line (ztunnel writes them quoted: src.identity="spiffe://…").
var spiffeID = regexp.MustCompile(`spiffe://[A-Za-z0-9._~%!$&'()*+,;=:@/-]+`)

// SPIFFEIdentities are the distinct SPIFFE IDs in the evidence lines, in order of appearance.
func SPIFFEIdentities(evidence []string) []string {
	var out []string
	for _, line := range evidence {
		for _, id := range spiffeID.FindAllString(line, -1) {
			id = strings.TrimRight(id, `'),;`)
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// stamp sets a result's timestamp to when the step was judged, when that is known.
func stamp(res map[string]any, run *labsv1.LabRun, st labsv1.StepResult) {
	if ts := stepTime(run, st); ts != nil {
		res["timestamp"] = map[string]any{"seconds": ts.Unix(), "nanos": int64(ts.Nanosecond())}
	}
}

// stepTime is when the step was judged: its completion, else its start, else the run's end.
func stepTime(run *labsv1.LabRun, st labsv1.StepResult) *time.Time {
	switch {
	case st.CompletionTime != nil:
		return &st.CompletionTime.Time
	case st.StartTime != nil:
		return &st.StartTime.Time
	case run.Status.CompletionTime != nil:
		return &run.Status.CompletionTime.Time
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
