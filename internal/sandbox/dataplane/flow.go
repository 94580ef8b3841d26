package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// flow is one connection as the ztunnels on both ends see it.
type flow struct {
	src, dst Workload
	service  string // dst.service, "" when a pod IP was dialled
	port     int    // the destination pod's port
	// hbone is true when both ends are captured: ztunnel then carries the
	// connection over HBONE (port 15008) with mTLS, and logs identities
	// (ISTIO-FACTS.md, "ztunnel access logs").
	hbone    bool
	decision policy.Decision
	start    time.Time
	// refusedAtSource: the source node's ztunnel refused the connection (a fault), so it never reached the
	// destination's ztunnel, which logs nothing.
	refusedAtSource bool
}

// newFlow decides src's connection to t. Only a captured destination has a
// ztunnel in its path, so only then is anything enforced; an uncaptured one
// gets plaintext without checks.
func (d *Dataplane) newFlow(src Workload, t target, start time.Time) flow {
	f := flow{src: src, dst: t.dst, service: t.service, port: t.port, hbone: src.Mesh && t.dst.Mesh, start: start}
	if !t.dst.Mesh {
		f.decision = policy.Decision{Allowed: true}
		return f
	}
	// A non-mesh source arrives in plaintext: no principal, no namespace
	// (ISTIO-FACTS.md, "AuthorizationPolicy in ambient"); the evaluator ignores
	// its namespace and service account.
	peer := policy.Peer{
		Mesh: src.Mesh, Namespace: src.Namespace, ServiceAccount: serviceAccount(src),
		TrustDomain: d.opts.TrustDomain, IP: src.IP,
	}
	dst := policy.Workload{Namespace: t.dst.Namespace, Name: t.dst.Name, Labels: t.dst.Labels, IP: t.dst.IP, Port: t.port}
	f.decision = d.Effective().Evaluate(peer, dst)
	return f
}

// forward connects an allowed flow to the HTTP backend. The access log is
// written when the client closes the connection, with the bytes it moved.
func (d *Dataplane) forward(ctx context.Context, f flow) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, "tcp", d.backend.addr())
	if err != nil {
		return nil, err
	}
	key := c.LocalAddr().String() // what the backend sees as RemoteAddr
	d.origins.Store(key, f.src.IP)
	srcAddr := sourceAddr(f.src, c)
	return newMeteredConn(c, func(sent, recv int64) {
		d.origins.Delete(key)
		d.logFlow(f, outcome{srcAddr: srcAddr, sent: sent, recv: recv, end: d.opts.Now()})
	}), nil
}

// reject hands the client a connection the resetter resets: ztunnel accepts
// the application's TCP connection and resets it when policy refuses it, so
// the client sees ECONNRESET (curl 56), not a refusal or a timeout
// (ISTIO-FACTS.md, "What a client sees"). The denial is logged at once.
func (d *Dataplane) reject(ctx context.Context, f flow) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, "tcp", d.resetter.addr())
	if err != nil {
		return nil, err
	}
	d.logFlow(f, outcome{srcAddr: sourceAddr(f.src, c), end: d.opts.Now()})
	return c, nil
}

// refuse fails the way connecting to a port nobody listens on fails: with a
// real ECONNREFUSED from the kernel (curl 7), reported against the address
// the caller asked for.
func (d *Dataplane) refuse(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, "tcp", d.refuser.addr())
	if err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("dataplane: reserved port %s accepted a connection", d.refuser.addr())
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		return nil, err
	}
	renamed := *op
	renamed.Net, renamed.Source, renamed.Addr = network, nil, dialAddr{network, addr}
	return nil, &renamed
}

// dialAddr names the address a caller dialled, for error messages.
type dialAddr struct{ network, addr string }

func (a dialAddr) Network() string { return a.network }
func (a dialAddr) String() string  { return a.addr }

// sourceAddr is the pod's IP with the connection's real ephemeral port, so
// each connection's src.addr is distinct as in a cluster.
func sourceAddr(src Workload, c net.Conn) string {
	host, port, err := net.SplitHostPort(c.LocalAddr().String())
	if err != nil {
		return c.LocalAddr().String()
	}
	if src.IP != "" {
		host = src.IP
	}
	return net.JoinHostPort(host, port)
}

// serviceAccount applies Kubernetes' default: a pod without one runs as
// "default".
func serviceAccount(w Workload) string {
	if w.ServiceAccount == "" {
		return "default"
	}
	return w.ServiceAccount
}
