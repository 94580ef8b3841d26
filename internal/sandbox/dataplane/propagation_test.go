package dataplane

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestPushWithoutDelayIsImmediate(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(true, true))
	g.Expect(has(d, staticStrictKey)).To(BeTrue())
	g.Expect(has(d, seedAllowKey)).To(BeTrue())
	d.SetEnforcer(istiodState(false, false))
	g.Expect(has(d, staticStrictKey)).To(BeFalse())
}

func TestLaterPushSupersedesEarlierOne(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{PropagationDelay: 50 * time.Millisecond})
	d.SetEnforcer(istiodState(true, false))
	d.SetEnforcer(istiodState(false, true))
	g.Eventually(func() bool { return has(d, seedAllowKey) }).WithTimeout(2 * time.Second).Should(BeTrue())
	g.Consistently(func() bool { return has(d, staticStrictKey) }).WithTimeout(150 * time.Millisecond).Should(BeFalse())
}

func TestLatePushDoesNotUndoNewerOne(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{})
	newer := istiodState(false, true)
	d.apply(2, newer)
	d.apply(1, istiodState(true, false))
	g.Expect(d.Effective()).To(BeIdenticalTo(newer))
}

func TestClosedDataplaneIgnoresPushes(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{PropagationDelay: time.Millisecond})
	g.Expect(d.Close()).To(Succeed())
	d.SetEnforcer(istiodState(true, false))
	g.Expect(has(d, staticStrictKey)).To(BeFalse())
}
