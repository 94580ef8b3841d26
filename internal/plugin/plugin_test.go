package plugin_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/plugin"
	"github.com/ambientlab/labrun-operator/internal/report"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

const samplePath = "../../config/samples/labs_v1alpha1_labrun.yaml"

// rowOf matches the table row of a step: lab, step, then the verdict further on the same line.
func rowOf(st labsv1.StepResult) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(string(st.Lab)) + `\s+` + regexp.QuoteMeta(st.Name) +
		`\s+.*\s` + string(st.Verdict) + `(\s|$)`)
}

// TestRunFollowsTheSampleThenStatusAndReport: `run -f` on the sample follows it to Succeeded with the mesh
// restored and exits 0, having printed every step's final row; `status` prints the same table; `report` writes
// JUnit with one testcase per step, JSON and Markdown.
func TestRunFollowsTheSampleThenStatusAndReport(t *testing.T) {
	g := NewWithT(t)
	startManager(t, managerOptions())
	key := client.ObjectKey{Namespace: sandbox.DemoNamespace, Name: "ambient-security-labs"}
	t.Cleanup(func() { deleteRun(t, key) }) // before the manager stops

	start := time.Now()
	res := kubectlLabrun(t, "run", "-f", samplePath, "--timeout", "3m")
	t.Logf("run -f took %s", time.Since(start).Round(time.Millisecond))
	g.Expect(res.code).To(Equal(plugin.ExitOK), res.errOut)
	run := getRun(t, key)
	g.Expect(run.Status.Phase).To(Equal(labsv1.PhaseSucceeded))
	g.Expect(meta.IsStatusConditionTrue(run.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
	g.Expect(run.Status.Steps).NotTo(BeEmpty())
	g.Expect(res.out).To(ContainSubstring("labrun.labs.ambientlab.io/ambient-security-labs created"))
	for _, st := range run.Status.Steps {
		g.Expect(res.out).To(MatchRegexp(rowOf(st).String()), "live row of %s/%s", st.Lab, st.Name)
	}
	g.Expect(res.out).To(ContainSubstring("LabRun demo/ambient-security-labs: Running"), "phase changes are shown")
	g.Expect(res.out).To(ContainSubstring("LabRun demo/ambient-security-labs Succeeded"))

	status := kubectlLabrun(t, "status", key.Name, "-n", key.Namespace)
	g.Expect(status.code).To(Equal(plugin.ExitOK), status.errOut)
	g.Expect(status.out).To(MatchRegexp(`^LAB\s+STEP\s+EXPECTED\s+OBSERVED\s+VERDICT\s+SETTLE`))
	for _, st := range run.Status.Steps {
		g.Expect(status.out).To(MatchRegexp(rowOf(st).String()), "status row of %s/%s", st.Lab, st.Name)
	}

	expectJUnit(t, key, run)

	// The same file again: the name is taken, and the error says how to run it again.
	again := kubectlLabrun(t, "run", "-f", samplePath, "--timeout", "3m")
	g.Expect(again.code).To(Equal(plugin.ExitError))
	g.Expect(again.errOut).To(ContainSubstring("already exists"))
	g.Expect(again.errOut).To(ContainSubstring("--generate-name ambient-security-labs-"))

	js := kubectlLabrun(t, "report", key.Name, "-n", key.Namespace, "--format", "json")
	g.Expect(js.code).To(Equal(plugin.ExitOK))
	var doc report.Document
	g.Expect(json.Unmarshal([]byte(js.out), &doc)).To(Succeed())
	var steps int
	for _, lab := range doc.Labs {
		steps += len(lab.Steps)
	}
	g.Expect(steps).To(Equal(len(run.Status.Steps)))
	g.Expect(doc.MeshRestored).To(Equal("True"))

	md := kubectlLabrun(t, "report", key.Name, "-n", key.Namespace, "--format", "markdown")
	g.Expect(md.code).To(Equal(plugin.ExitOK))
	g.Expect(strings.Count(md.out, "| Step | Expected |")).To(Equal(len(run.Spec.Labs)))
}

// expectJUnit: `report --format junit -o FILE` parses as JUnit with one testcase per step of the run.
func expectJUnit(t *testing.T, key client.ObjectKey, run *labsv1.LabRun) {
	g := NewWithT(t)
	file := t.TempDir() + "/labrun.xml"
	res := kubectlLabrun(t, "report", key.Name, "-n", key.Namespace, "--format", "junit", "-o", file)
	g.Expect(res.code).To(Equal(plugin.ExitOK), res.errOut)
	raw := readFile(t, file)
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	g.Expect(xml.Unmarshal(raw, &doc)).To(Succeed())
	g.Expect(doc.Tests).To(Equal(len(run.Status.Steps)))
	g.Expect(doc.Failures).To(BeZero())
	var cases []string
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			g.Expect(c.Classname).To(Equal(s.Name))
			cases = append(cases, c.Classname+"/"+c.Name)
		}
	}
	var want []string
	for _, st := range run.Status.Steps {
		want = append(want, string(st.Lab)+"/"+st.Name)
	}
	g.Expect(cases).To(Equal(want))
}

