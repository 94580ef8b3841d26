package authz

import (
	"fmt"
	"slices"
	"strings"
)

// Probe is one connection the policy audit makes to prove a policy, and what ztunnel must answer: computed by
// Decide over every policy that applies to the workload, so that precedence holds (a DENY elsewhere may refuse
// what this ALLOW allows).
type Probe struct {
	Src  Peer
	Port uint32
	// Want is ztunnel's decision the probe must see: allowed or not, and by which policy.
	Want Decision
	// Why says what the probe shows, e.g. "an identity the policy allows".
	Why string
}

// Candidates are the identities a policy names that the audit could call as: each exact principal
// ("<td>/ns/<ns>/sa/<sa>") and service account the policy's sources list, in its order. Wildcards name no one.
func Candidates(r Reading) []Peer {
	var out []Peer
	seen := map[string]bool{}
	add := func(p Peer) {
		if k := p.principal(); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	if r.Policy.Spec == nil {
		return nil
	}
	for _, ru := range r.Policy.Spec.Rules {
		for _, from := range ru.GetFrom() {
			s := from.GetSource()
			for _, p := range s.GetPrincipals() {
				if strings.Contains(p, "*") {
					continue
				}
				td, rest, ok := strings.Cut(p, "/ns/")
				ns, sa, ok2 := strings.Cut(rest, "/sa/")
				if ok && ok2 && ns != "" && sa != "" && !strings.Contains(sa, "/") {
					add(Peer{Mesh: true, TrustDomain: td, Namespace: ns, ServiceAccount: sa})
				}
			}
			for _, v := range s.GetServiceAccounts() {
				ns, sa, ok := strings.Cut(v, "/")
				if !ok {
					ns, sa = r.Policy.Namespace, v
				}
				add(Peer{Mesh: true, Namespace: ns, ServiceAccount: sa})
			}
		}
	}
	return out
}

// ProbesFor works out how to prove policy r on workload w: for an ALLOW policy, one connection it allows (from one
// of the candidates the audit may call as) and one it refuses (from the audit's own identity, which no policy
// names); for a DENY policy, one connection it refuses and one it lets through. Each probe's expectation comes from
// Decide over all the policies read (r among them). A policy that cannot be proved that way gets no probes and the
// reason (e.g. it allows only identities the audit may not assume).
func ProbesFor(r Reading, all []Reading, w Workload, ports []uint32, candidates []Peer, auditor Peer) ([]Probe, string) {
	if !r.Enforced() {
		return nil, "not enforced by ztunnel: " + r.Reason
	}
	if !r.AppliesTo(w) {
		return nil, "it does not apply to the workload"
	}
	var hit, miss *Probe
	for _, port := range ports {
		for _, src := range append(append([]Peer{}, candidates...), auditor) {
			d := Decide(all, src, w, port)
			decided := d.By == r.Policy.Key()
			switch {
			case hit == nil && decided:
				hit = &Probe{Src: src, Port: port, Want: d}
			case miss == nil && !decided && !r.Matches(src, w, port):
				miss = &Probe{Src: src, Port: port, Want: d}
			}
		}
	}
	verb := "allows"
	if r.deny {
		verb = "refuses"
	}
	if hit == nil {
		if len(candidates) == 0 {
			return nil, fmt.Sprintf("it %s no identity the audit may call as", verb)
		}
		return nil, fmt.Sprintf("no connection the audit can make (as %s, on ports %v) is one it %s", names(candidates), ports, verb)
	}
	hit.Why = "a connection the policy " + verb
	out := []Probe{*hit}
	if miss != nil {
		miss.Why = "a connection the policy does not match"
		out = append(out, *miss)
	}
	return out, ""
}

func names(ps []Peer) string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.principal())
	}
	return strings.Join(out, ", ")
}

// Strict is the effective mTLS mode under which ztunnel refuses a peer without identity.
const Strict = "STRICT"

// PlaintextProbes are the connections without identity (from nonMesh) that prove a workload's PeerAuthentication,
// one per port it serves, given its effective mode on each (internal/mesh works those out): on a STRICT port
// ztunnel refuses it (istiod's DENY for STRICT: the static strict policy, or the workload's converted one with
// portLevelMtls, ISTIO-FACTS.md), and on any other port it reaches the workload's AuthorizationPolicies, which
// decide as Decide says.
func PlaintextProbes(modes map[uint32]string, all []Reading, w Workload, nonMesh Peer) []Probe {
	ports := make([]uint32, 0, len(modes))
	for p := range modes {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	out := make([]Probe, 0, len(ports))
	for _, port := range ports {
		if modes[port] == Strict {
			out = append(out, Probe{Src: nonMesh, Port: port, Want: Decision{Reason: "STRICT: a peer without identity is refused"},
				Why: "plaintext to a STRICT port"})
			continue
		}
		out = append(out, Probe{Src: nonMesh, Port: port, Want: Decide(all, nonMesh, w, port),
			Why: "plaintext to a " + modes[port] + " port, left to the AuthorizationPolicies"})
	}
	return out
}
