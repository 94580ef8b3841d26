package dataplane

import (
	"errors"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"
)

// A faulty node's ztunnel changes only the connections it carries.
func TestNodeFaults(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(true, true)) // STRICT, backend allows frontend only
	const url = "http://backend.demo/get"
	reset := func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

	// Healthy: frontend allowed, attacker and the plaintext client reset.
	code, _, err := get(d, frontend, url)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(200))
	_, _, err = get(d, attacker, url)
	g.Expect(reset(err)).To(BeTrue(), "attacker: %v", err)

	// backend's node forwards without enforcing: the attacker and plaintext get through.
	d.SetNodeFault(nodeB, FaultNoEnforce)
	for _, src := range []Workload{attacker, plain} {
		code, _, err = get(d, src, url)
		g.Expect(err).NotTo(HaveOccurred(), "%s", src.Name)
		g.Expect(code).To(Equal(200))
	}

	// The client's node refuses everything: frontend's own calls are reset; an uncaptured client on the same
	// node has no ztunnel in its path.
	d.SetNodeFault(nodeB, FaultNone)
	d.SetNodeFault(nodeA, FaultRefuseAll)
	_, _, err = get(d, frontend, url)
	g.Expect(reset(err)).To(BeTrue(), "frontend on a refusing node: %v", err)
	code, _, err = get(d, frontend, "http://web.legacy/get") // captured source still goes through its node
	g.Expect(reset(err)).To(BeTrue(), "frontend to an uncaptured web: %d %v", code, err)

	d.SetNodeFault(nodeA, FaultNone)
	code, _, err = get(d, frontend, url)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(200))

	_, err = ParseFault("sometimes")
	g.Expect(err).To(HaveOccurred())
}
