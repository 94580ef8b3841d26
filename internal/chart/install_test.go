package chart_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator"
)

// TestHelmInstallRunsTheSample checks what TestMain's `helm install` left (a release, the chart's objects with
// the probe image of the values), then runs the manager in-process under the chart's ServiceAccount (the
// chart's RBAC and admission policies apply to it) and the sample LabRun to Succeeded with the mesh restored.
func TestHelmInstallRunsTheSample(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(installed).NotTo(BeNil())
	t.Logf("helm install took %s", installed.Duration.Round(time.Millisecond))

	var secrets corev1.SecretList
	g.Expect(sb.Client.List(ctx, &secrets, client.InNamespace(sandbox.OperatorNamespace),
		client.MatchingLabels{"owner": "helm", "name": release})).To(Succeed())
	g.Expect(secrets.Items).To(HaveLen(1), "Helm's release record")

	var sa corev1.ServiceAccount
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.OperatorNamespace, Name: sandbox.ManagerServiceAccount}, &sa)).To(Succeed())
	g.Expect(sa.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"))
	var cm corev1.ConfigMap
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.OperatorNamespace, Name: sandbox.ProbeImagesConfigMap}, &cm)).To(Succeed())
	g.Expect(cm.Data).To(HaveKeyWithValue("probeImages", probeRepository+":"+probeTag))

	mgr, err := operator.NewManager(sb.ManagerConfig(), operator.Options{ProbeImage: probeRepository + ":" + probeTag,
		PodStartGrace: 20 * time.Second, SkipNameValidation: true, WatchdogGrace: time.Second,
		Namespace: sandbox.OperatorNamespace})
	g.Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	run := sample(t)
	start := time.Now()
	g.Expect(sb.Client.Create(ctx, run)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(sb.Client.Get(ctx, client.ObjectKeyFromObject(run), run)).To(Succeed())
		g.Expect(run.Status.Phase).To(BeElementOf(labsv1.PhaseSucceeded, labsv1.PhaseFailed))
	}).WithTimeout(4 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
	t.Logf("the sample finished in %s: %s, %s", time.Since(start).Round(time.Millisecond), run.Status.Phase, run.Status.Message)
	g.Expect(run.Status.Phase).To(Equal(labsv1.PhaseSucceeded), run.Status.Message)
	g.Expect(meta.IsStatusConditionTrue(run.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())
}

// sample is config/samples/labs_v1alpha1_labrun.yaml.
func sample(t *testing.T) *labsv1.LabRun {
	b, err := os.ReadFile(filepath.Join(root, "config", "samples", "labs_v1alpha1_labrun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	run := &labsv1.LabRun{}
	if err := yaml.UnmarshalStrict(b, run); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(run.Namespace) == "" {
		t.Fatal("the sample names no namespace")
	}
	return run
}
