package controllers_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// TestEachLabPasses runs every lab of the guide on its own through the sandbox: every planned step passes and
// the mesh is left as found. Expectations come from the catalogue (the lab guide), not the simulator.
func TestEachLabPasses(t *testing.T) {
	startManager(t, managerOptions())
	for _, lab := range labsv1.AllLabs {
		t.Run(string(lab), func(t *testing.T) {
			g := NewWithT(t)
			run := newRun(lab)
			create(t, run)
			done := finished(t, run)
			plan, err := labs.Plan([]labsv1.LabName{lab})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(done.Status.Steps).To(HaveLen(len(plan)))
			for i, st := range done.Status.Steps {
				g.Expect(st.Name).To(Equal(plan[i].Name))
				g.Expect(st.Expected).To(Equal(plan[i].Expected()))
				g.Expect(st.Verdict).To(Equal(labsv1.VerdictPass), "%s/%s: %s", st.Lab, st.Name, st.Message)
				g.Expect(st.StartTime).NotTo(BeNil())
				g.Expect(st.CompletionTime).NotTo(BeNil())
			}
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), done.Status.Message)
			g.Expect(done.Status.Summary.Passed).To(Equal(int32(len(plan))))
			g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
			g.Expect(kstatusOf(t, done)).To(Equal(status.CurrentStatus))
			expectMeshAsFound(t)
		})
	}
}

