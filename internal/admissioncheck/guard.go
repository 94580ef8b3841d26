package admissioncheck

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// NotEnforcedError says why the trust boundary is not proven: the missing or altered policies and bindings, or
// the dry run that was not refused.
type NotEnforcedError struct{ Problems []Problem }

func (e *NotEnforcedError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = string(p)
	}
	return strings.Join(s, "; ")
}

// errNotChecked is the state before the first check.
var errNotChecked = errors.New("the admission policies have not been checked yet")

// Guard checks the admission policies when the manager starts, every Interval, and whenever a
// ValidatingAdmissionPolicy or binding changes, and keeps the last answer for the LabRun reconciler. It runs on
// every replica (not only the leader), so a replica that takes over already knows.
type Guard struct {
	Checker *Checker
	// Informers, when set, are watched for changes to policies and bindings (the manager's cache).
	Informers cache.Informers
	// Interval between checks while they pass (zero: a minute); while they fail, a check runs at least every
	// RetryInterval (zero: 10 s), as the API server loads a restored policy asynchronously.
	Interval, RetryInterval time.Duration

	mu      sync.Mutex
	err     error
	checked bool
	changes chan event.GenericEvent
	poke    chan struct{}
	once    sync.Once
}

// Enforced is nil while the last check passed, else an error naming what is missing or altered.
func (g *Guard) Enforced() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.checked {
		return errNotChecked
	}
	return g.err
}

// Changes delivers an event each time the answer of Enforced changes (a run waiting for it can be woken).
func (g *Guard) Changes() <-chan event.GenericEvent {
	g.init()
	return g.changes
}

func (g *Guard) init() {
	g.once.Do(func() {
		g.changes = make(chan event.GenericEvent, 1)
		g.poke = make(chan struct{}, 1)
	})
}

// NeedLeaderElection: every replica checks.
func (g *Guard) NeedLeaderElection() bool { return false }

// Start checks until ctx ends.
func (g *Guard) Start(ctx context.Context) error {
	g.init()
	if g.Informers != nil {
		watched := []client.Object{&admissionv1.ValidatingAdmissionPolicy{}, &admissionv1.ValidatingAdmissionPolicyBinding{}}
		if s := g.Checker.Shipped; len(s.MutatingPolicies)+len(s.MutatingBindings) > 0 {
			watched = append(watched, &admissionv1.MutatingAdmissionPolicy{}, &admissionv1.MutatingAdmissionPolicyBinding{})
		}
		for _, obj := range watched {
			inf, err := g.Informers.GetInformer(ctx, obj)
			if err != nil {
				return fmt.Errorf("watching %T: %w", obj, err)
			}
			if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
				AddFunc:    func(any) { g.wake() },
				UpdateFunc: func(any, any) { g.wake() },
				DeleteFunc: func(any) { g.wake() },
			}); err != nil {
				return fmt.Errorf("watching %T: %w", obj, err)
			}
		}
	}
	interval, retry := orDefault(g.Interval, time.Minute), orDefault(g.RetryInterval, 10*time.Second)
	for {
		next := interval
		if g.check(ctx) != nil && retry < next {
			next = retry
		}
		timer := time.NewTimer(next)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-g.poke:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (g *Guard) wake() {
	select {
	case g.poke <- struct{}{}:
	default:
	}
}

// check runs the Checker once and records the answer; a changed answer is logged and announced.
func (g *Guard) check(ctx context.Context) error {
	var err error
	if problems := g.Checker.Check(ctx); len(problems) > 0 {
		err = &NotEnforcedError{Problems: problems}
	}
	if ctx.Err() != nil {
		return err
	}
	g.mu.Lock()
	changed := !g.checked || errString(g.err) != errString(err)
	g.err, g.checked = err, true
	g.mu.Unlock()
	if !changed {
		return err
	}
	log := ctrl.LoggerFrom(ctx).WithName("admission-check")
	if err != nil {
		log.Error(err, "Admission policies not installed as shipped or not enforced: Lab runs wait")
	} else {
		log.Info("Admission policies installed as shipped and enforced")
	}
	select {
	case g.changes <- event.GenericEvent{Object: &admissionv1.ValidatingAdmissionPolicy{}}:
	default: // a wake-up is already pending
	}
	return err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
