package ztunnel

import (
	"testing"
	"time"
)

func TestSPIFFEID(t *testing.T) {
	if got, want := SPIFFEID("cluster.local", "default", "sleep"), "spiffe://cluster.local/ns/default/sa/sleep"; got != want {
		t.Errorf("SPIFFEID = %q, want %q", got, want)
	}
}

func TestMatch(t *testing.T) {
	lines := fixtureLines(t)
	entries := make([]Entry, 0, 4)
	for _, l := range lines[1:] {
		entries = append(entries, mustParse(t, l))
	}
	// Fixture entries are referred to by their fixture line number (1-4).
	t1 := mustTime(t, "2024-08-21T15:32:05.754291Z")
	t3 := mustTime(t, "2025-02-14T15:59:00.256293Z")
	yes, no := true, false
	tests := []struct {
		name string
		c    Criteria
		want []int
	}{
		{name: "zero criteria match everything", want: []int{1, 2, 3, 4}},
		{name: "since excludes untimed and earlier", c: Criteria{Since: t1.Add(time.Second)}, want: []int{3}},
		{name: "since is inclusive", c: Criteria{Since: t1}, want: []int{1, 3}},
		{name: "until is inclusive", c: Criteria{Until: t1}, want: []int{1}},
		{name: "closed window", c: Criteria{Since: t1.Add(-time.Hour), Until: t3.Add(-time.Hour)}, want: []int{1}},
		{name: "empty window", c: Criteria{Since: t3.Add(time.Nanosecond)}},
		{name: "inbound", c: Criteria{Direction: "inbound"}, want: []int{2, 3}},
		{name: "outbound", c: Criteria{Direction: "outbound"}, want: []int{1, 4}},
		{name: "src identity", c: Criteria{SrcIdentity: SPIFFEID("cluster.local", "default", "sleep")}, want: []int{1}},
		{name: "src identity is exact", c: Criteria{SrcIdentity: "spiffe://cluster.local/ns/default/sa/slee"}},
		{name: "dst identity", c: Criteria{DstIdentity: SPIFFEID("cluster.local", "tempo", "tempo-tempo")}, want: []int{2}},
		{name: "dst service substring", c: Criteria{DstService: "mirrord-operator.mirrord"}, want: []int{3}},
		{name: "hbone", c: Criteria{HBONE: true}, want: []int{1, 2}},
		{name: "policy rejected", c: Criteria{PolicyRejected: &yes}, want: []int{2, 3}},
		{name: "no error", c: Criteria{PolicyRejected: &no}, want: []int{1}},
		{name: "combined allowed mtls hbone", c: Criteria{
			Since: t1, Direction: "outbound", DstIdentity: SPIFFEID("cluster.local", "default", "bookinfo-details"),
			DstService: "details", HBONE: true, PolicyRejected: &no,
		}, want: []int{1}},
		{name: "combined contradiction", c: Criteria{HBONE: true, Direction: "outbound", PolicyRejected: &yes}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Match(entries, tt.c)
			if len(got) != len(tt.want) {
				t.Fatalf("matched %d entries, want lines %v: %+v", len(got), tt.want, got)
			}
			for i, n := range tt.want {
				sameEntry(t, got[i], entries[n-1])
			}
		})
	}
}