// TestRunRefusedOrFailedExitsNonZero: a spec the API server refuses exits 2 with its message; a run that ends
// Failed exits 1, from `run` and from `status`.
func TestRunRefusedOrFailedExitsNonZero(t *testing.T) {
	g := NewWithT(t)
	startManager(t, managerOptions())
	refused := kubectlLabrun(t, "run", "-n", sandbox.DemoNamespace, "--target", "backend", "--labs", "authorization-policy")
	g.Expect(refused.code).To(Equal(plugin.ExitError))
	g.Expect(refused.errOut).To(ContainSubstring("mesh.authorizationPolicy is required"))

	key := client.ObjectKey{Namespace: sandbox.DemoNamespace, Name: "no-such-target"}
	t.Cleanup(func() { deleteRun(t, key) })
	failed := kubectlLabrun(t, "run", "-n", key.Namespace, "--name", key.Name, "--target", "no-such-service",
		"--labs", "mtls", "--timeout", "2m")
	g.Expect(failed.code).To(Equal(plugin.ExitRunFailed), failed.errOut)
	g.Expect(failed.errOut).To(ContainSubstring("LabRun demo/no-such-target ended Failed"))
	g.Expect(getRun(t, key).Status.Phase).To(Equal(labsv1.PhaseFailed))
	// It failed at preflight: one line says so and why, before any table, and no row of skipped steps.
	preflight := "LabRun demo/no-such-target failed at preflight, no step ran and nothing was changed: "
	g.Expect(failed.out).To(ContainSubstring(preflight))
	g.Expect(failed.out).To(ContainSubstring("no-such-service"))
	g.Expect(failed.out).NotTo(ContainSubstring("Skipped"))
	g.Expect(failed.out).NotTo(MatchRegexp(`(?m)^LAB\s+STEP`))
	status := kubectlLabrun(t, "status", key.Name, "-n", key.Namespace)
	g.Expect(status.code).To(Equal(plugin.ExitRunFailed))
	g.Expect(status.out).To(HavePrefix(preflight))
	g.Expect(status.out).NotTo(ContainSubstring("Skipped"))
}

var errKilled = errors.New("killed")

// crash kills a manager at the first mutation point starting with point, and at every one after it, as nothing
// more runs in a dead process.
type crash struct {
	point string
	once  sync.Once
	done  chan struct{}
}

func (c *crash) fault(p string) error {
	select {
	case <-c.done:
		return errKilled
	default:
	}
	if !strings.HasPrefix(p, c.point) {
		return nil
	}
	c.once.Do(func() { close(c.done) })
	return errKilled
}

