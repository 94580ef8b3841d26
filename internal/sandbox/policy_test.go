package sandbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

const strictRejection = "connection closed due to policy rejection: explicitly denied by: istio-system/istio_converted_static_strict"

// TestPolicyChangeThroughAPI shows that what a non-mesh client sees follows the mesh objects in the API server:
// reset while PeerAuthentication is STRICT, HTTP 200 once it is PERMISSIVE and the AuthorizationPolicy no
// longer applies to backend.
func TestPolicyChangeThroughAPI(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	waitForMesh(t)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("no-mesh-%d", probeCounter.Add(1))}}
	g.Expect(sb.Client.Create(ctx, ns)).To(Succeed())
	t.Cleanup(func() { _ = sb.Client.Delete(context.Background(), ns) })

	denied := newProbePod(ns.Name, "", probe.Options{URL: backendURL, Expect: probe.ExpectDenied, Timeout: 2 * time.Second})
	res := runProbe(t, denied)
	g.Expect(res.Observed).To(Equal(string(probe.ExpectDenied)), "%+v", res)
	g.Expect(res.Matched).To(BeTrue())
	g.Expect(res.ExitCode).To(Equal(56), "curl's 'Recv failure: Connection reset by peer'")
	g.Expect(res.Reason).To(Equal("reset"))
	g.Expect(res.HTTPCode).To(Equal(0))
	g.Expect(res.Attempts).To(Equal(1), "settle 0 is a single attempt")

	t.Run("backend's ztunnel logs the plaintext rejection", func(t *testing.T) {
		g := NewWithT(t)
		var inbound []ztunnel.Entry
		g.Eventually(func(g Gomega) {
			inbound = nil
			for _, e := range ztunnelLogs(g, ctx) {
				if e.Fields.Get("src.workload") == denied.Name && e.Direction() == "inbound" {
					inbound = append(inbound, e)
				}
			}
			g.Expect(inbound).To(HaveLen(1))
		}, waitFor, pollFor).Should(Succeed())
		e := inbound[0]
		g.Expect(e.Message).To(Equal("connection complete"))
		g.Expect(e.Level).To(Equal("error"))
		g.Expect(e.Error()).To(Equal(strictRejection))
		g.Expect(e.Fields.Map()).NotTo(HaveKey(ztunnel.FieldSrcIdentity), "a plaintext peer has no identity")
		g.Expect(e.IsHBONE()).To(BeFalse())
	})

	weakenMesh(t)

	allowed := newProbePod(ns.Name, "", probe.Options{URL: backendURL, Expect: probe.ExpectAllowed,
		Timeout: 2 * time.Second, Settle: 10 * time.Second})
	res = runProbe(t, allowed)
	g.Expect(res.Observed).To(Equal(string(probe.ExpectAllowed)), "%+v", res)
	g.Expect(res.Matched).To(BeTrue())
	g.Expect(res.HTTPCode).To(Equal(200))
	g.Expect(res.ExitCode).To(Equal(0))
	g.Expect(res.Attempts).To(BeNumerically(">=", 1))
}

// weakenMesh sets PeerAuthentication istio-system/default to PERMISSIVE and sets the backend's
// AuthorizationPolicy aside (its selector matches no workload) through the API server. When the test ends it
// puts both back exactly as found and waits until the simulated ztunnel enforces them again.
func weakenMesh(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	ctx := t.Context()
	origPA, origAP := peerAuthentication(g, ctx), backendPolicy(g, ctx)
	t.Cleanup(func() { restoreMesh(t, origPA.DeepCopy(), origAP.DeepCopy()) })

	g.Expect(sb.Client.Patch(ctx, origPA.DeepCopy(), client.RawPatch(types.MergePatchType,
		[]byte(`{"spec":{"mtls":{"mode":"PERMISSIVE"}}}`)))).To(Succeed())
	g.Expect(sb.Client.Patch(ctx, origAP.DeepCopy(), client.RawPatch(types.MergePatchType,
		[]byte(`{"spec":{"selector":{"matchLabels":{"app":"set-aside-by-test"}}}}`)))).To(Succeed())
	g.Expect(peerAuthentication(g, ctx).Spec.GetMtls().GetMode().String()).To(Equal("PERMISSIVE"))
	g.Expect(backendPolicy(g, ctx).Spec.GetSelector().GetMatchLabels()).To(Equal(map[string]string{"app": "set-aside-by-test"}))
}

func restoreMesh(t *testing.T, origPA *securityv1.PeerAuthentication, origAP *securityv1.AuthorizationPolicy) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Eventually(func(g Gomega) {
		pa := peerAuthentication(g, ctx)
		origPA.Spec.DeepCopyInto(&pa.Spec)
		pa.Labels, pa.Annotations = origPA.Labels, origPA.Annotations
		g.Expect(sb.Client.Update(ctx, pa)).To(Succeed())
	}, waitFor, pollFor).Should(Succeed())
	g.Eventually(func(g Gomega) {
		ap := backendPolicy(g, ctx)
		origAP.Spec.DeepCopyInto(&ap.Spec)
		ap.Labels, ap.Annotations = origAP.Labels, origAP.Annotations
		g.Expect(sb.Client.Update(ctx, ap)).To(Succeed())
	}, waitFor, pollFor).Should(Succeed())

	pa, ap := peerAuthentication(g, ctx), backendPolicy(g, ctx)
	g.Expect(proto.Equal(&pa.Spec, &origPA.Spec)).To(BeTrue(), "PeerAuthentication restored: %v", &pa.Spec)
	g.Expect(proto.Equal(&ap.Spec, &origAP.Spec)).To(BeTrue(), "AuthorizationPolicy restored: %v", &ap.Spec)
	g.Expect(pa.Labels).To(Equal(origPA.Labels))
	g.Expect(ap.Labels).To(Equal(origAP.Labels))
	g.Expect(pa.Annotations).To(Equal(origPA.Annotations))
	g.Expect(ap.Annotations).To(Equal(origAP.Annotations))
	g.Eventually(func() bool { return strictInForce() && backendPolicyInForce() }, waitFor, pollFor).
		Should(BeTrue(), "the simulated ztunnel enforces the restored policies")
}
