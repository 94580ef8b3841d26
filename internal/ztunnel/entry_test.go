package ztunnel

import "testing"

func TestEntryPredicates(t *testing.T) {
	tests := []struct {
		name                      string
		e                         Entry
		access, hbone, mtls, deny bool
	}{
		{name: "empty"},
		{name: "connection failed is access", e: Entry{Scope: "access", Message: "connection failed"}, access: true},
		{name: "connection opened is not", e: Entry{Scope: "access", Message: "connection opened"}},
		{name: "other scope", e: Entry{Scope: "xds", Message: "connection complete"}},
		{name: "hbone ipv6", e: Entry{Fields: FieldsOf(map[string]string{"dst.addr": "[fd00::5]:15008", "dst.hbone_addr": "[fd00::5]:80"})}, hbone: true},
		{name: "15008 without hbone_addr", e: Entry{Fields: FieldsOf(map[string]string{"dst.addr": "10.0.0.1:15008"})}},
		{name: "hbone_addr but app port", e: Entry{Fields: FieldsOf(map[string]string{"dst.addr": "10.0.0.1:8080", "dst.hbone_addr": "10.0.0.1:8080"})}},
		{name: "src identity only", e: Entry{Fields: FieldsOf(map[string]string{"src.identity": "spiffe://td/ns/a/sa/b"})}, mtls: true},
		{name: "dst identity only", e: Entry{Fields: FieldsOf(map[string]string{"dst.identity": "spiffe://td/ns/a/sa/b"})}, mtls: true},
		{name: "old-style rejection", e: Entry{Fields: FieldsOf(map[string]string{"error": "connection closed due to policy rejection"})}, deny: true},
		{name: "client 401", e: Entry{Fields: FieldsOf(map[string]string{"error": "http status: 401 Unauthorized"})}, deny: true},
		{name: "timeout is not rejection", e: Entry{Fields: FieldsOf(map[string]string{"error": "connection timed out"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := [4]bool{tt.e.IsAccess(), tt.e.IsHBONE(), tt.e.IsMTLS(), tt.e.IsPolicyRejection()}
			want := [4]bool{tt.access, tt.hbone, tt.mtls, tt.deny}
			if got != want {
				t.Errorf("[IsAccess IsHBONE IsMTLS IsPolicyRejection] = %v, want %v", got, want)
			}
		})
	}
}
