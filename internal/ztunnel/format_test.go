package ztunnel

import (
	"strings"
	"testing"
	"time"
)

// Lines whose shape FormatText reproduces exactly; line 3 uses spaces instead
// of tabs, so only its content survives a round trip.
func TestFormatTextReproducesFixtures(t *testing.T) {
	lines := fixtureLines(t)
	for _, n := range []int{1, 2, 4} {
		t.Run(lines[n][:20], func(t *testing.T) {
			if got := FormatText(mustParse(t, lines[n])); got != lines[n] {
				t.Errorf("FormatText mismatch\n got: %q\nwant: %q", got, lines[n])
			}
		})
	}
}

func TestFormatTextParseRoundTrip(t *testing.T) {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	tests := map[string]Entry{
		"fixture 3 (space separated)": mustParse(t, fixtureLines(t)[3]),
		"policy rejection": {Time: ts, Level: "error", Scope: "access", Message: "connection complete",
			Fields: FieldsOf(map[string]string{"src.addr": "10.0.0.1:1234", "dst.addr": "10.0.0.2:15008", "dst.hbone_addr": "10.0.0.2:80",
				"direction": "inbound", "error": "connection closed due to policy rejection: explicitly denied by: ns1/deny-all"})},
		"client side 401": {Time: ts, Level: "error", Scope: "access", Message: "connection complete",
			Fields: FieldsOf(map[string]string{"direction": "outbound", "error": "http status: 401 Unauthorized"})},
		"error needing escapes": {Level: "warn", Scope: "access", Message: "connection failed",
			Fields: FieldsOf(map[string]string{"error": `bad "thing" at C:\tmp=x` + "\n" + `tab	here`})},
		"backslash without other quoting reasons": {Level: "error", Scope: "access", Message: "connection complete",
			Fields: FieldsOf(map[string]string{"error": `a\b`, "duration": "null"})},
		"extra fields sorted and kept": {Level: "info", Scope: "access", Message: "connection complete",
			Fields: FieldsOf(map[string]string{"zeta": "1", "alpha": "two words", "error": "x"})},
		"fields only": {Fields: FieldsOf(map[string]string{"error": "deadline has elapsed", "bytes_sent": "0"})},
		"odd address still parseable": {Level: "info", Scope: "access", Message: "connection complete",
			Fields: FieldsOf(map[string]string{"dst.addr": "has space", "error": "e"})},
	}
	for name, e := range tests {
		t.Run(name, func(t *testing.T) {
			line := FormatText(e)
			sameEntry(t, mustParse(t, line), e)
		})
	}
}

func TestFormatTextShape(t *testing.T) {
	e := Entry{
		Time:  time.Date(2025, 1, 2, 3, 4, 5, 600000000, time.FixedZone("CET", 3600)),
		Level: "info", Scope: "access", Message: "connection complete",
		Fields: FieldsOf(map[string]string{
			"duration": "1ms", "extra_b": "y", "src.addr": "1.1.1.1:1", "extra_a": "x", "bytes_sent": "5",
			"src.workload": "", "error": "",
		}),
	}
	want := "2025-01-02T02:04:05.6Z\tinfo\taccess\tconnection complete\t" +
		`src.addr=1.1.1.1:1 bytes_sent=5 duration="1ms" extra_a="x" extra_b="y"`
	if got := FormatText(e); got != want {
		t.Errorf("FormatText\n got: %q\nwant: %q", got, want)
	}
	if got := FormatText(Entry{Level: "info", Scope: "access", Message: "m"}); got != "info\taccess\tm" {
		t.Errorf("FormatText without fields = %q", got)
	}
}

func TestFormatJSON(t *testing.T) {
	want := readFile(t, fixtureJSONPath)
	if got := FormatJSON(mustParse(t, fixtureLines(t)[1])); got != want {
		t.Errorf("FormatJSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

func TestFormatJSONParseRoundTrip(t *testing.T) {
	lines := fixtureLines(t)
	tests := map[string]Entry{
		"fixture 2": mustParse(t, lines[2]),
		"fixture 3": mustParse(t, lines[3]),
		"non-numeric counter stays a string": {Level: "info", Scope: "access", Message: "m",
			Fields: FieldsOf(map[string]string{"bytes_sent": "lots", "error": `<"quoted"> & more`})},
	}
	for name, e := range tests {
		t.Run(name, func(t *testing.T) {
			line := FormatJSON(e)
			if strings.Contains(line, "\\u003c") {
				t.Errorf("HTML escaping leaked into %s", line)
			}
			sameEntry(t, mustParse(t, line), e)
		})
	}
}