// TestRestoreWhenTheOperatorIsGone: the manager dies right after the peer-authentication lab made its temporary
// PERMISSIVE PeerAuthentication (the AuthorizationPolicy already set aside) and does not come back.
// `restore --dry-run` lists both changes and changes nothing; `restore` as the administrator is refused by the
// mesh-marks admission policy and says what to do; `restore --as-manager` puts the mesh back as found. A manager
// that comes back later ends the run Failed with the mesh restored instead of resuming it.
func TestRestoreWhenTheOperatorIsGone(t *testing.T) {
	g := NewWithT(t)
	kill := &crash{point: "after-change:peer-authentication/set-permissive", done: make(chan struct{})}
	o := managerOptions()
	o.Fault = kill.fault
	stop := startManager(t, o)
	key := client.ObjectKey{Namespace: sandbox.DemoNamespace, Name: "killed"}
	created := kubectlLabrun(t, "run", "-n", key.Namespace, "--name", key.Name, "--target", "backend",
		"--authorization-policy", sandbox.PolicyName, "--labs", "peer-authentication", "--settle-timeout", "10s", "--wait=false")
	g.Expect(created.code).To(Equal(plugin.ExitOK), created.errOut)
	g.Eventually(kill.done).WithTimeout(60 * time.Second).Should(BeClosed())
	stop()
	run := getRun(t, key)
	temporary := "labrun-permissive-"
	g.Expect(temporaryPeerAuths(t)).To(ContainElement(HavePrefix(temporary)), "the mesh is left weakened")
	g.Expect(readMesh(policyRef).Object["spec"]).NotTo(Equal(origPolicy.Object["spec"]), "the policy is left set aside")

	dry := kubectlLabrun(t, "restore", "--dry-run")
	g.Expect(dry.code).To(Equal(plugin.ExitOK), dry.errOut)
	g.Expect(dry.out).To(ContainSubstring(fmt.Sprintf("LabRun demo/killed (uid %s), record labrun-system/labrun-record-%s", run.UID, run.UID)))
	g.Expect(dry.out).To(MatchRegexp(`AuthorizationPolicy demo/backend-allow-frontend-only: changed by the run \(set aside\); would write back .*"spec":`))
	wantSpec, _ := json.Marshal(origPolicy.Object["spec"])
	g.Expect(dry.out).To(ContainSubstring(string(wantSpec)), "the spec written back is the one found")
	g.Expect(dry.out).To(MatchRegexp(`PeerAuthentication demo/labrun-permissive-\S+: created by the run; would delete it`))
	g.Expect(temporaryPeerAuths(t)).To(ContainElement(HavePrefix(temporary)), "a dry run changes nothing")

	refused := kubectlLabrun(t, "restore")
	g.Expect(refused.code).To(Equal(plugin.ExitError))
	g.Expect(refused.errOut).To(ContainSubstring("mesh-marks"))
	g.Expect(refused.errOut).To(ContainSubstring("--as-manager"))

	restored := kubectlLabrun(t, "restore", "--as-manager")
	g.Expect(restored.code).To(Equal(plugin.ExitOK), restored.errOut)
	g.Expect(restored.out).To(ContainSubstring("restored AuthorizationPolicy demo/backend-allow-frontend-only"))
	expectMeshAsFound(t)
	g.Expect(kubectlLabrun(t, "restore", "--dry-run").out).To(ContainSubstring("Nothing to restore"))

	startManager(t, managerOptions()) // the operator comes back: the run ends instead of resuming
	t.Cleanup(func() { deleteRun(t, key) })
	status := waitForStatus(t, key)
	g.Expect(status.code).To(Equal(plugin.ExitRunFailed), "a failed run's status exits non-zero")
	g.Expect(status.out).To(MatchRegexp(`(?m)^peer-authentication\s+\S+.*\sError\s`))
	g.Expect(status.out).To(ContainSubstring("the manager was replaced while the mesh was weakened"))
	expectMeshAsFound(t)
}

