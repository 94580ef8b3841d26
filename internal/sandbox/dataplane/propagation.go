package dataplane

import (
	"time"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// SetEnforcer hands the data plane the policy state to enforce: what istiod computed for ztunnel. It takes effect
// Options.PropagationDelay later, as a push from istiod reaches ztunnel some time after a change; until then the
// previous state stays in force. Calls supersede each other in order: the state in force is always the latest
// one whose delay has elapsed.
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

// Effective returns the policy state in force now.
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

// Pending counts the pushes sent but not yet in force (tests wait for none, so that the next one starts on a data
// plane that enforces what istiod last computed).
func (d *Dataplane) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.timers)
}
