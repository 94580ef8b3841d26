package policy

import (
	"encoding/json"
	"os"
	"testing"
)

// loadAmbientz reads a /debug/ambientz capture of the real istiod (hack/istiod) against the sandbox's world.
func loadAmbientz(t *testing.T, file string) *Ztunnel {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var a Ambientz
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	return NewZtunnel(a)
}

// TestZtunnelFromIstiod evaluates connections to backend with the policies istiod converted and attached:
//   - ambientz-strict.json: mesh-wide STRICT and backend-allow-frontend-only (istiod's static strict DENY
//     notPrincipals presence, and the ALLOW on principals);
//   - ambientz-portlevel.json: plus a workload PeerAuthentication demo/backend-port with port 80 PERMISSIVE, which
//     istiod converts to converted_peer_authentication_backend-port (DENY when the port is not 80 and there is no
//     principal) and for which it drops the static strict policy from backend.
func TestZtunnelFromIstiod(t *testing.T) {
	frontend := Peer{Mesh: true, Namespace: "demo", ServiceAccount: "frontend", IP: "10.244.1.2"}
	attacker := Peer{Mesh: true, Namespace: "demo", ServiceAccount: "attacker", IP: "10.244.1.3"}
	plaintext := Peer{IP: "10.244.3.9"}
	backend := func(port int) Workload {
		return Workload{Namespace: "demo", Name: "backend-7d4f8b9c6d-x2k9p", IP: "10.244.2.2", Port: port}
	}
	cases := []struct {
		file    string
		src     Peer
		port    int
		allowed bool
		err     string
	}{
		{"ambientz-strict.json", frontend, 80, true, ""},
		{"ambientz-strict.json", attacker, 80, false, ErrNoAllowMatched},
		{"ambientz-strict.json", plaintext, 80, false, ErrExplicitlyDeniedPrefix + "istio-system/istio_converted_static_strict"},
		{"ambientz-portlevel.json", frontend, 80, true, ""},
		{"ambientz-portlevel.json", plaintext, 80, false, ErrNoAllowMatched},
		{"ambientz-portlevel.json", plaintext, 8080, false, ErrExplicitlyDeniedPrefix + "demo/converted_peer_authentication_backend-port"},
		{"ambientz-portlevel.json", attacker, 8080, false, ErrNoAllowMatched},
	}
	for _, tc := range cases {
		d := loadAmbientz(t, tc.file).Evaluate(tc.src, backend(tc.port))
		if d.Allowed != tc.allowed || d.Error != tc.err {
			t.Errorf("%s: %+v to port %d = allowed %v %q; want %v %q", tc.file, tc.src, tc.port, d.Allowed, d.Error, tc.allowed, tc.err)
		}
	}
}

// TestZtunnelScopes: global and namespace-scoped policies apply without being attached; dry-run ones never.
func TestZtunnelScopes(t *testing.T) {
	deny := func(name, ns, scope string, dry bool) Authorization {
		presence := json.RawMessage(`{}`)
		return Authorization{Name: name, Namespace: ns, Scope: scope, Action: "DENY", DryRun: dry,
			Groups: []Group{{Rules: []Rules{{Matches: []Match{{Principals: []StringMatch{{Presence: &presence}}}}}}}}}
	}
	frontend := Peer{Mesh: true, Namespace: "demo", ServiceAccount: "frontend"}
	dst := Workload{Namespace: "demo", Name: "backend"}
	for _, tc := range []struct {
		name string
		p    Authorization
		err  string
	}{
		{"global", deny("all", "istio-system", "", false), ErrExplicitlyDeniedPrefix + "istio-system/all"},
		{"namespace", deny("ns", "demo", "NAMESPACE", false), ErrExplicitlyDeniedPrefix + "demo/ns"},
		{"other namespace", deny("ns", "shop", "NAMESPACE", false), ""},
		{"selector, not attached", deny("sel", "demo", "WORKLOAD_SELECTOR", false), ""},
		{"dry run", deny("dry", "demo", "NAMESPACE", true), ""},
	} {
		d := NewZtunnel(Ambientz{Policies: []Authorization{tc.p}}).Evaluate(frontend, dst)
		if d.Error != tc.err || d.Allowed != (tc.err == "") {
			t.Errorf("%s: allowed %v %q, want error %q", tc.name, d.Allowed, d.Error, tc.err)
		}
	}
}
