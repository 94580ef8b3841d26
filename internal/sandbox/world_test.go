package sandbox_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	secv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// TestWorld checks the lab guide's world as kubectl would show it.
func TestWorld(t *testing.T) {
	ctx := t.Context()

	t.Run("nodes are Ready with a loopback InternalIP", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(sb.Nodes).To(Equal([]string{"node-1", "node-2", "node-3"}))
		nodes := &corev1.NodeList{}
		g.Expect(sb.Client.List(ctx, nodes)).To(Succeed())
		var names []string
		for _, n := range nodes.Items {
			names = append(names, n.Name)
			g.Expect(n.Status.Addresses).To(ContainElement(corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}), n.Name)
			g.Expect(n.Status.Conditions).To(ContainElement(And(
				HaveField("Type", corev1.NodeReady), HaveField("Status", corev1.ConditionTrue))), n.Name)
		}
		g.Expect(names).To(ConsistOf("node-1", "node-2", "node-3"))
	})

	t.Run("frontend and backend run in demo, one container each, no init containers", func(t *testing.T) {
		g := NewWithT(t)
		for _, app := range []string{"frontend", "backend"} {
			g.Eventually(func(g Gomega) {
				pods := &corev1.PodList{}
				g.Expect(sb.Client.List(ctx, pods, client.InNamespace(sandbox.DemoNamespace),
					client.MatchingLabels{"app": app})).To(Succeed())
				g.Expect(pods.Items).To(HaveLen(1), app)
				p := pods.Items[0]
				g.Expect(p.Spec.Containers).To(HaveLen(1), "ambient mode means no sidecar in %s", p.Name)
				g.Expect(p.Spec.InitContainers).To(BeEmpty(), "ambient mode means no istio-init in %s", p.Name)
				g.Expect(p.Spec.NodeName).NotTo(BeEmpty())
				g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), p.Name)
				g.Expect(p.Status.PodIP).NotTo(BeEmpty(), p.Name)
				g.Expect(p.Status.Conditions).To(ContainElement(And(
					HaveField("Type", corev1.PodReady), HaveField("Status", corev1.ConditionTrue))), p.Name)
				g.Expect(p.Status.ContainerStatuses).To(HaveExactElements(HaveField("Ready", true)), p.Name)
			}, waitFor, pollFor).Should(Succeed())
		}
	})

	t.Run("their Deployments show their pods ready, as kubectl get deploy would", func(t *testing.T) {
		g := NewWithT(t)
		for _, app := range []string{"frontend", "backend"} {
			d := &appsv1.Deployment{}
			g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.DemoNamespace, Name: app}, d)).To(Succeed())
			g.Expect(d.Spec.Replicas).NotTo(BeNil(), app)
			g.Expect(d.Status.ReadyReplicas).To(Equal(*d.Spec.Replicas), app)
			g.Expect(d.Status.AvailableReplicas).To(Equal(*d.Spec.Replicas), app)
		}
	})

	t.Run("one running ztunnel per node", func(t *testing.T) {
		g := NewWithT(t)
		g.Eventually(func(g Gomega) {
			pods := &corev1.PodList{}
			g.Expect(sb.Client.List(ctx, pods, client.InNamespace(sandbox.RootNamespace),
				client.MatchingLabels{"app": "ztunnel"})).To(Succeed())
			var nodes []string
			for _, p := range pods.Items {
				g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), p.Name)
				nodes = append(nodes, p.Spec.NodeName)
			}
			g.Expect(nodes).To(ConsistOf("node-1", "node-2", "node-3"))
		}, waitFor, pollFor).Should(Succeed())
	})

	t.Run("mesh-wide PeerAuthentication is STRICT", func(t *testing.T) {
		g := NewWithT(t)
		pa := peerAuthentication(g, ctx)
		g.Expect(pa.Spec.GetSelector()).To(BeNil(), "mesh-wide means no selector")
		g.Expect(pa.Spec.GetMtls().GetMode()).To(Equal(secv1beta1.PeerAuthentication_MutualTLS_STRICT))
	})

	t.Run("backend's AuthorizationPolicy allows frontend", func(t *testing.T) {
		g := NewWithT(t)
		ap := backendPolicy(g, ctx)
		g.Expect(ap.Spec.GetAction()).To(Equal(secv1beta1.AuthorizationPolicy_ALLOW))
		g.Expect(ap.Spec.GetSelector().GetMatchLabels()).To(Equal(map[string]string{"app": "backend"}))
		var principals []string
		for _, r := range ap.Spec.GetRules() {
			for _, f := range r.GetFrom() {
				principals = append(principals, f.GetSource().GetPrincipals()...)
			}
		}
		g.Expect(principals).To(ContainElement("cluster.local/ns/demo/sa/frontend"))
	})

	t.Run("demo is enrolled in ambient", func(t *testing.T) {
		g := NewWithT(t)
		ns := &corev1.Namespace{}
		g.Expect(sb.Client.Get(ctx, client.ObjectKey{Name: sandbox.DemoNamespace}, ns)).To(Succeed())
		g.Expect(ns.Labels).To(HaveKeyWithValue("istio.io/dataplane-mode", "ambient"))
	})
}

