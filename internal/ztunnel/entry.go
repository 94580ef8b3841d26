package ztunnel

import (
	"net"
	"strings"
	"time"
)

// Well-known field keys, spelled exactly as ztunnel prints them.
const (
	FieldSrcAddr      = "src.addr"
	FieldSrcWorkload  = "src.workload"
	FieldSrcNamespace = "src.namespace"
	FieldSrcIdentity  = "src.identity"
	FieldDstAddr      = "dst.addr"
	FieldHBONEAddr    = "dst.hbone_addr"
	FieldDstService   = "dst.service"
	FieldDstWorkload  = "dst.workload"
	FieldDstNamespace = "dst.namespace"
	FieldDstIdentity  = "dst.identity"
	FieldDirection    = "direction"
	FieldError        = "error"
)

// Messages of ztunnel's access target (istio/ztunnel src/proxy/metrics.rs).
const (
	msgComplete = "connection complete" // INFO, or ERROR with an error field
	msgFailed   = "connection failed"   // WARN early deny: src.addr, dst.addr, direction, error only
	msgOpened   = "connection opened"   // DEBUG only, when a connection starts: no outcome
)

// HBONEPort is the port ztunnel tunnels mesh traffic through; a dst.addr on
// this port is what distinguishes an HBONE hop from plain passthrough.
const HBONEPort = "15008"

// Entry is one ztunnel log line, independent of the format it was read from.
type Entry struct {
	Time    time.Time // zero if the line had no timestamp
	Level   string    // "info", "error", "warn", "debug" (lower-cased)
	Scope   string    // target, e.g. "access"
	Message string    // e.g. "connection complete"
	Fields  Fields    // dotted keys: src.addr, src.identity, dst.addr, dst.hbone_addr, direction, error, ...
}

// Direction returns "inbound" or "outbound" as logged, or "" if absent.
func (e Entry) Direction() string { return e.Fields.Get(FieldDirection) }

// SrcIdentity returns the client's SPIFFE ID; empty unless the hop was mTLS.
func (e Entry) SrcIdentity() string { return e.Fields.Get(FieldSrcIdentity) }

// DstIdentity returns the server's SPIFFE ID; empty unless the hop was mTLS.
func (e Entry) DstIdentity() string { return e.Fields.Get(FieldDstIdentity) }

// DstAddr returns the address ztunnel connected to, which is the peer's
// HBONE port (not the application port) when the hop was tunnelled.
func (e Entry) DstAddr() string { return e.Fields.Get(FieldDstAddr) }

// HBONEAddr returns the application address carried inside the HBONE tunnel.
func (e Entry) HBONEAddr() string { return e.Fields.Get(FieldHBONEAddr) }

// DstService returns the destination service host name, if ztunnel knew it.
func (e Entry) DstService() string { return e.Fields.Get(FieldDstService) }

// Error returns the failure reason, or "" for a successful connection.
func (e Entry) Error() string { return e.Fields.Get(FieldError) }

// IsAccess reports whether the line is a per-connection access record, as
// opposed to ztunnel's operational logging; only those are traffic evidence.
// "connection opened" is excluded because it is debug-only and carries no outcome.
func (e Entry) IsAccess() bool {
	if e.Scope != "access" {
		return false
	}
	return e.Message == msgComplete || e.Message == msgFailed
}

// isOpened reports whether e is the debug line ztunnel writes when a
// connection starts. It carries the same fields as the line that ends the
// connection, but no error yet, so it reads like an allowed connection.
func (e Entry) isOpened() bool {
	return strings.EqualFold(strings.TrimSpace(e.Message), msgOpened)
}

// IsHBONE reports whether the connection was tunnelled over HBONE. Both halves
// are required because a plain connection to port 15008 is not a tunnel.
func (e Entry) IsHBONE() bool {
	if e.HBONEAddr() == "" {
		return false
	}
	_, port, err := net.SplitHostPort(e.DstAddr())
	return err == nil && port == HBONEPort
}

// IsMTLS reports whether the connection was mTLS; ztunnel prints identities
// only for mTLS peers, so their presence is the evidence.
func (e Entry) IsMTLS() bool {
	return e.SrcIdentity() != "" || e.DstIdentity() != ""
}

// IsPolicyRejection reports whether an authorization policy refused the
// connection. The server side logs "policy rejection"; the client side of a
// denied HBONE connection only sees the peer's "401 Unauthorized".
func (e Entry) IsPolicyRejection() bool {
	msg := e.Error()
	return strings.Contains(msg, "policy rejection") || strings.Contains(msg, "401 Unauthorized")
}

// DeniedBy is "<ns>/<name>" of the DENY policy a rejection line names ("explicitly denied by: …"), or "".
func (e Entry) DeniedBy() string {
	const explicit = "explicitly denied by: "
	msg := e.Error()
	if i := strings.Index(msg, explicit); i >= 0 {
		return strings.TrimSpace(msg[i+len(explicit):])
	}
	return ""
}
