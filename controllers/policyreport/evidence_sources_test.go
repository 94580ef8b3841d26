package policyreport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// sandboxZtunnelPods lists the sandbox's ztunnel pods from the API server, through their DaemonSet's selector, as
// "<namespace>/<pod> on <node>".
func sandboxZtunnelPods(t *testing.T) []string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	ds := &appsv1.DaemonSet{}
	g.Expect(suite.K8s.Get(ctx, client.ObjectKey{Namespace: sandbox.RootNamespace, Name: "ztunnel"}, ds)).To(Succeed())
	pods := &corev1.PodList{}
	g.Expect(suite.K8s.List(ctx, pods, client.InNamespace(ds.Namespace), client.MatchingLabels(ds.Spec.Selector.MatchLabels))).To(Succeed())
	g.Expect(pods.Items).NotTo(BeEmpty())
	var out []string
	for _, p := range pods.Items {
		g.Expect(p.Spec.NodeName).NotTo(BeEmpty(), "ztunnel pod %s has a node", p.Name)
		out = append(out, p.Namespace+"/"+p.Name+" on "+p.Spec.NodeName)
	}
	return out
}

// expectReportsNameZtunnelPods: the step that read ztunnel's access logs for its evidence (outbound-identity)
// names, in its status and in each report (JUnit, JSON, Markdown and the PolicyReport policyReport), every
// ztunnel pod of the sandbox with its namespace and node, as listed from the API server. Every other step that
// names sources names the same pods, in every report.
func expectReportsNameZtunnelPods(t *testing.T, run *labsv1.LabRun, policyReport *unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	want := sandboxZtunnelPods(t)
	named := map[string][]string{} // step → the sources its status names
	for _, st := range run.Status.Steps {
		for _, s := range st.EvidenceSources {
			named[st.Name] = append(named[st.Name], s.Namespace+"/"+s.Pod+" on "+s.Node)
		}
	}
	g.Expect(named).To(HaveKey("outbound-identity"), "the evidence step names the ztunnel pods it read")
	for step, got := range named {
		g.Expect(got).To(ConsistOf(want), "status of step %s", step)
	}

	var junit bytes.Buffer
	g.Expect(report.WriteJUnit(&junit, run)).To(Succeed())
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name       string `xml:"name,attr"`
				Properties []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"properties>property"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	g.Expect(xml.Unmarshal(junit.Bytes(), &doc)).To(Succeed())
	fromJUnit := map[string][]string{}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			for _, p := range c.Properties {
				if p.Name == "evidenceSource" {
					fromJUnit[c.Name] = append(fromJUnit[c.Name], p.Value)
				}
			}
		}
	}
	g.Expect(fromJUnit).To(HaveLen(len(named)), "JUnit: one testcase per step that read logs")
	for step := range named {
		g.Expect(fromJUnit[step]).To(ConsistOf(want), "JUnit testcase %s", step)
	}

	var js bytes.Buffer
	g.Expect(report.WriteJSON(&js, run)).To(Succeed())
	var jdoc struct {
		Labs []struct {
			Steps []struct {
				Name            string `json:"name"`
				EvidenceSources []struct {
					Namespace string `json:"namespace"`
					Pod       string `json:"pod"`
					Node      string `json:"node"`
				} `json:"evidenceSources"`
			} `json:"steps"`
		} `json:"labs"`
	}
	g.Expect(json.Unmarshal(js.Bytes(), &jdoc)).To(Succeed())
	fromJSON := map[string][]string{}
	for _, lab := range jdoc.Labs {
		for _, st := range lab.Steps {
			for _, s := range st.EvidenceSources {
				fromJSON[st.Name] = append(fromJSON[st.Name], s.Namespace+"/"+s.Pod+" on "+s.Node)
			}
		}
	}
	g.Expect(fromJSON).To(HaveLen(len(named)), "JSON")
	for step := range named {
		g.Expect(fromJSON[step]).To(ConsistOf(want), "JSON step %s", step)
	}

	var md bytes.Buffer
	g.Expect(report.WriteMarkdown(&md, run)).To(Succeed())
	for step := range named {
		line := ""
		for _, l := range strings.Split(md.String(), "\n") {
			if strings.HasPrefix(l, step+": evidence read from the logs of ztunnel ") {
				line = l
			}
		}
		g.Expect(line).NotTo(BeEmpty(), "Markdown names the ztunnel pods step %s read:\n%s", step, md.String())
		for _, pod := range want {
			g.Expect(line).To(ContainSubstring(pod), "Markdown, step %s", step)
		}
	}

	for step := range named {
		props := resultOf(t, policyReport, step)["properties"].(map[string]any)
		g.Expect(props).To(HaveKey("evidenceSources"), "PolicyReport result %s", step)
		g.Expect(strings.Split(props["evidenceSources"].(string), ",")).To(ConsistOf(want), "PolicyReport result %s", step)
	}
}

// expectRunMetricsCarryNamespace: the end and every step verdict of a finished run are counted under the run's
// namespace, so an alert on them says whose run it was.
func expectRunMetricsCarryNamespace(t *testing.T, run *labsv1.LabRun) {
	t.Helper()
	g := NewWithT(t)
	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	has := func(name string, want map[string]string) bool {
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				got := map[string]string{}
				for _, l := range m.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				match := true
				for k, v := range want {
					match = match && got[k] == v
				}
				if match && m.GetCounter().GetValue() >= 1 {
					return true
				}
			}
		}
		return false
	}
	g.Expect(has("labrun_runs_finished_total", map[string]string{"namespace": run.Namespace,
		"phase": string(run.Status.Phase)})).To(BeTrue(), "the run's end is counted under its namespace %s", run.Namespace)
	for _, st := range run.Status.Steps {
		g.Expect(has("labrun_step_verdicts_total", map[string]string{"namespace": run.Namespace, "lab": string(st.Lab),
			"step": st.Name, "verdict": string(st.Verdict)})).To(BeTrue(), "step %s's verdict is counted under the run's namespace", st.Name)
	}
}