// waitForStatus runs `status` until the run has ended (exit 2 means not yet).
func waitForStatus(t *testing.T, key client.ObjectKey) result {
	var res result
	NewWithT(t).Eventually(func() int {
		res = kubectlLabrun(t, "status", key.Name, "-n", key.Namespace)
		return res.code
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).ShouldNot(Equal(plugin.ExitError))
	return res
}

// expectMeshAsFound: the mesh-wide PeerAuthentication and the AuthorizationPolicy have their original spec,
// labels and annotations, and no PeerAuthentication a run created is left.
func expectMeshAsFound(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	pa, ap := readMesh(peerAuthRef), readMesh(policyRef)
	g.Expect(reflect.DeepEqual(pa.Object["spec"], origPeerAuth.Object["spec"])).To(BeTrue(), "PeerAuthentication spec %v", pa.Object["spec"])
	g.Expect(reflect.DeepEqual(ap.Object["spec"], origPolicy.Object["spec"])).To(BeTrue(), "AuthorizationPolicy spec %v", ap.Object["spec"])
	g.Expect(pa.GetLabels()).To(Equal(origPeerAuth.GetLabels()))
	g.Expect(ap.GetLabels()).To(Equal(origPolicy.GetLabels()))
	g.Expect(ap.GetAnnotations()).To(Equal(origPolicy.GetAnnotations()))
	g.Expect(temporaryPeerAuths(t)).To(BeEmpty())
}

// temporaryPeerAuths names the PeerAuthentications that carry a run's mark, other than the mesh-wide one.
func temporaryPeerAuths(t *testing.T) []string {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication).GroupVersion().WithKind("PeerAuthenticationList"))
	NewWithT(t).Expect(k8s.List(context.Background(), list, client.HasLabels{mesh.LabelChangedBy})).To(Succeed())
	var out []string
	for _, pa := range list.Items {
		if pa.GetNamespace() != peerAuthRef.Namespace || pa.GetName() != peerAuthRef.Name {
			out = append(out, pa.GetName())
		}
	}
	return out
}

// TestRunTimeoutLeavesTheRunGoing: with no operator to move it, `run --timeout` gives up with exit 2 and says
// the run goes on; the LabRun is left in place.
func TestRunTimeoutLeavesTheRunGoing(t *testing.T) {
	g := NewWithT(t)
	key := client.ObjectKey{Namespace: sandbox.DemoNamespace, Name: "nobody-runs-it"}
	t.Cleanup(func() { deleteRun(t, key) }) // no manager ever added a finalizer
	res := kubectlLabrun(t, "run", "-n", key.Namespace, "--name", key.Name, "--target", "backend", "--labs", "mtls",
		"--timeout", "2s")
	g.Expect(res.code).To(Equal(plugin.ExitError))
	g.Expect(res.errOut).To(ContainSubstring("LabRun demo/nobody-runs-it is still Pending after 2s; it goes on without the plugin"))
	g.Expect(getRun(t, key).Status.Phase).To(Equal(labsv1.PhasePending), "the API server's default; no manager saw it")
}

// TestStatusTableListsFailingNodes: under the table, a failing step's message and what each node saw.
func TestStatusTableListsFailingNodes(t *testing.T) {
	g := NewWithT(t)
	steps := []labsv1.StepResult{
		{Lab: labsv1.LabMTLS, Name: "client-allowed", Expected: "allowed", Observed: "allowed", Verdict: labsv1.VerdictPass,
			Coverage: []labsv1.NodeResult{{Node: "node-9", Role: labsv1.RoleSource, Verdict: labsv1.VerdictPass}}},
		{Lab: labsv1.LabMTLS, Name: "non-mesh-denied", Expected: "denied", Observed: "allowed (HTTP 200)",
			Verdict: labsv1.VerdictFail, Message: "plaintext got through on node-2",
			Coverage: []labsv1.NodeResult{
				{Node: "node-1", Role: labsv1.RoleDestination, Endpoint: "backend-0 (10.0.0.7:80)", Observed: "denied", Verdict: labsv1.VerdictPass},
				{Node: "node-2", Role: labsv1.RoleDestination, Endpoint: "backend-1 (10.0.1.7:80)", Observed: "allowed (HTTP 200)", Verdict: labsv1.VerdictFail},
			}},
	}
	var b strings.Builder
	g.Expect(plugin.WriteStepTable(&b, steps, 0)).To(Succeed())
	out := b.String()
	g.Expect(out).To(MatchRegexp(`(?m)^mtls\s+non-mesh-denied\s+denied\s+allowed \(HTTP 200\)\s+Fail\s+-$`))
	g.Expect(out).To(ContainSubstring("mtls/non-mesh-denied: plaintext got through on node-2\n"))
	g.Expect(out).To(ContainSubstring("  mtls/non-mesh-denied Destination node-2 backend-1 (10.0.1.7:80): Fail, observed allowed (HTTP 200)\n"))
	g.Expect(out).NotTo(ContainSubstring("node-9"), "passing steps get no node lines")
}

