package dataplane

import (
	"fmt"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// Fault makes one node's ztunnel misbehave, the way real regressions have been per node: a ztunnel that
// ignored a rule in one release, a new node whose ztunnel has no certificate yet. Tests use it to prove that
// per-node verification fails and names that node.
type Fault string

// Faults.
const (
	// FaultNone: the node's ztunnel behaves.
	FaultNone Fault = ""
	// FaultNoEnforce: the node's ztunnel forwards every inbound connection without enforcing anything
	// (neither STRICT mTLS nor AuthorizationPolicy).
	FaultNoEnforce Fault = "no-enforce"
	// FaultRefuseAll: the node's ztunnel resets every connection it carries, outbound from the node's
	// captured pods and inbound to them.
	FaultRefuseAll Fault = "refuse-all"
)

// ParseFault reads a fault's name.
func ParseFault(s string) (Fault, error) {
	switch f := Fault(s); f {
	case FaultNone, FaultNoEnforce, FaultRefuseAll:
		return f, nil
	}
	return "", fmt.Errorf("unknown fault %q: want %q or %q", s, FaultNoEnforce, FaultRefuseAll)
}

// errFaultRefused is the error a refusing ztunnel logs.
const errFaultRefused = "sandbox fault: this node's ztunnel refuses every connection"

// SetNodeFault switches a fault on for node's ztunnel (FaultNone switches it off). It takes effect for the
// next connection.
func (d *Dataplane) SetNodeFault(node string, f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.faults == nil {
		d.faults = map[string]Fault{}
	}
	if f == FaultNone {
		delete(d.faults, node)
		return
	}
	d.faults[node] = f
}

func (d *Dataplane) fault(node string) Fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults[node]
}

// applyFaults changes what the ztunnels on the flow's path decide when one of them is faulty. Only a captured
// end has a ztunnel in the path.
func (d *Dataplane) applyFaults(f *flow) {
	if f.src.Mesh && d.fault(f.src.Node) == FaultRefuseAll {
		f.decision = policy.Decision{Allowed: false, Error: errFaultRefused}
		f.refusedAtSource = true
		return
	}
	if f.dst.Mesh && d.fault(f.dst.Node) == FaultRefuseAll {
		f.decision = policy.Decision{Allowed: false, Error: errFaultRefused}
		return
	}
	if f.dst.Mesh && d.fault(f.dst.Node) == FaultNoEnforce {
		f.decision = policy.Decision{Allowed: true}
	}
}
