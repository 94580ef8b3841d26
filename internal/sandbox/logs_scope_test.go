package sandbox_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// TestScopedReadReadsOnlyTheZtunnelsItNeeds reads the ztunnels' logs through the API server with a scope: only the
// nodes named are read, and a read that is satisfied stops before the pods it has not reached, preferred nodes
// first. A node with no ztunnel pod is an error, never an empty read.
func TestScopedReadReadsOnlyTheZtunnelsItNeeds(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	ztunnels := &corev1.PodList{}
	g.Expect(sb.Client.List(ctx, ztunnels, client.InNamespace("istio-system"), client.MatchingLabels{"app": "ztunnel"})).To(Succeed())
	g.Expect(len(ztunnels.Items)).To(BeNumerically(">=", 3))
	byNode := map[string]*corev1.Pod{}
	for i := range ztunnels.Items {
		byNode[ztunnels.Items[i].Spec.NodeName] = &ztunnels.Items[i]
	}
	last := sb.Nodes[len(sb.Nodes)-1]
	zt := byNode[last]
	g.Expect(zt).NotTo(BeNil())

	rec, cs := recordedClientset(t)
	reader := &ztunnel.LogReader{Client: cs, AtOnce: 1}
	selector := map[string]string{"app": "ztunnel"}

	// A line only the last node's ztunnel logged.
	mark := fmt.Sprintf("scoped-%d", time.Now().UnixNano())
	now := time.Now().UTC()
	line := ztunnel.FormatText(ztunnel.Entry{Time: now, Level: "info", Scope: "access", Message: "connection complete",
		Fields: ztunnel.FieldsOf(map[string]string{ztunnel.FieldSrcWorkload: mark, ztunnel.FieldDirection: "inbound"})})
	sb.Logs.AppendAt(zt.Namespace, zt.Name, zt.Spec.Containers[0].Name, now, line)
	since := now.Add(-time.Second)
	has := func(entries []ztunnel.Entry) bool {
		return slices.ContainsFunc(entries, func(e ztunnel.Entry) bool { return e.Fields.Get(ztunnel.FieldSrcWorkload) == mark })
	}

	t.Run("only the nodes named", func(t *testing.T) {
		g := NewWithT(t)
		rec.reset()
		entries, sources, err := reader.ReadScoped(ctx, "istio-system", selector, since, ztunnel.Scope{Nodes: []string{last}})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(has(entries)).To(BeTrue())
		g.Expect(sources).To(Equal([]ztunnel.Source{{Namespace: zt.Namespace, Pod: zt.Name, Node: last}}))
		g.Expect(rec.pods()).To(Equal([]string{zt.Name}), "no other ztunnel's log was asked for")
	})

	t.Run("preferred first, until enough", func(t *testing.T) {
		g := NewWithT(t)
		rec.reset()
		entries, sources, err := reader.ReadScoped(ctx, "istio-system", selector, since, ztunnel.Scope{Prefer: []string{last}, Enough: has})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(has(entries)).To(BeTrue())
		g.Expect(sources).To(HaveLen(1), "the read stopped once the line was read")
		g.Expect(rec.pods()).To(Equal([]string{zt.Name}))
	})

	t.Run("not enough reads them all", func(t *testing.T) {
		g := NewWithT(t)
		rec.reset()
		_, sources, err := reader.ReadScoped(ctx, "istio-system", selector, since, ztunnel.Scope{
			Enough: func([]ztunnel.Entry) bool { return false }})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sources).To(HaveLen(len(ztunnels.Items)))
		g.Expect(sources[0].Node).NotTo(Equal(last), "without a preference, by name")
	})

	t.Run("a node without ztunnel", func(t *testing.T) {
		g := NewWithT(t)
		_, _, err := reader.ReadScoped(ctx, "istio-system", selector, since, ztunnel.Scope{Nodes: []string{"no-such-node"}})
		g.Expect(err).To(MatchError(ContainSubstring("no-such-node")))
	})
}
