// Package ztunnel reads and writes Istio ztunnel access-log lines and selects
// the lines that prove a connection happened the way a lab expects (mTLS,
// HBONE, allowed or rejected by policy).
//
// Both of ztunnel's output formats are understood: the default text format
// (tab- or space-separated head followed by logfmt key=value fields) and the
// JSON format enabled with LOG_FORMAT=json.
package ztunnel