// TestStatusTableFitsTheTerminal: with a width, every row fits it, the long texts cut short with "…" and the
// verdict whole; without one (--wide, a pipe), the texts are printed in full.
func TestStatusTableFitsTheTerminal(t *testing.T) {
	g := NewWithT(t)
	long := strings.Repeat("an HBONE tunnel with SPIFFE identities on both ends ", 3)
	steps := []labsv1.StepResult{
		{Lab: labsv1.LabHBONE, Name: "hbone-tunnel", Expected: long, Observed: long, Verdict: labsv1.VerdictPass},
		{Lab: labsv1.LabMTLS, Name: "client-allowed", Expected: "allowed", Observed: "allowed (HTTP 200)", Verdict: labsv1.VerdictPass},
	}
	var narrow strings.Builder
	g.Expect(plugin.WriteStepTable(&narrow, steps, 100)).To(Succeed())
	for _, line := range strings.Split(strings.TrimRight(narrow.String(), "\n"), "\n") {
		g.Expect(utf8.RuneCountInString(strings.TrimRight(line, " "))).To(BeNumerically("<=", 100), line)
	}
	g.Expect(narrow.String()).To(MatchRegexp(`(?m)^hbone\s+hbone-tunnel\s+an HBONE.*…\s+an HBONE.*…\s+Pass\s+-$`))
	g.Expect(narrow.String()).To(MatchRegexp(`(?m)^mtls\s+client-allowed\s+allowed\s+allowed \(HTTP 200\)\s+Pass\s+-$`))
	var wide strings.Builder
	g.Expect(plugin.WriteStepTable(&wide, steps, 0)).To(Succeed())
	g.Expect(strings.Count(wide.String(), long)).To(Equal(2))
}

// TestScheduleRunStartsOneNow: `schedule run` creates a run of the schedule's template now, as the user, follows
// it to its end, and leaves it out of the schedule's own runs (no controller reference, no schedule label); a
// suspended schedule runs all the same, as `kubectl create job --from=cronjob/…` does.
func TestScheduleRunStartsOneNow(t *testing.T) {
	g := NewWithT(t)
	startManager(t, managerOptions())
	ls := &labsv1.LabSchedule{}
	g.Expect(yaml.UnmarshalStrict(readFile(t, "../../config/samples/labs_v1alpha1_labschedule.yaml"), ls)).To(Succeed())
	ls.Name, ls.Spec.Suspend = "run-me-now", ptr.To(true)
	g.Expect(k8s.Create(context.Background(), ls)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ls) })

	res := kubectlLabrun(t, "schedule", "run", ls.Name, "-n", ls.Namespace, "--timeout", "3m")
	g.Expect(res.code).To(Equal(plugin.ExitOK), res.errOut)
	m := regexp.MustCompile(`labrun\.labs\.ambientlab\.io/(run-me-now-manual-\w+) created from LabSchedule run-me-now`).FindStringSubmatch(res.out)
	g.Expect(m).To(HaveLen(2), res.out)
	key := client.ObjectKey{Namespace: ls.Namespace, Name: m[1]}
	t.Cleanup(func() { deleteRun(t, key) })
	run := getRun(t, key)
	g.Expect(run.Status.Phase).To(Equal(labsv1.PhaseSucceeded))
	g.Expect(run.Spec.Mode).To(Equal(ls.Spec.Template.Spec.Mode))
	g.Expect(run.Annotations).To(HaveKeyWithValue(plugin.AnnotationFromSchedule, ls.Name))
	g.Expect(run.Labels).To(HaveKeyWithValue("app.kubernetes.io/part-of", "ambient-security"))
	g.Expect(run.Labels).NotTo(HaveKey(labsv1.LabelSchedule))
	g.Expect(run.OwnerReferences).To(BeEmpty())
	g.Expect(res.out).To(ContainSubstring("LabRun demo/" + m[1] + " Succeeded"))

	missing := kubectlLabrun(t, "schedule", "run", "no-such-schedule", "-n", ls.Namespace)
	g.Expect(missing.code).To(Equal(plugin.ExitError))
	g.Expect(missing.errOut).To(ContainSubstring("not found"))
}
