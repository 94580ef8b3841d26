package sandbox_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// startObserver creates an observer probe pod and deletes it when the test ends.
func startObserver(t *testing.T, serviceAccount string, budget time.Duration) *corev1.Pod {
	t.Helper()
	pod := newProbePod(sandbox.DemoNamespace, serviceAccount, probe.Options{
		Observe: true, URL: backendURL, Timeout: 2 * time.Second, Settle: budget, Interval: 100 * time.Millisecond,
	})
	NewWithT(t).Expect(asManager(t).Create(t.Context(), pod)).To(Succeed())
	t.Cleanup(func() {
		err := sb.Client.Delete(context.Background(), pod)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting observer pod %s: %v", pod.Name, err)
		}
	})
	return pod
}

// observerAttempts reads the observer's log through the API server's pods/log, as the controller does.
func observerAttempts(g Gomega, ctx context.Context, pod *corev1.Pod) []probe.Attempt {
	cs, err := kubernetes.NewForConfig(sb.Env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: probe.ContainerName}).DoRaw(ctx)
	g.Expect(err).NotTo(HaveOccurred(), "logs of %s", pod.Name)
	return probe.ParseAttempts(raw)
}

// expectInOrder checks that attempts started one after another, each at least the interval after the last.
func expectInOrder(g Gomega, attempts []probe.Attempt) {
	for i := 1; i < len(attempts); i++ {
		g.Expect(attempts[i].Time.Sub(attempts[i-1].Time)).To(BeNumerically(">=", 100*time.Millisecond),
			"attempt %d after attempt %d", i, i-1)
	}
}

// TestObserverStreamsWhileRunning starts an observer as frontend, which backend's policy allows, and reads its
// attempts through pods/log while the pod is still Running; deleting the pod stops it.
func TestObserverStreamsWhileRunning(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	waitForMesh(t)
	pod := startObserver(t, "frontend", 2*time.Minute)

	var attempts []probe.Attempt
	g.Eventually(func(g Gomega) {
		attempts = observerAttempts(g, ctx, pod)
		g.Expect(len(attempts)).To(BeNumerically(">=", 3))
	}, waitFor, pollFor).Should(Succeed())
	cur := &corev1.Pod{}
	g.Expect(sb.Client.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
	g.Expect(cur.Status.Phase).To(Equal(corev1.PodRunning), "an observer runs while it reports")
	g.Expect(cur.Status.ContainerStatuses).To(HaveExactElements(HaveField("State.Running", Not(BeNil()))))

	expectInOrder(g, attempts)
	g.Expect(attempts[0].Time).To(BeTemporally(">=", cur.CreationTimestamp.Time), "attempts start after the pod")
	for i, a := range attempts {
		g.Expect(a).To(And(HaveField("Observed", "allowed"), HaveField("HTTPCode", 200), HaveField("ExitCode", 0),
			HaveField("Reason", "http"), HaveField("Error", "")), "attempt %d", i)
	}

	g.Expect(sb.Client.Delete(ctx, pod)).To(Succeed())
	g.Eventually(func() error {
		return sb.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
	}, waitFor, pollFor).Should(Satisfy(apierrors.IsNotFound))
	stopped := len(sb.Logs.Lines(pod.Namespace, pod.Name, probe.ContainerName))
	// Several intervals without a new line: the deletion stopped the observer.
	g.Consistently(func() int {
		return len(sb.Logs.Lines(pod.Namespace, pod.Name, probe.ContainerName))
	}, 500*time.Millisecond, pollFor).Should(Equal(stopped))
}

// TestObserverCompletesWhenItsBudgetEnds starts an observer as backend's own ServiceAccount, which backend's
// policy does not allow: every attempt is reset, and the container exits 0 with a summary once its budget ran out.
func TestObserverCompletesWhenItsBudgetEnds(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	waitForMesh(t)
	pod := startObserver(t, "backend", time.Second)

	cur := &corev1.Pod{}
	g.Eventually(func(g Gomega) {
		g.Expect(sb.Client.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(cur.Status.Phase).To(Equal(corev1.PodSucceeded))
	}, waitFor, pollFor).Should(Succeed())
	g.Expect(cur.Status.ContainerStatuses).To(HaveLen(1))
	term := cur.Status.ContainerStatuses[0].State.Terminated
	g.Expect(term).NotTo(BeNil())
	g.Expect(term.ExitCode).To(BeZero())
	g.Expect(term.Reason).To(Equal("Completed"))

	attempts := observerAttempts(g, ctx, pod)
	var summary probe.Summary
	g.Expect(json.Unmarshal([]byte(term.Message), &summary)).To(Succeed(), "termination message %q", term.Message)
	g.Expect(summary.Attempts).To(Equal(len(attempts)), "the summary counts the logged attempts")
	g.Expect(len(attempts)).To(BeNumerically(">=", 3))
	expectInOrder(g, attempts)
	for i, a := range attempts {
		g.Expect(a).To(And(HaveField("Observed", "denied"), HaveField("HTTPCode", 0), HaveField("ExitCode", 56),
			HaveField("Reason", "reset")), "attempt %d", i)
		g.Expect(a.Time).To(BeTemporally("<", attempts[0].Time.Add(time.Second)), "attempt %d within the budget", i)
	}
}
