package dataplane

import (
	"errors"
	"testing"
)

func TestServiceName(t *testing.T) {
	cases := []struct {
		host     string
		ns, name string
		ok       bool
	}{
		{"backend", "demo", "backend", true}, // the caller's namespace
		{"backend.demo", "demo", "backend", true},
		{"backend.demo.svc", "demo", "backend", true},
		{"backend.demo.svc.cluster.local", "demo", "backend", true},
		{"Backend.Demo.svc.cluster.local.", "demo", "backend", true},
		{"backend.demo.cluster.local", "", "", false}, // no ".svc"
		{"backend.demo.svc.other.domain", "", "", false},
		{"a.b.c", "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		ns, name, ok := serviceName(c.host, "demo", "cluster.local")
		if ns != c.ns || name != c.name || ok != c.ok {
			t.Errorf("serviceName(%q) = %q, %q, %v; want %q, %q, %v", c.host, ns, name, ok, c.ns, c.name, c.ok)
		}
	}
}

func TestResolve(t *testing.T) {
	ix := newIndex(seedSnapshot())
	src := Workload{Namespace: "demo"}
	cases := []struct {
		host    string
		port    int
		service string
		dst     string
		dstPort int
		err     error
	}{
		{"backend", 80, backendService, "backend-7f9c4", 8080, nil},
		{"10.96.0.20", 80, backendService, "backend-7f9c4", 8080, nil}, // ClusterIP
		{backendIP, 8080, "", "backend-7f9c4", 8080, nil},              // pod IP: no Service
		{"empty", 80, "", "", 0, errRefused},                           // no endpoints
		{"backend", 81, "", "", 0, errRefused},                         // port not on the Service
		{"10.99.0.1", 80, "", "", 0, errRefused},
		{"web", 80, "", "", 0, errNoSuchHost}, // web lives in legacy
		{"web.legacy", 80, "web.legacy.svc.cluster.local", "web-1", 8080, nil},
	}
	for _, c := range cases {
		got, err := ix.resolve(src, c.host, c.port, "cluster.local")
		if !errors.Is(err, c.err) || got.service != c.service || got.dst.Name != c.dst || got.port != c.dstPort {
			t.Errorf("resolve(%s:%d) = %q %q %d, %v; want %q %q %d, %v",
				c.host, c.port, got.service, got.dst.Name, got.port, err, c.service, c.dst, c.dstPort, c.err)
		}
	}
}

func TestEndpointIsFirstByName(t *testing.T) {
	sel := map[string]string{"app": "api"}
	ix := newIndex(Snapshot{Workloads: []Workload{
		{Namespace: "demo", Name: "api-b", Labels: sel},
		{Namespace: "other", Name: "api-0", Labels: sel},
		{Namespace: "demo", Name: "api-a", Labels: sel},
	}})
	w, ok := ix.endpoint(Service{Namespace: "demo", Selector: sel})
	if !ok || w.Name != "api-a" {
		t.Fatalf("endpoint = %q, %v; want api-a", w.Name, ok)
	}
	if _, ok := ix.endpoint(Service{Namespace: "demo"}); ok {
		t.Fatal("a Service without selector must have no endpoints")
	}
}
