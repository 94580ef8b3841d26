package dataplane

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

func TestSetPoliciesWithoutDelayIsImmediate(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{})
	d.SetPolicies(strictPA(), seedAllow())
	g.Expect(d.Effective().PeerAuthentications).To(Equal(strictPA()))
	g.Expect(d.Effective().AuthorizationPolicies).To(HaveLen(1))
	g.Expect(d.Effective().RootNamespace).To(Equal("istio-system"))
	d.SetPolicies(nil, nil)
	g.Expect(d.Effective().PeerAuthentications).To(BeEmpty())
}

func TestLaterPushSupersedesEarlierOne(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{PropagationDelay: 50 * time.Millisecond})
	d.SetPolicies(strictPA(), nil)
	d.SetPolicies(permissivePA(), nil)
	g.Eventually(func() []*securityv1.PeerAuthentication { return d.Effective().PeerAuthentications }).
		WithTimeout(2 * time.Second).Should(Equal(permissivePA()))
	g.Consistently(func() []*securityv1.PeerAuthentication { return d.Effective().PeerAuthentications }).
		WithTimeout(150 * time.Millisecond).Should(Equal(permissivePA()))
}

func TestLatePushDoesNotUndoNewerOne(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{})
	newer := policy.Config{PeerAuthentications: permissivePA()}
	d.apply(2, newer)
	d.apply(1, policy.Config{PeerAuthentications: strictPA()})
	g.Expect(d.Effective()).To(Equal(newer))
}

func TestClosedDataplaneIgnoresPushes(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{PropagationDelay: time.Millisecond})
	g.Expect(d.Close()).To(Succeed())
	d.SetPolicies(strictPA(), nil)
	g.Expect(d.Effective().PeerAuthentications).To(BeEmpty())
}
