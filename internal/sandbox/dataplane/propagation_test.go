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
	g.Expect(cfgOf(d).PeerAuthentications).To(Equal(strictPA()))
	g.Expect(cfgOf(d).AuthorizationPolicies).To(HaveLen(1))
	g.Expect(cfgOf(d).RootNamespace).To(Equal("istio-system"))
	d.SetPolicies(nil, nil)
	g.Expect(cfgOf(d).PeerAuthentications).To(BeEmpty())
}

func TestLaterPushSupersedesEarlierOne(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{PropagationDelay: 50 * time.Millisecond})
	d.SetPolicies(strictPA(), nil)
	d.SetPolicies(permissivePA(), nil)
	g.Eventually(func() []*securityv1.PeerAuthentication { return cfgOf(d).PeerAuthentications }).
		WithTimeout(2 * time.Second).Should(Equal(permissivePA()))
	g.Consistently(func() []*securityv1.PeerAuthentication { return cfgOf(d).PeerAuthentications }).
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
	g.Expect(cfgOf(d).PeerAuthentications).To(BeEmpty())
}

// cfgOf is the object-based policy state in force (these tests push PeerAuthentication and AuthorizationPolicy
// objects through SetPolicies).
func cfgOf(d *Dataplane) policy.Config {
	c, _ := d.Effective().(policy.Config)
	return c
}
