package ztunnel

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseLineFixtures(t *testing.T) {
	lines := fixtureLines(t)
	tests := []struct {
		line                      int
		time                      string // "" = no timestamp
		level, scope, message     string
		direction, srcID, dstID   string
		dstAddr, hboneAddr, error string
		nFields                   int
		access, hbone, mtls, deny bool
	}{
		{
			line: 1, time: "2024-08-21T15:32:05.754291Z", level: "info", scope: "access", message: "connection complete",
			direction: "outbound", srcID: "spiffe://cluster.local/ns/default/sa/sleep",
			dstID:   "spiffe://cluster.local/ns/default/sa/bookinfo-details",
			dstAddr: "10.42.0.5:15008", hboneAddr: "10.42.0.5:9080", nFields: 14,
			access: true, hbone: true, mtls: true,
		},
		{
			line: 2, level: "error", scope: "access", message: "connection complete",
			direction: "inbound", srcID: "spiffe://cluster.local/ns/kiali/sa/kiali-service-account",
			dstID:   "spiffe://cluster.local/ns/tempo/sa/tempo-tempo",
			dstAddr: "10.42.2.10:15008", hboneAddr: "10.42.2.10:3200", nFields: 15,
			error:  "connection closed due to policy rejection: allow policies exist, but none allowed",
			access: true, hbone: true, mtls: true, deny: true,
		},
		{
			line: 3, time: "2025-02-14T15:59:00.256293Z", level: "error", scope: "access", message: "connection complete",
			direction: "inbound", dstAddr: "10.0.173.89:443", nFields: 10,
			error:  "connection closed due to policy rejection: explicitly denied by: istio-system/istio_converted_static_strict",
			access: true, deny: true,
		},
		{
			line: 4, direction: "outbound", nFields: 5,
			error: "connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: deadline has elapsed",
		},
	}
	for _, tt := range tests {
		t.Run(lines[tt.line][:20], func(t *testing.T) {
			e := mustParse(t, lines[tt.line])
			if tt.time == "" && !e.Time.IsZero() {
				t.Errorf("Time = %v, want zero", e.Time)
			}
			if tt.time != "" && !e.Time.Equal(mustTime(t, tt.time)) {
				t.Errorf("Time = %v, want %s", e.Time, tt.time)
			}
			check := map[string][2]string{
				"Level": {e.Level, tt.level}, "Scope": {e.Scope, tt.scope}, "Message": {e.Message, tt.message},
				"Direction": {e.Direction(), tt.direction}, "SrcIdentity": {e.SrcIdentity(), tt.srcID},
				"DstIdentity": {e.DstIdentity(), tt.dstID}, "DstAddr": {e.DstAddr(), tt.dstAddr},
				"HBONEAddr": {e.HBONEAddr(), tt.hboneAddr}, "Error": {e.Error(), tt.error},
			}
			for name, gw := range check {
				if gw[0] != gw[1] {
					t.Errorf("%s = %q, want %q", name, gw[0], gw[1])
				}
			}
			if len(e.Fields) != tt.nFields {
				t.Errorf("len(Fields) = %d, want %d: %v", len(e.Fields), tt.nFields, e.Fields)
			}
			flags := map[string][2]bool{
				"IsAccess": {e.IsAccess(), tt.access}, "IsHBONE": {e.IsHBONE(), tt.hbone},
				"IsMTLS": {e.IsMTLS(), tt.mtls}, "IsPolicyRejection": {e.IsPolicyRejection(), tt.deny},
			}
			for name, gw := range flags {
				if gw[0] != gw[1] {
					t.Errorf("%s = %v, want %v", name, gw[0], gw[1])
				}
			}
		})
	}
}

// Quoted values must come back unquoted and unescaped, which is logfmt's job.
func TestParseLineFixtureValuesUnquoted(t *testing.T) {
	e := mustParse(t, fixtureLines(t)[1])
	want := map[string]string{
		"src.addr": "10.42.0.9:33772", "src.workload": "sleep-7656cf8794-6lsm4", "src.namespace": "default",
		"dst.service": "details.default.svc.cluster.local", "dst.workload": "details-v1-857849f66-ft8wx",
		"dst.namespace": "default", "bytes_sent": "84", "bytes_recv": "358", "duration": "15ms",
	}
	for k, v := range want {
		if e.Fields.Get(k) != v {
			t.Errorf("Fields[%q] = %q, want %q", k, e.Fields.Get(k), v)
		}
	}
}

