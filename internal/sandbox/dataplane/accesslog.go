package dataplane

import (
	"net"
	"strconv"
	"time"

	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// Access-log vocabulary, as ztunnel prints it (ISTIO-FACTS.md, "ztunnel access
// logs"; fixtures/ztunnel-access-logs.txt).
const (
	scopeAccess          = "access"
	msgComplete          = "connection complete"
	levelInfo            = "info"
	levelError           = "error"
	directionInbound     = "inbound"
	directionOutbound    = "outbound"
	fieldBytesSent       = "bytes_sent"
	fieldBytesRecv       = "bytes_recv"
	fieldDuration        = "duration"
	errHBONEUnauthorized = "http status: 401 Unauthorized"
)

// outcome is how a connection ended.
type outcome struct {
	srcAddr string
	// sent and recv count bytes from the client's side: sent is what the
	// client wrote, recv what it read. ztunnel counts the same way on both
	// ends (the fixture's outbound line sent a small request, received more).
	sent, recv int64
	end        time.Time
}

// logFlow writes one "connection complete" line per ztunnel the connection
// passed: the destination node's ztunnel (inbound) when the destination is
// captured, the source node's ztunnel (outbound) when the source is. An
// uncaptured end has no ztunnel in the path and logs nothing.
func (d *Dataplane) logFlow(f flow, o outcome) {
	if d.opts.Log == nil {
		return
	}
	if f.dst.Mesh && !f.refusedAtSource {
		d.opts.Log(f.dst.Node, ztunnel.FormatText(d.entry(f, o, directionInbound)))
	}
	if f.src.Mesh {
		e := d.entry(f, o, directionOutbound)
		if f.refusedAtSource {
			e.Fields = e.Fields.With(ztunnel.FieldError, errFaultRefused)
		}
		d.opts.Log(f.src.Node, ztunnel.FormatText(e))
	}
}

// entry builds the line of one side. On a policy denial the destination
// ztunnel logs the rejection and the source ztunnel only sees the 401 answer
// to its HBONE CONNECT (ISTIO-FACTS.md, "ztunnel access logs").
func (d *Dataplane) entry(f flow, o outcome, direction string) ztunnel.Entry {
	e := ztunnel.Entry{
		Time: o.end, Level: levelInfo, Scope: scopeAccess, Message: msgComplete,
		Fields: ztunnel.FieldsOf(d.fields(f, o, direction)),
	}
	if !f.decision.Allowed {
		e.Level = levelError
		e.Fields = e.Fields.With(ztunnel.FieldError, f.decision.Error)
		if direction == directionOutbound {
			e.Fields = e.Fields.With(ztunnel.FieldError, errHBONEUnauthorized)
		}
	}
	return e
}

// fields fills ztunnel's fields; FormatText drops the empty ones, as ztunnel
// does.
func (d *Dataplane) fields(f flow, o outcome, direction string) map[string]string {
	fields := map[string]string{
		ztunnel.FieldSrcAddr:      o.srcAddr,
		ztunnel.FieldSrcWorkload:  f.src.Name,
		ztunnel.FieldSrcNamespace: f.src.Namespace,
		ztunnel.FieldDstAddr:      net.JoinHostPort(f.dst.IP, strconv.Itoa(f.port)),
		ztunnel.FieldDstService:   f.service,
		ztunnel.FieldDstWorkload:  f.dst.Name,
		ztunnel.FieldDstNamespace: f.dst.Namespace,
		ztunnel.FieldDirection:    direction,
		fieldBytesSent:            strconv.FormatInt(o.sent, 10),
		fieldBytesRecv:            strconv.FormatInt(o.recv, 10),
		fieldDuration:             strconv.FormatInt(max(o.end.Sub(f.start).Milliseconds(), 0), 10) + "ms",
	}
	if f.hbone {
		// HBONE evidence: the tunnel goes to the peer's port 15008 and carries
		// the app port inside; identities appear only for mTLS.
		fields[ztunnel.FieldDstAddr] = net.JoinHostPort(f.dst.IP, ztunnel.HBONEPort)
		fields[ztunnel.FieldHBONEAddr] = net.JoinHostPort(f.dst.IP, strconv.Itoa(f.port))
		fields[ztunnel.FieldSrcIdentity] = ztunnel.SPIFFEID(d.opts.TrustDomain, f.src.Namespace, serviceAccount(f.src))
		fields[ztunnel.FieldDstIdentity] = ztunnel.SPIFFEID(d.opts.TrustDomain, f.dst.Namespace, serviceAccount(f.dst))
	}
	return fields
}
