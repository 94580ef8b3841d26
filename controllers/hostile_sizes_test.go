package controllers_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestHostileSizesStayOutOfTheCaches: a tenant's thousand PeerAuthentications, each with a 200 KiB annotation
// (195 MiB of annotations), cost the manager hardly anything. Its schedule trigger caches the metadata of every
// policy in the cluster, which any tenant may make large; the caches keep no annotation but the operator's.
// Without that its heap grows by the whole 195 MiB.
//
// The policies exist before the manager starts, and a LabSchedule is reconciled only once the controller's
// sources (the trigger cache among them) have listed everything, so the heap is read when the caches are full.
func TestHostileSizesStayOutOfTheCaches(t *testing.T) {
	const count, size = 1000, 200 << 10
	g := NewWithT(t)
	ctx := context.Background()
	ensureTenantNamespace(t)
	grant(t, "hilda", tenantNamespace, rule("security.istio.io", "peerauthentications", "create"))
	tenant := asUser(t, "hilda")
	t.Cleanup(func() {
		pa := &unstructured.Unstructured{}
		pa.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
		_ = k8s.DeleteAllOf(ctx, pa, client.InNamespace(tenantNamespace), client.MatchingLabels{"hostile-sizes": "true"})
	})
	blob := strings.Repeat("x", size)
	g.Expect(createInParallel(count, 8, func(i int) error {
		return tenant.Create(ctx, hostilePeerAuth(i, blob))
	})).To(Succeed())

	before := liveHeap()
	startManager(t, managerOptions())
	ls := operatortest.NewSchedule("@every 1h")
	ls.Spec.Suspend = ptr.To(true)
	operatortest.CreateSchedule(t, ls)
	g.Eventually(func(g Gomega) {
		cur := &labsv1.LabSchedule{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ls), cur)).To(Succeed())
		g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
	}, 3*time.Minute, 200*time.Millisecond).Should(Succeed(), "the LabSchedule controller starts once its caches listed every policy")
	grown := int64(liveHeap()) - int64(before)
	t.Logf("heap grew by %.1f MiB with the manager running, for %d MiB of annotations", float64(grown)/(1<<20), count*size>>20)
	g.Expect(grown).To(BeNumerically("<", 40<<20), "the manager's caches hold the tenant's annotations")
}

func hostilePeerAuth(i int, blob string) *unstructured.Unstructured {
	pa := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"hostile-sizes": fmt.Sprint(i)}}},
	}}
	pa.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
	pa.SetNamespace(tenantNamespace)
	pa.SetName(fmt.Sprintf("hostile-%04d", i))
	pa.SetLabels(map[string]string{"hostile-sizes": "true"})
	pa.SetAnnotations(map[string]string{"example.com/blob": blob})
	return pa
}

// createInParallel calls create(0..n-1) with the given number of workers and returns the first error.
func createInParallel(n, workers int, create func(i int) error) error {
	next, errs := make(chan int), make(chan error, workers)
	for range workers {
		go func() {
			var first error
			for i := range next {
				if err := create(i); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// liveHeap is the bytes of the test process's heap still reachable after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
