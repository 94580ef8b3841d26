package controllers_test

import (
	"context"
	"regexp"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
)

// TestVerifyCoversEveryNodeAndNamesTheFaultyOne: with a second backend endpoint on another node, a Verify run
// probes from every node with a ztunnel to every endpoint and records per node what it saw. A healthy world
// passes everywhere; with one node's ztunnel switched to misbehave, the run fails and its failing steps name
// that node and no other.
func TestVerifyCoversEveryNodeAndNamesTheFaultyOne(t *testing.T) {
	g := NewWithT(t)
	nodes := sb.Nodes
	g.Expect(len(nodes)).To(BeNumerically(">=", 3))
	second := secondBackend(t, nodes[2], "backend-second-replica") // the world's backend runs on nodes[1]
	startManager(t, managerOptions())
	paBefore, apBefore := readMesh(peerAuthRef).GetResourceVersion(), readMesh(policyRef).GetResourceVersion()
	verifyLabs := []labsv1.LabName{labsv1.LabPeerAuthentication, labsv1.LabAuthorizationPolicy}
	plan, err := labs.PlanMode(verifyLabs, labsv1.ModeVerify)
	g.Expect(err).NotTo(HaveOccurred())
	var probeSteps []labs.Step
	for _, s := range plan {
		if s.Kind == labs.KindProbe && !s.Bystander {
			probeSteps = append(probeSteps, s)
		}
	}
	g.Expect(probeSteps).NotTo(BeEmpty())

	t.Run("healthy", func(t *testing.T) {
		g := NewWithT(t)
		done := verifyRun(t, verifyLabs)
		g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
		for _, s := range probeSteps {
			st := stepOf(t, done, s.Lab, s.Name)
			var sources, endpoints []string
			for _, c := range st.Coverage {
				g.Expect(c.Verdict).To(Equal(labsv1.VerdictPass), "%s: %+v", s.ID(), c)
				g.Expect(c.Attempts).To(BeNumerically(">", 0), "%s: %+v", s.ID(), c)
				if c.Role == labsv1.RoleSource {
					sources = append(sources, c.Node)
				} else {
					endpoints = append(endpoints, c.Node+"/"+c.Endpoint)
				}
			}
			g.Expect(sources).To(ConsistOf(nodes), "%s: a source on every node with a ztunnel", s.ID())
			g.Expect(endpoints).To(HaveLen(2), "%s: both endpoints", s.ID())
			g.Expect(endpoints).To(ContainElement(HavePrefix(nodes[2]+"/"+second.Name+" (")), s.ID())
			if s.Denier != "" {
				// Who refused is logged by the endpoints' nodes: only their ztunnels were read.
				var read []string
				for _, src := range st.EvidenceSources {
					read = append(read, src.Node)
				}
				g.Expect(read).To(ConsistOf(nodes[1], nodes[2]), "%s: the ztunnels read", s.ID())
			}
		}
	})

	for _, tc := range []struct {
		fault dataplane.Fault
		node  string
	}{
		{dataplane.FaultNoEnforce, nodes[2]}, // an endpoint's node lets everything in
		{dataplane.FaultRefuseAll, nodes[1]}, // an endpoint's node, where frontend does not run, refuses all
		{dataplane.FaultRefuseAll, nodes[0]}, // the client's node refuses all: only a source fails
	} {
		t.Run(string(tc.fault)+"@"+tc.node, func(t *testing.T) {
			g := NewWithT(t)
			sb.SetNodeFault(tc.node, tc.fault)
			t.Cleanup(func() { sb.SetNodeFault(tc.node, dataplane.FaultNone) })
			done := verifyRun(t, verifyLabs)
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
			others := regexp.MustCompile(`\bnode-\d+\b`)
			failedProbes := 0
			for _, st := range done.Status.Steps {
				if st.Verdict == labsv1.VerdictPass || st.Verdict == labsv1.VerdictSkipped {
					continue
				}
				named := others.FindAllString(st.Message, -1)
				if !slices.ContainsFunc(probeSteps, func(s labs.Step) bool { return s.Lab == st.Lab && s.Name == st.Name }) {
					g.Expect(named).To(HaveEach(tc.node), "%s/%s: %s", st.Lab, st.Name, st.Message)
					continue
				}
				failedProbes++
				t.Logf("%s/%s: %s %s", st.Lab, st.Name, st.Verdict, st.Message)
				g.Expect(named).To(ContainElement(tc.node), "%s/%s names the node: %s", st.Lab, st.Name, st.Message)
				g.Expect(named).To(HaveEach(tc.node), "%s/%s names only that node: %s", st.Lab, st.Name, st.Message)
				for _, c := range st.Coverage {
					if c.Verdict != labsv1.VerdictPass {
						g.Expect(c.Node).To(Equal(tc.node), "%s/%s coverage: %+v", st.Lab, st.Name, c)
					}
				}
				g.Expect(slices.ContainsFunc(st.Coverage, func(c labsv1.NodeResult) bool {
					return c.Verdict == labsv1.VerdictFail && c.Node == tc.node
				})).To(BeTrue(), "%s/%s coverage fails %s: %+v", st.Lab, st.Name, tc.node, st.Coverage)
			}
			g.Expect(failedProbes).To(BeNumerically(">", 0), notPassed(done))
		})
	}
	// Verify changed nothing, faulty nodes or not.
	g.Expect(readMesh(peerAuthRef).GetResourceVersion()).To(Equal(paBefore))
	g.Expect(readMesh(policyRef).GetResourceVersion()).To(Equal(apBefore))
}

