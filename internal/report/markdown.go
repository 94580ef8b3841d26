package report

import (
	"fmt"
	"io"
	"strings"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// WriteMarkdown writes the run as GitHub-flavoured Markdown: a heading with the outcome, then a table per lab,
// and under it what each node saw for the steps that failed and a table of the policies each audit step judged.
func WriteMarkdown(w io.Writer, run *labsv1.LabRun) error {
	var b strings.Builder
	restored, restoredMsg := MeshRestored(run)
	s := run.Status.Summary
	fmt.Fprintf(&b, "# LabRun %s/%s: %s\n\n", run.Namespace, run.Name, orNone(string(run.Status.Phase)))
	fmt.Fprintf(&b, "Mode %s, scope %s. %d steps: %d passed, %d failed, %d errored, %d skipped. Mesh restored: %s",
		orNone(string(run.Spec.Mode)), orNone(string(run.Spec.Scope)), s.Total, s.Passed, s.Failed, s.Errored, s.Skipped, restored)
	if restoredMsg != "" {
		b.WriteString(" (" + cell(restoredMsg) + ")")
	}
	b.WriteString(".\n")
	if run.Status.Message != "" {
		b.WriteString("\n" + cell(run.Status.Message) + "\n")
	}
	for _, lab := range byLab(run.Status.Steps) {
		writeLab(&b, lab)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the Markdown report of LabRun %s/%s: %w", run.Namespace, run.Name, err)
	}
	return nil
}

func writeLab(b *strings.Builder, lab labSteps) {
	fmt.Fprintf(b, "\n## %s\n\n", lab.Lab)
	b.WriteString("| Step | Expected | Observed | Verdict | Settle | Message |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, st := range lab.Steps {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", cell(st.Name), cell(st.Expected), cell(st.Observed),
			verdictCell(st.Verdict), cell(Settle(st)), cell(st.Message))
	}
	for _, st := range lab.Steps {
		if len(st.EvidenceSources) == 0 {
			continue
		}
		srcs := make([]string, 0, len(st.EvidenceSources))
		for _, s := range st.EvidenceSources {
			srcs = append(srcs, SourceLine(s))
		}
		fmt.Fprintf(b, "\n%s: evidence read from the logs of ztunnel %s.\n", cell(st.Name), cell(strings.Join(srcs, ", ")))
	}
	for _, st := range lab.Steps {
		if !Failing(st.Verdict) || len(st.Coverage) == 0 {
			continue
		}
		fmt.Fprintf(b, "\n%s, per node:\n\n", cell(st.Name))
		for _, n := range st.Coverage {
			b.WriteString("- " + cell(CoverageLine(n)) + "\n")
		}
	}
	for _, st := range lab.Steps {
		writePolicies(b, st)
	}
}

// writePolicies writes a step's per-policy verdicts as a table, those not enforced first (as the step lists
// them), with each policy's first probes.
func writePolicies(b *strings.Builder, st labsv1.StepResult) {
	if len(st.Policies) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s, per policy:\n\n", cell(st.Name))
	b.WriteString("| Verdict | Kind | Policy | Reason | Probes |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, p := range st.Policies {
		verdict := string(p.Verdict)
		if p.Verdict == labsv1.PolicyNotEnforced {
			verdict = "**" + verdict + "**"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", verdict, cell(p.Kind), cell(p.Policy), cell(firstNonEmpty(p.Reason, p.Istiod)),
			cell(firstProbes(p.Probes)))
	}
}

func verdictCell(v labsv1.Verdict) string {
	if Failing(v) {
		return "**" + string(v) + "**"
	}
	return string(v)
}

// cell makes text safe inside a table cell: no line breaks, pipes escaped.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