// TestWaitForWorld replaces a ztunnel pod, as its DaemonSet would, while pods take 2s to start (`manager sandbox
// --pod-start-latency 2s`), and checks that WaitForWorld, which Start ends with, returns only once every pod of
// the world is Ready again: before, the sample LabRun failed its preflight with "no ready ztunnel pod".
func TestWaitForWorld(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	const latency = 2 * time.Second
	sb.SetPodStartLatency(latency)
	t.Cleanup(func() { sb.SetPodStartLatency(0) })

	key := client.ObjectKey{Namespace: sandbox.RootNamespace, Name: "ztunnel-node-3"}
	old := &corev1.Pod{}
	g.Expect(sb.Client.Get(ctx, key, old)).To(Succeed())
	g.Expect(sb.Client.Delete(ctx, old)).To(Succeed())
	g.Eventually(func() error { return sb.Client.Get(ctx, key, &corev1.Pod{}) }, waitFor, pollFor).
		Should(Satisfy(apierrors.IsNotFound))
	replacement := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
		Labels: old.Labels}, Spec: old.Spec}
	g.Expect(sb.Client.Create(ctx, replacement)).To(Succeed())
	g.Expect(sb.Client.Get(ctx, key, replacement)).To(Succeed())
	g.Expect(readyCondition(replacement)).To(BeNil(), "the replacement is not Ready yet: the wait has work to do")

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	g.Expect(sb.WaitForWorld(short)).To(MatchError(MatchRegexp(`^waiting for the world's pods: pods not Ready `+
		`after [^:]+: istio-system/ztunnel-node-3 \(phase Pending\): context deadline exceeded$`)),
		"a wait cut short names the pod not Ready, and only that one")
	g.Expect(sb.WaitForWorld(ctx)).To(Succeed())

	pods := &corev1.PodList{}
	g.Expect(sb.Client.List(ctx, pods, client.InNamespace(sandbox.DemoNamespace))).To(Succeed())
	ztunnels := &corev1.PodList{}
	g.Expect(sb.Client.List(ctx, ztunnels, client.InNamespace(sandbox.RootNamespace),
		client.MatchingLabels{"app": "ztunnel"})).To(Succeed())
	var ready []string
	var started time.Duration
	for _, p := range append(pods.Items, ztunnels.Items...) {
		c := readyCondition(&p)
		if c == nil || c.Status != corev1.ConditionTrue {
			continue
		}
		ready = append(ready, p.Name)
		if p.UID == replacement.UID {
			started = c.LastTransitionTime.Sub(p.CreationTimestamp.Time)
		}
	}
	g.Expect(ready).To(ContainElements(HavePrefix("frontend-"), HavePrefix("backend-"),
		"ztunnel-node-1", "ztunnel-node-2", "ztunnel-node-3"), "Ready when WaitForWorld returns")
	g.Expect(started).To(BeNumerically(">=", 1500*time.Millisecond), "the replacement took the start latency")
}

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
