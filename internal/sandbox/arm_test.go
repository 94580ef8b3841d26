package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// armKey is the arm ConfigMap key of the tests' warm observers.
const armKey = "n1.json"

// armData is a ConfigMap's data holding arm under armKey.
func armData(t *testing.T, arm probe.Arm) map[string]string {
	t.Helper()
	raw, err := json.Marshal(arm)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{armKey: string(raw)}
}

// createArmConfigMap creates a ConfigMap in the demo namespace holding arm, labelled as an arm ConfigMap or not,
// and deletes it when the test ends.
func createArmConfigMap(t *testing.T, labelled bool, arm probe.Arm) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: fmt.Sprintf("arms-%d", probeCounter.Add(1))},
		Data:       armData(t, arm),
	}
	if labelled {
		cm.Labels = map[string]string{labsv1.LabelArm: "true"}
	}
	NewWithT(t).Expect(sb.Client.Create(t.Context(), cm)).To(Succeed())
	t.Cleanup(func() {
		if err := sb.Client.Delete(context.Background(), cm); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting arm ConfigMap %s: %v", cm.Name, err)
		}
	})
	return cm
}

// setArm writes arm into cm, as the manager arms its warm observers for a run.
func setArm(t *testing.T, cm *corev1.ConfigMap, arm probe.Arm) {
	t.Helper()
	cm.Data = armData(t, arm)
	NewWithT(t).Expect(sb.Client.Update(t.Context(), cm)).To(Succeed())
}

// startWarmObserver creates a warm observer as frontend on the first node, reading its arm from cm's armKey,
// waits until it runs, and deletes it when the test ends.
func startWarmObserver(t *testing.T, cm *corev1.ConfigMap) *corev1.Pod {
	t.Helper()
	g := NewWithT(t)
	pod := probe.Pod(probe.PodRequest{
		Name: fmt.Sprintf("warm-%d", probeCounter.Add(1)), Namespace: sandbox.DemoNamespace, ServiceAccount: "frontend",
		Image:    sandbox.SandboxProbeImage,
		Labels:   map[string]string{labsv1.LabelProbe: "true", labsv1.LabelLabRun: "sandbox-test"},
		NodeName: sb.Nodes[0],
		Options:  probe.Options{Observe: true, Timeout: 2 * time.Second, Settle: 3 * time.Minute, Interval: 100 * time.Millisecond},
		Arm:      &probe.ArmVolume{ConfigMap: cm.Name, Key: armKey},
	})
	g.Expect(asManager(t).Create(t.Context(), pod)).To(Succeed())
	t.Cleanup(func() {
		if err := sb.Client.Delete(context.Background(), pod); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting warm observer %s: %v", pod.Name, err)
		}
	})
	g.Eventually(func(g Gomega) {
		cur := &corev1.Pod{}
		g.Expect(sb.Client.Get(t.Context(), client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(cur.Status.Phase).To(Equal(corev1.PodRunning))
	}, waitFor, pollFor).Should(Succeed())
	return pod
}

// expectIdle checks that the observer logs no attempt for a second: ten of its intervals.
func expectIdle(g Gomega, ctx context.Context, pod *corev1.Pod, since int) {
	g.Consistently(func(g Gomega) {
		g.Expect(observerAttempts(g, ctx, pod)).To(HaveLen(since))
	}, time.Second, 100*time.Millisecond).Should(Succeed())
}

// awaitArmed waits until the observer logged at least n attempts under token and returns its attempts.
func awaitArmed(g Gomega, ctx context.Context, pod *corev1.Pod, token string, n int) []probe.Attempt {
	var attempts []probe.Attempt
	g.Eventually(func(g Gomega) {
		attempts = observerAttempts(g, ctx, pod)
		under := 0
		for _, a := range attempts {
			if a.Arm == token {
				under++
			}
		}
		g.Expect(under).To(BeNumerically(">=", n))
	}, waitFor, pollFor).Should(Succeed())
	return attempts
}

// TestWarmObserverFollowsItsArm: a warm observer logs nothing while its arm has expired, calls the arm's URL
// for its token once armed, stops when the arm expires, and starts again for the next run.
func TestWarmObserverFollowsItsArm(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	waitForMesh(t)
	cm := createArmConfigMap(t, true, probe.Arm{Token: "run-0", URLs: []string{backendURL}, Until: time.Now().Add(-time.Minute)})
	pod := startWarmObserver(t, cm)

	expectIdle(g, ctx, pod, 0)

	setArm(t, cm, probe.Arm{Token: "run-1", URLs: []string{backendURL}, Until: time.Now().Add(time.Minute)})
	attempts := awaitArmed(g, ctx, pod, "run-1", 3)
	expectInOrder(g, attempts)
	for i, a := range attempts {
		g.Expect(a).To(And(HaveField("Arm", "run-1"), HaveField("URL", backendURL), HaveField("Observed", "allowed"),
			HaveField("HTTPCode", 200)), "attempt %d", i)
	}

	disarmed := time.Now()
	setArm(t, cm, probe.Arm{Token: "run-1", URLs: []string{backendURL}, Until: disarmed})
	// Stopped once two reads half a second (five intervals) apart find the same attempts.
	last := -1
	g.Eventually(func(g Gomega) {
		prev := last
		last = len(observerAttempts(g, ctx, pod))
		g.Expect(last).To(Equal(prev))
	}, waitFor, 500*time.Millisecond).Should(Succeed())
	expectIdle(g, ctx, pod, last)
	for i, a := range observerAttempts(g, ctx, pod) {
		g.Expect(a.Arm).To(Equal("run-1"), "attempt %d", i)
	}

	// Still running, only idle: the next run's arm brings it back.
	setArm(t, cm, probe.Arm{Token: "run-2", URLs: []string{backendURL}, Until: time.Now().Add(time.Minute)})
	attempts = awaitArmed(g, ctx, pod, "run-2", 2)
	for i, a := range attempts[last:] {
		g.Expect(a).To(And(HaveField("Arm", "run-2"), HaveField("Observed", "allowed")), "attempt %d of run-2", i)
		g.Expect(a.Time).To(BeTemporally(">", disarmed))
	}
}

// TestWarmObserverIgnoresAnUnlabelledConfigMap: the sandbox reads arms only from ConfigMaps labelled as arms, so
// an observer whose ConfigMap lacks the label stays idle until the label is added.
func TestWarmObserverIgnoresAnUnlabelledConfigMap(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	waitForMesh(t)
	cm := createArmConfigMap(t, false, probe.Arm{Token: "run-1", URLs: []string{backendURL}, Until: time.Now().Add(time.Minute)})
	pod := startWarmObserver(t, cm)

	expectIdle(g, ctx, pod, 0)

	cm.Labels = map[string]string{labsv1.LabelArm: "true"}
	g.Expect(sb.Client.Update(ctx, cm)).To(Succeed())
	awaitArmed(g, ctx, pod, "run-1", 2)
}