func verifyRun(t *testing.T, names []labsv1.LabName) *labsv1.LabRun {
	t.Helper()
	run := newRun(names...)
	run.Spec.Mode = labsv1.ModeVerify
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: 3 * time.Second}
	run.Spec.Probe.RequestTimeout = &metav1.Duration{Duration: time.Second}
	create(t, run)
	return finished(t, run)
}

// TestVerifyRunsOnANodeTaintedNoExecute: ztunnel runs on every node whatever its taints (the Istio chart tolerates
// them all), and an observer pinned by spec.nodeName bypasses the scheduler, but kubelet still refuses a pod that
// does not tolerate the node's NoExecute taints. A Verify run must still cover such a node: its observers tolerate
// the node's NoExecute taints.
func TestVerifyRunsOnANodeTaintedNoExecute(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	nodes := sb.Nodes
	tainted := nodes[2]
	taint := corev1.Taint{Key: "labrun.test/dedicated", Value: "infra", Effect: corev1.TaintEffectNoExecute}
	setTaints(t, tainted, taint)
	t.Cleanup(func() { setTaints(t, tainted) })
	startManager(t, managerOptions())

	t.Run("premise: the node refuses a pinned pod that does not tolerate the taint", func(t *testing.T) {
		g := NewWithT(t)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: "untolerating"},
			Spec: corev1.PodSpec{NodeName: tainted, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		g.Expect(k8s.Create(ctx, pod)).To(Succeed())
		t.Cleanup(func() { _ = k8s.Delete(ctx, pod) })
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
			g.Expect(pod.Status.Phase).To(Equal(corev1.PodFailed))
			g.Expect(pod.Status.Reason).To(Equal("TaintToleration"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	done := verifyRun(t, []labsv1.LabName{labsv1.LabPeerAuthentication, labsv1.LabAuthorizationPolicy})
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
	covered := 0
	for _, st := range done.Status.Steps {
		var sources []string
		for _, c := range st.Coverage {
			if c.Role == labsv1.RoleSource {
				sources = append(sources, c.Node)
			}
		}
		if len(st.Coverage) > 0 {
			covered++
			g.Expect(sources).To(ConsistOf(nodes), "%s/%s: a source on every node, the tainted one too", st.Lab, st.Name)
		}
	}
	g.Expect(covered).To(BeNumerically(">", 0), "per-node steps ran")
}

// setTaints replaces node's taints.
func setTaints(t *testing.T, node string, taints ...corev1.Taint) {
	t.Helper()
	ctx := context.Background()
	NewWithT(t).Eventually(func() error {
		n := &corev1.Node{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
			return err
		}
		n.Spec.Taints = taints
		return k8s.Update(ctx, n)
	}).WithTimeout(10 * time.Second).Should(Succeed())
}
