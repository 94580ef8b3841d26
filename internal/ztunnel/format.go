package ztunnel

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logfmt/logfmt"
)

// fieldOrder is the order ztunnel itself prints access-log fields in, so
// formatted lines diff cleanly against real ones.
var fieldOrder = []string{
	"src.addr", "src.workload", "src.namespace", "src.identity", "src.cluster",
	"dst.addr", "dst.hbone_addr", "dst.service", "dst.workload", "dst.namespace", "dst.identity", "dst.cluster",
	"direction", "bytes_sent", "bytes_recv", "duration", "error",
}

// bareFields are the fields ztunnel prints without quotes (addresses and
// counters); every other string value it quotes.
var bareFields = map[string]bool{
	"src.addr": true, "dst.addr": true, "dst.hbone_addr": true, "bytes_sent": true, "bytes_recv": true,
}

// numericFields are emitted as JSON numbers, matching ztunnel's JSON output.
var numericFields = map[string]bool{"bytes_sent": true, "bytes_recv": true}

// FormatText renders e as a ztunnel text-format line, without a trailing
// newline. Columns that ztunnel would not print for e are left out: a zero
// Time drops the timestamp column, an empty head drops level, scope and
// message, and empty fields are omitted. Values are quoted the way ztunnel
// quotes them so the output can stand in for real log lines.
func FormatText(e Entry) string {
	var b strings.Builder
	if !e.Time.IsZero() {
		b.WriteString(e.Time.UTC().Format(time.RFC3339Nano) + "\t")
	}
	if e.Level != "" || e.Scope != "" || e.Message != "" {
		b.WriteString(e.Level + "\t" + e.Scope + "\t" + e.Message + "\t")
	}
	b.WriteString(formatFields(e.Fields))
	return strings.TrimRight(b.String(), "\t")
}

func formatFields(fields Fields) string {
	var parts []string
	for _, k := range orderedKeys(fields) {
		if kv, ok := formatField(k, fields.Get(k)); ok {
			parts = append(parts, kv)
		}
	}
	return strings.Join(parts, " ")
}

// orderedKeys lists non-empty fields in ztunnel's order, then the rest
// sorted so output is deterministic.
func orderedKeys(fields Fields) []string {
	var known, extra []string
	for _, k := range fieldOrder {
		if fields.Get(k) != "" {
			known = append(known, k)
		}
	}
	for _, kv := range fields {
		if kv.Value != "" && !slices.Contains(fieldOrder, kv.Key) {
			extra = append(extra, kv.Key)
		}
	}
	slices.Sort(extra)
	return append(known, extra...)
}

// formatField lets logfmt sanitise the key and quote values that need it,
// then forces quotes onto values ztunnel always quotes, because logfmt only
// quotes when it must. A key logfmt cannot represent is dropped.
func formatField(key, value string) (string, bool) {
	out, err := logfmt.MarshalKeyvals(key, value)
	if err != nil {
		return "", false
	}
	kv := string(out)
	eq := strings.IndexByte(kv, '=')
	k, v := kv[:eq], kv[eq+1:]
	if bareFields[key] || strings.HasPrefix(v, `"`) {
		return kv, true
	}
	// logfmt left v bare, so it holds no quote or control character; only a
	// backslash would be misread as an escape once inside quotes.
	return k + `="` + strings.ReplaceAll(v, `\`, `\\`) + `"`, true
}

// FormatJSON renders e as a ztunnel LOG_FORMAT=json line, without a trailing
// newline. Keys keep ztunnel's order (head first) instead of Go's sorted map
// order so the output reads like the real thing.
func FormatJSON(e Entry) string {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range jsonPairs(e) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(kv[0]))
		b.WriteByte(':')
		b.Write(jsonValue(kv[0], kv[1]))
	}
	b.WriteByte('}')
	return b.String()
}

func jsonPairs(e Entry) [][2]string {
	var pairs [][2]string
	if !e.Time.IsZero() {
		pairs = append(pairs, [2]string{jsonTime, e.Time.UTC().Format(time.RFC3339Nano)})
	}
	head := [][2]string{{jsonLevel, e.Level}, {jsonScope, e.Scope}, {jsonMessage, e.Message}}
	for _, kv := range head {
		if kv[1] != "" {
			pairs = append(pairs, kv)
		}
	}
	for _, k := range orderedKeys(e.Fields) {
		pairs = append(pairs, [2]string{k, e.Fields.Get(k)})
	}
	return pairs
}

// jsonValue writes counters as numbers only when they really are unsigned
// integers, and everything else as a string, so no value can break the object.
func jsonValue(key, value string) []byte {
	if _, err := strconv.ParseUint(value, 10, 64); err == nil && numericFields[key] {
		return []byte(value)
	}
	return jsonString(value)
}

func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return bytes.TrimRight(b.Bytes(), "\n")
}
