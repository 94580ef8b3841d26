package chart_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	loaderv2 "helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// TestHelmUpgradeUpdatesCRDs upgrades the release TestMain installed with a chart whose LabRun CRD changed and a
// new value, and sees both on the API server (a CRD under crds/ would not be updated), then upgrades back.
func TestHelmUpgradeUpdatesCRDs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(helmConfig).NotTo(BeNil())
	const crdName, mark = "labruns.labs.ambientlab.io", "labs.ambientlab.io/chart-upgrade-test"

	changed := loadChart(t)
	crd := templateFile(t, changed, "templates/crds/labs.ambientlab.io_labruns.yaml")
	crd.Data = []byte(strings.Replace(string(crd.Data), "    helm.sh/resource-policy: keep\n",
		"    helm.sh/resource-policy: keep\n    "+mark+": \"2\"\n", 1))
	vals := map[string]any{"probeImage": map[string]any{"repository": probeRepository, "tag": probeTag,
		"extra": []any{"example.com/extra:1"}}}
	rel := upgrade(t, changed, vals)
	g.Expect(rel.Version).To(Equal(2))

	live := &unstructured.Unstructured{}
	live.SetAPIVersion("apiextensions.k8s.io/v1")
	live.SetKind("CustomResourceDefinition")
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Name: crdName}, live)).To(Succeed())
	g.Expect(live.GetAnnotations()).To(HaveKeyWithValue(mark, "2"))
	g.Expect(live.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
	var cm corev1.ConfigMap
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.OperatorNamespace, Name: sandbox.ProbeImagesConfigMap}, &cm)).To(Succeed())
	g.Expect(cm.Data).To(HaveKeyWithValue("probeImages", probeRepository+":"+probeTag+",example.com/extra:1"))

	rel = upgrade(t, loadChart(t), installValues)
	g.Expect(rel.Version).To(Equal(3))
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Name: crdName}, live)).To(Succeed())
	g.Expect(live.GetAnnotations()).NotTo(HaveKey(mark))
}

func loadChart(t *testing.T) *chartv2.Chart {
	ch, err := loaderv2.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func templateFile(t *testing.T, ch *chartv2.Chart, name string) *common.File {
	for _, f := range ch.Templates {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("chart has no template %s", name)
	return nil
}

func upgrade(t *testing.T, ch *chartv2.Chart, vals map[string]any) *releasev1.Release {
	t.Helper()
	u := action.NewUpgrade(helmConfig)
	u.Namespace, u.WaitStrategy, u.Timeout = sandbox.OperatorNamespace, kube.HookOnlyStrategy, time.Minute
	start := time.Now()
	rel, err := u.RunWithContext(context.Background(), release, ch, vals)
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	t.Logf("helm upgrade took %s", time.Since(start).Round(time.Millisecond))
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("helm upgrade returned a %T", rel)
	}
	return r
}