func TestMTLSLabRecordsEvidence(t *testing.T) {
	g := NewWithT(t)
	done := runLab(t, labsv1.LabMTLS)
	out := stepOf(t, done, labsv1.LabMTLS, "outbound-identity")
	g.Expect(out.Evidence).NotTo(BeEmpty())
	g.Expect(out.Evidence[0]).To(ContainSubstring(`src.identity="spiffe://cluster.local/ns/demo/sa/frontend"`))
	g.Expect(out.Evidence[0]).To(ContainSubstring(`direction="outbound"`))
	in := stepOf(t, done, labsv1.LabMTLS, "inbound-identity")
	g.Expect(in.Evidence[0]).To(ContainSubstring(`dst.identity="spiffe://cluster.local/ns/demo/sa/backend"`))
	probe := stepOf(t, done, labsv1.LabMTLS, "client-allowed")
	g.Expect(probe.HTTPCode).To(HaveValue(BeEquivalentTo(200)))
	g.Expect(probe.ExitCode).To(HaveValue(BeEquivalentTo(0)))
	// One Event per verdict, each its own (not folded into a series).
	g.Eventually(func(g Gomega) {
		events := &eventsv1.EventList{}
		g.Expect(k8s.List(context.Background(), events, client.InNamespace(done.Namespace))).To(Succeed())
		var notes []string
		for _, e := range events.Items {
			if e.Regarding.UID == done.UID && e.Reason == "StepPassed" {
				notes = append(notes, e.Note)
			}
		}
		g.Expect(notes).To(HaveLen(len(done.Status.Steps)))
		g.Expect(notes).To(ContainElement(ContainSubstring("mtls/outbound-identity")))
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// TestPeerAuthenticationLabSeesStrictAndPermissive runs the lab with the default scope, Workload: the mesh-wide
// PeerAuthentication stays STRICT all along (watched), a temporary one makes only backend's port PERMISSIVE, the
// non-mesh observer sees the change take effect, frontend keeps refusing plaintext meanwhile, and the temporary
// policy is gone afterwards.
func TestPeerAuthenticationLabSeesStrictAndPermissive(t *testing.T) {
	g := NewWithT(t)
	modes := watchMeshWideMode(t)
	done := runLab(t, labsv1.LabPeerAuthentication)
	g.Expect(modes()).To(HaveEach("STRICT"), "the mesh-wide PeerAuthentication during the run")
	denied := stepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-denied")
	g.Expect(denied.ExitCode).To(HaveValue(BeEquivalentTo(56)), denied.Message)
	g.Expect(denied.HTTPCode).To(HaveValue(BeEquivalentTo(0)))
	// Denied by STRICT itself, as the destination ztunnel's line for the non-mesh observer says.
	g.Expect(denied.Observed).To(HaveSuffix("by istio-system/istio_converted_static_strict"))
	g.Expect(denied.Evidence).To(ConsistOf(ContainSubstring(`src.workload="` + done.Name + "-obs-")))
	allowed := stepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-allowed")
	g.Expect(allowed.HTTPCode).To(HaveValue(BeEquivalentTo(200)), allowed.Message)
	// The observer ran before the change: what it saw began after it, once istiod's push reached ztunnel.
	g.Expect(allowed.Settle).NotTo(BeNil())
	g.Expect(allowed.Settle.Duration).To(BeNumerically(">", 0))
	bystander := stepOf(t, done, labsv1.LabPeerAuthentication, "bystander-denied")
	g.Expect(bystander.Verdict).To(Equal(labsv1.VerdictPass), bystander.Message)
	g.Expect(bystander.Observed).To(HavePrefix("non-mesh → bystander denied"))
	g.Expect(bystander.Observed).To(HaveSuffix("by istio-system/istio_converted_static_strict"))
	g.Expect(bystander.Evidence).To(ConsistOf(ContainSubstring(`dst.workload="frontend-`)))
	g.Expect(done.Status.Journal).To(HaveLen(2))
	g.Expect(done.Status.Journal).To(HaveEach(HaveField("Restored", true)))
	g.Expect(done.Status.Journal).To(ContainElement(And(HaveField("Created", true),
		HaveField("Kind", "PeerAuthentication"), HaveField("Namespace", "demo"),
		HaveField("Name", HavePrefix("labrun-permissive-")))))
	x := done.Status.Exposure
	g.Expect(x.Duration).NotTo(BeNil())
	g.Expect(x.Duration.Duration).To(BeNumerically(">", 0))
	g.Expect(x.Since).To(BeNil())
	g.Expect(x.Scope).To(Equal(labsv1.ScopeWorkload))
	g.Expect(x.Pods).To(BeEquivalentTo(1), "backend's pod only")
	podSeconds, err := strconv.ParseFloat(x.PodSeconds, 64)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(podSeconds).To(BeNumerically("~", x.Duration.Seconds(), 0.02), "one pod for the whole window")
	restored := meta.FindStatusCondition(done.Status.Conditions, labsv1.ConditionMeshRestored)
	g.Expect(restored.Reason).To(Equal(labsv1.ReasonRestored))
}

// TestWiderScopesWeakenMore: Namespace scope creates a namespace-wide temporary PeerAuthentication (both demo
// pods weakened, no bystander left to call); Mesh scope sets the mesh-wide one PERMISSIVE, as the guide does
// (every ambient pod of the world weakened, shop's too).
// Both restore.
func TestWiderScopesWeakenMore(t *testing.T) {
	startManager(t, managerOptions())
	for _, scope := range []labsv1.Scope{labsv1.ScopeNamespace, labsv1.ScopeMesh} {
		t.Run(string(scope), func(t *testing.T) {
			g := NewWithT(t)
			modes := watchMeshWideMode(t)
			run := newRun(labsv1.LabPeerAuthentication)
			run.Spec.Scope = scope
			create(t, run)
			done := finished(t, run)
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
			g.Expect(stepOf(t, done, labsv1.LabPeerAuthentication, "bystander-denied").Verdict).To(Equal(labsv1.VerdictSkipped))
			g.Expect(done.Status.Exposure.Scope).To(Equal(scope))
			if scope == labsv1.ScopeMesh {
				// Every ambient pod of the mesh: demo's frontend and backend, shop's orders, payments and catalog.
				g.Expect(done.Status.Exposure.Pods).To(BeEquivalentTo(5), "every ambient pod of the world")
			} else {
				g.Expect(done.Status.Exposure.Pods).To(BeEquivalentTo(2), "frontend and backend")
			}
			if scope == labsv1.ScopeMesh {
				g.Expect(modes()).To(ContainElement("PERMISSIVE"))
			} else {
				g.Expect(modes()).To(HaveEach("STRICT"))
			}
			expectMeshAsFound(t)
		})
	}
}

// watchMeshWideMode watches the mesh-wide PeerAuthentication from now on; the returned function stops and lists
// every mode it was seen in (its state now first).
func watchMeshWideMode(t *testing.T) func() []string {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication).GroupVersion().WithKind("PeerAuthenticationList"))
	w, err := k8s.Watch(context.Background(), list, client.InNamespace(peerAuthRef.Namespace),
		client.MatchingFields{"metadata.name": peerAuthRef.Name})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	var mu sync.Mutex
	var modes []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if u, ok := ev.Object.(*unstructured.Unstructured); ok {
				m, _, _ := unstructured.NestedString(u.Object, "spec", "mtls", "mode")
				mu.Lock()
				modes = append(modes, m)
				mu.Unlock()
			}
		}
	}()
	stop := func() []string {
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return modes
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestAuthorizationPolicyLabDeniesAttacker(t *testing.T) {
	g := NewWithT(t)
	done := runLab(t, labsv1.LabAuthorizationPolicy)
	g.Expect(stepOf(t, done, labsv1.LabAuthorizationPolicy, "attacker-allowed-without-policy").HTTPCode).To(HaveValue(BeEquivalentTo(200)))
	denied := stepOf(t, done, labsv1.LabAuthorizationPolicy, "attacker-denied")
	g.Expect(denied.ExitCode).To(HaveValue(BeEquivalentTo(56)))
	g.Expect(denied.Observed).To(HaveSuffix("by no ALLOW policy (allow policies exist, but none allowed)"))
	logged := stepOf(t, done, labsv1.LabAuthorizationPolicy, "rejection-logged")
	g.Expect(logged.Evidence).NotTo(BeEmpty())
	g.Expect(logged.Evidence[0]).To(ContainSubstring(`src.identity="spiffe://cluster.local/ns/demo/sa/labrun-attacker-`))
	g.Expect(logged.Evidence[0]).To(ContainSubstring("policy rejection"))
}

func TestFootprintLabRecordsComparison(t *testing.T) {
	g := NewWithT(t)
	done := runLab(t, labsv1.LabFootprint)
	fp := done.Status.Footprint
	g.Expect(fp).NotTo(BeNil())
	g.Expect(fp.Nodes).To(BeEquivalentTo(len(sb.Nodes)))
	g.Expect(fp.ZtunnelPods).To(BeEquivalentTo(len(sb.Nodes)))
	g.Expect(fp.Source).To(Equal("requests"))   // the sandbox serves no metrics.k8s.io
	g.Expect(fp.MeshPods).To(BeEquivalentTo(5)) // demo's frontend and backend, shop's orders, payments and catalog
	// The guide's per-sidecar defaults: 100m CPU and 50M memory each.
	g.Expect(fp.SidecarCPU.MilliValue()).To(BeEquivalentTo(500))
	g.Expect(fp.SidecarMemory.Value()).To(BeEquivalentTo(250_000_000))
	g.Expect(fp.SavedCPU.MilliValue()).To(Equal(fp.SidecarCPU.MilliValue() - fp.AmbientCPU.MilliValue()))
}

func TestHBONELabCountsTunnels(t *testing.T) {
	g := NewWithT(t)
	done := runLab(t, labsv1.LabHBONE)
	g.Expect(stepOf(t, done, labsv1.LabHBONE, "client-requests").Attempts).To(BeNumerically(">=", labs.HBONERequests))
	tunnel := stepOf(t, done, labsv1.LabHBONE, "hbone-tunnel")
	g.Expect(tunnel.Evidence).NotTo(BeEmpty())
	g.Expect(tunnel.Evidence[0]).To(MatchRegexp(`dst.addr=[0-9.]+:15008 dst.hbone_addr=[0-9.]+:80`))
}

// TestMetricsCountVerdicts reads the manager's metrics registry after a run.
func TestMetricsCountVerdicts(t *testing.T) {
	startManager(t, managerOptions())
	g := NewWithT(t)
	before := counterValue(t, "labrun_step_verdicts_total", map[string]string{"lab": "mtls", "step": "client-allowed", "verdict": "Pass"})
	run := newRun(labsv1.LabMTLS)
	create(t, run)
	g.Expect(finished(t, run).Status.Phase).To(Equal(labsv1.PhaseSucceeded))
	after := counterValue(t, "labrun_step_verdicts_total", map[string]string{"lab": "mtls", "step": "client-allowed", "verdict": "Pass"})
	g.Expect(after - before).To(BeNumerically(">=", 1))
	g.Expect(counterValue(t, "labrun_runs_finished_total", map[string]string{"phase": "Succeeded", "mesh_restored": "true"})).To(BeNumerically(">=", 1))
}

func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := true
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					match = false
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// runLab runs one lab with a fresh manager and returns the finished run.
func runLab(t *testing.T, lab labsv1.LabName) *labsv1.LabRun {
	t.Helper()
	startManager(t, managerOptions())
	run := newRun(lab)
	create(t, run)
	return finished(t, run)
}