func TestParseLineJSONMatchesText(t *testing.T) {
	text := mustParse(t, fixtureLines(t)[1])
	js := mustParse(t, readFile(t, fixtureJSONPath))
	sameEntry(t, js, text)
}

func TestParseLineJSONValues(t *testing.T) {
	tests := []struct {
		name, line string
		want       Entry
	}{
		{
			name: "numbers as decimal text, level lower-cased, no time",
			line: `{"level":"WARN","scope":"access","message":"connection failed","bytes_sent":1e3,"bytes_recv":0,"ratio":0.5,"tls":true,"x":null}`,
			want: Entry{Level: "warn", Scope: "access", Message: "connection failed",
				Fields: FieldsOf(map[string]string{"bytes_sent": "1000", "bytes_recv": "0", "ratio": "0.5", "tls": "true"})},
		},
		{
			name: "target alias and nested objects flatten to dotted keys",
			line: `{"time":"2025-01-02T03:04:05Z","level":"info","target":"access","message":"connection complete","src":{"addr":"1.2.3.4:5"}}`,
			want: Entry{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Level: "info", Scope: "access",
				Message: "connection complete", Fields: FieldsOf(map[string]string{"src.addr": "1.2.3.4:5"})},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sameEntry(t, mustParse(t, tt.line), tt.want)
		})
	}
}

func TestParseLinePrefixes(t *testing.T) {
	line1 := fixtureLines(t)[1]
	want := mustParse(t, line1)
	tests := map[string]string{
		"kubectl --prefix":              "[pod/ztunnel-abc12/istio-proxy] " + line1,
		"kubectl --prefix json":         "[pod/ztunnel-abc12/istio-proxy] " + readFile(t, fixtureJSONPath),
		"kubectl --timestamps":          "2024-08-21T15:32:05.754391123Z " + line1,
		"kubectl --prefix --timestamps": "[pod/ztunnel-x/ztunnel] 2024-08-21T15:32:06Z " + line1,
		"surrounding whitespace":        "  " + line1 + "\r",
	}
	for name, line := range tests {
		t.Run(name, func(t *testing.T) {
			sameEntry(t, mustParse(t, line), want)
		})
	}
}

func TestParseLineRejectsNonLogLines(t *testing.T) {
	tests := map[string]string{
		"empty":               "",
		"kubectl chatter":     `Defaulted container "istio-proxy" out of: istio-proxy, istio-init`,
		"prose with equals":   "please set LOG_FORMAT=json",
		"time without level":  "2024-08-21T15:32:05Z something happened",
		"json without level":  `{"kind":"Pod"}`,
		"broken json":         `{"level":"info"`,
		"unterminated quote":  `info access connection complete error="oops`,
		"bad json time":       `{"time":"yesterday","level":"info"}`,
		"only a prefix":       "[pod/ztunnel-abc/istio-proxy] ",
		"non-ztunnel prefix":  "[pod/x] info",
		"lowercase prose":     "warning: unrelated",
		"error word in prose": "errors happened here",
	}
	for name, line := range tests {
		t.Run(name, func(t *testing.T) {
			if e, err := ParseLine(line); err == nil {
				t.Fatalf("ParseLine(%q) = %+v, want error", line, e)
			}
		})
	}
}

func TestParseLineErrNotLogLine(t *testing.T) {
	if _, err := ParseLine("hello world"); !errors.Is(err, ErrNotLogLine) {
		t.Fatalf("err = %v, want ErrNotLogLine", err)
	}
}

func TestParseSkipsNoise(t *testing.T) {
	input := strings.Join([]string{
		"# a comment",
		"",
		`Defaulted container "istio-proxy" out of: istio-proxy`,
		"[pod/ztunnel-a/istio-proxy] " + fixtureLines(t)[1],
		"not a log line at all",
		readFile(t, fixtureJSONPath),
		"   ",
	}, "\n")
	entries, err := Parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2: %+v", len(entries), entries)
	}
	sameEntry(t, entries[1], entries[0])
}

func TestParseFixtureFile(t *testing.T) {
	input := readFile(t, fixturePath)
	entries, err := Parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	lines := fixtureLines(t)
	if len(entries) != len(lines)-1 {
		t.Fatalf("got %d entries, want %d", len(entries), len(lines)-1)
	}
	for i, e := range entries {
		sameEntry(t, e, mustParse(t, lines[i+1]))
	}
}
