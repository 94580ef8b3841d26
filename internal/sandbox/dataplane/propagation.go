package dataplane

import (
	"slices"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// SetPolicies hands the data plane the complete set of PeerAuthentication and
// AuthorizationPolicy objects. They take effect Options.PropagationDelay
// later, as a push from istiod reaches ztunnel some time after a change; until
// then the previous set stays in force. Calls supersede each other in order:
// the config in force is always the latest one whose delay has elapsed.
//
// The slices are copied; the objects are not and must not be modified
// afterwards (informer cache objects never are).
func (d *Dataplane) SetPolicies(pas []*securityv1.PeerAuthentication, aps []*securityv1.AuthorizationPolicy) {
	d.SetEnforcer(policy.Config{
		RootNamespace:         d.opts.RootNamespace,
		PeerAuthentications:   slices.Clone(pas),
		AuthorizationPolicies: slices.Clone(aps),
	})
}

// SetEnforcer hands the data plane the policy state to enforce (in the sandbox: what istiod computed), with the
// same propagation delay as SetPolicies.
func (d *Dataplane) SetEnforcer(cfg policy.Enforcer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.seq++
	seq := d.seq
	if d.opts.PropagationDelay == 0 {
		d.applyLocked(seq, cfg)
		return
	}
	d.timersWG.Add(1)
	d.timers[seq] = time.AfterFunc(d.opts.PropagationDelay, func() {
		defer d.timersWG.Done()
		d.apply(seq, cfg)
	})
}

// Effective returns the policy state in force now. It shares the objects
// passed to SetPolicies; callers must not modify them.
func (d *Dataplane) Effective() policy.Enforcer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.effective
}

func (d *Dataplane) apply(seq uint64, cfg policy.Enforcer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.timers, seq)
	if d.closed {
		return
	}
	d.applyLocked(seq, cfg)
}

// applyLocked installs cfg unless a later call is already in force: timers
// with equal delays may fire out of order, and an older push landing late
// must not undo a newer one.
func (d *Dataplane) applyLocked(seq uint64, cfg policy.Enforcer) {
	if seq < d.appliedSeq {
		return
	}
	d.appliedSeq, d.effective = seq, cfg
}

// SetPropagationDelay changes how long later policy changes take to take effect (the sandbox's setting; tests
// use it to make a change slow on purpose).
func (d *Dataplane) SetPropagationDelay(delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opts.PropagationDelay = delay
}
