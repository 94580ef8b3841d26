// Package dataplane is the sandbox's simulated ztunnel: the ambient data plane
// of the simulated node, without Kubernetes.
//
// A node agent feeds it snapshots of the cluster (SetSnapshot) and what the
// real istiod computed for ztunnel: converted policies and their attachment to
// workloads (SetEnforcer), and calls Dial on behalf of probe pods. Dial resolves
// the Service, picks an endpoint, asks the policy matcher what ztunnel would do
// with istiod's policies (rules in /work/shared/ISTIO-FACTS.md) and then makes a real loopback connection: to a
// small httpbin-like backend when the connection is allowed, or to a
// "resetter" that resets it when it is denied, so clients meet the same socket
// errors they would meet in a cluster. Every connection is recorded as
// ztunnel-format access-log lines, tagged with the node whose ztunnel wrote
// them.
//
// All traffic stays on 127.0.0.1.
package dataplane

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// Defaults applied by New when the matching Options field is empty.
const (
	DefaultTrustDomain   = policy.DefaultTrustDomain
	DefaultRootNamespace = policy.DefaultRootNamespace
	DefaultClusterDomain = "cluster.local"
)

// ErrClosed is returned by Dial after Close.
var ErrClosed = errors.New("dataplane: closed")

// Options configures a Dataplane.
type Options struct {
	// PropagationDelay is how long after SetEnforcer the new policies take
	// effect, standing in for istiod's push to ztunnel. 0 (or negative) applies
	// them immediately; the node agent passes its configured delay.
	PropagationDelay time.Duration
	// TrustDomain of workload identities (default DefaultTrustDomain).
	TrustDomain string
	// RootNamespace is the mesh root namespace (default DefaultRootNamespace).
	RootNamespace string
	// ClusterDomain is the DNS suffix of Service names (default DefaultClusterDomain).
	ClusterDomain string
	// Log receives every access-log line, tagged with the node whose ztunnel
	// wrote it. It is called synchronously from Dial and from Close of a
	// returned connection, so it must not block for long. Nil discards lines.
	Log func(node string, line string)
	// Now stamps log lines and measures connection durations (default time.Now).
	Now func() time.Time
}

// Dataplane is a simulated ztunnel for every node of the sandbox. It is safe
// for concurrent use.
type Dataplane struct {
	opts     Options
	dialer   net.Dialer
	backend  *backend
	resetter *resetter
	refuser  *refuser

	snap    atomic.Pointer[index]
	origins sync.Map // backend-side remote address → source workload IP, for /get's "origin"

	mu         sync.Mutex
	closed     bool
	seq        uint64 // last SetEnforcer call
	appliedSeq uint64 // the call whose config is in force
	effective  policy.Enforcer
	timers     map[uint64]*time.Timer
	timersWG   sync.WaitGroup
	faults     map[string]Fault // node → its ztunnel's fault (SetNodeFault)
}

// New starts the loopback listeners (the HTTP backend, the resetter and a
// reserved port that refuses connections) and returns a Dataplane with an
// empty snapshot and no policies.
func New(o Options) (*Dataplane, error) {
	d := &Dataplane{opts: withDefaults(o), timers: map[uint64]*time.Timer{}}
	d.effective = policy.NewZtunnel(policy.Ambientz{}) // nothing from istiod yet: no policy
	d.snap.Store(newIndex(Snapshot{}))
	var err error
	if d.refuser, err = reservePort(); err != nil {
		return nil, err
	}
	if d.resetter, err = startResetter(); err != nil {
		return nil, errors.Join(err, d.refuser.close())
	}
	if d.backend, err = startBackend(d.origin); err != nil {
		return nil, errors.Join(err, d.resetter.close(), d.refuser.close())
	}
	return d, nil
}

func withDefaults(o Options) Options {
	if o.PropagationDelay < 0 {
		o.PropagationDelay = 0
	}
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if o.RootNamespace == "" {
		o.RootNamespace = DefaultRootNamespace
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Close cancels pending policy pushes and stops the listeners, waiting for
// every goroutine the Dataplane started. Connections already handed out are
// closed on the server side. Calling Close again does nothing.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	for seq, t := range d.timers {
		if t.Stop() {
			d.timersWG.Done() // its callback will never run
		}
		delete(d.timers, seq)
	}
	d.mu.Unlock()
	// A callback that had already started needs d.mu, so wait only after
	// releasing it.
	d.timersWG.Wait()
	return errors.Join(d.backend.close(), d.resetter.close(), d.refuser.close())
}

// SetSnapshot replaces the data plane's view of the cluster. It takes effect
// for the next Dial.
func (d *Dataplane) SetSnapshot(s Snapshot) {
	d.snap.Store(newIndex(s))
}

// Dial connects on behalf of src to addr ("host:port") the way ztunnel would
// carry the connection, and returns the client's end. src is looked up by
// namespace/name in the snapshot; when it is not there, it is used as given.
//
// Outcomes, as a client in a cluster would see them (ISTIO-FACTS.md, "What a
// client sees"): an unknown host fails with a *net.DNSError; an unknown
// Service port, a Service without endpoints or an unknown IP is refused; a
// connection denied by policy is accepted and then reset; an allowed one
// reaches the HTTP backend.
func (d *Dataplane) Dial(ctx context.Context, src Workload, network, addr string) (net.Conn, error) {
	if d.isClosed() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: ErrClosed}
	}
	if network != "tcp" && network != "tcp4" {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	start := d.opts.Now()
	ix := d.snap.Load()
	src = ix.source(src)
	t, err := d.route(ix, src, addr)
	switch {
	case errors.Is(err, errRefused):
		return d.refuse(ctx, network, addr)
	case err != nil:
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	f := d.newFlow(src, t, start)
	d.applyFaults(&f)
	if !f.decision.Allowed {
		return d.reject(ctx, f)
	}
	return d.forward(ctx, f)
}

// route splits addr and resolves it for src.
func (d *Dataplane) route(ix *index, src Workload, addr string) (target, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return target{}, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 {
		return target{}, &net.AddrError{Err: "invalid port", Addr: addr}
	}
	t, err := ix.resolve(src, host, port, d.opts.ClusterDomain)
	if errors.Is(err, errNoSuchHost) {
		// The shape Go's resolver returns, so callers (the prober: curl exit 6)
		// recognise a DNS failure.
		return target{}, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return t, err
}

func (d *Dataplane) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// origin returns the source workload IP of a backend-side connection, so /get
// reports the pod's address rather than 127.0.0.1.
func (d *Dataplane) origin(remoteAddr string) string {
	if ip, ok := d.origins.Load(remoteAddr); ok {
		return ip.(string)
	}
	host, _, _ := net.SplitHostPort(remoteAddr)
	return host
}
