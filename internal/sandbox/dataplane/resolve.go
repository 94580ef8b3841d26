package dataplane

import (
	"errors"
	"net"
	"sort"
	"strings"
)

// Workload is a running pod as the data plane knows it.
type Workload struct {
	Namespace, Name, ServiceAccount, Node, IP string
	// Labels select the pod as a Service endpoint and as a policy target.
	Labels map[string]string
	// Mesh is true when ambient captures the pod: its namespace (or the pod)
	// has istio.io/dataplane-mode=ambient.
	Mesh bool
}

// ServicePort maps a Service port to the pod's port.
type ServicePort struct {
	Port int
	// TargetPort is the container port; 0 means the same as Port.
	TargetPort int
}

// Service is a Kubernetes Service as the data plane knows it.
type Service struct {
	Namespace, Name string
	// Selector picks the endpoints; a Service without one has none.
	Selector map[string]string
	Ports    []ServicePort
	// ClusterIP, when set, can be dialled instead of the Service's name.
	ClusterIP string
}

// Snapshot is the cluster state the data plane routes by.
type Snapshot struct {
	Workloads []Workload
	Services  []Service
}

// Resolution failures, mapped by Dial to what a client would see.
var (
	errNoSuchHost = errors.New("no such host")
	errRefused    = errors.New("connection refused")
)

type nsName struct{ namespace, name string }

// index is a Snapshot prepared for the lookups every Dial makes.
type index struct {
	workloads map[nsName]Workload
	byIP      map[string]Workload
	services  map[nsName]Service
	byVIP     map[string]Service
	// ordered lists workloads by namespace, then name, so the endpoint a
	// Service resolves to is repeatable.
	ordered []Workload
}

func newIndex(s Snapshot) *index {
	ix := &index{
		workloads: map[nsName]Workload{}, byIP: map[string]Workload{},
		services: map[nsName]Service{}, byVIP: map[string]Service{},
	}
	for _, w := range s.Workloads {
		ix.workloads[nsName{w.Namespace, w.Name}] = w
		if w.IP != "" {
			ix.byIP[w.IP] = w
		}
		ix.ordered = append(ix.ordered, w)
	}
	sort.SliceStable(ix.ordered, func(i, j int) bool {
		a, b := ix.ordered[i], ix.ordered[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	for _, svc := range s.Services {
		ix.services[nsName{svc.Namespace, svc.Name}] = svc
		if svc.ClusterIP != "" && svc.ClusterIP != "None" {
			ix.byVIP[svc.ClusterIP] = svc
		}
	}
	return ix
}

// source prefers the snapshot's record of src, which is the truth about its
// identity, labels and capture.
func (ix *index) source(src Workload) Workload {
	if w, ok := ix.workloads[nsName{src.Namespace, src.Name}]; ok {
		return w
	}
	return src
}

// target is where a connection goes once the Service is resolved.
type target struct {
	service string // "<svc>.<ns>.svc.<clusterDomain>"; "" when a pod IP was dialled
	dst     Workload
	port    int // the pod's (target) port
}

// resolve finds the endpoint behind host:port for src. It returns
// errNoSuchHost for a name that does not resolve and errRefused when nothing
// listens: an unknown Service port, a Service without endpoints, or an IP that
// is neither a ClusterIP nor a pod.
func (ix *index) resolve(src Workload, host string, port int, clusterDomain string) (target, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ix.resolveIP(ip.String(), port, clusterDomain)
	}
	ns, name, ok := serviceName(host, src.Namespace, clusterDomain)
	if !ok {
		return target{}, errNoSuchHost
	}
	svc, ok := ix.services[nsName{ns, name}]
	if !ok {
		return target{}, errNoSuchHost
	}
	return ix.toEndpoint(svc, port, clusterDomain)
}

func (ix *index) resolveIP(ip string, port int, clusterDomain string) (target, error) {
	if svc, ok := ix.byVIP[ip]; ok {
		return ix.toEndpoint(svc, port, clusterDomain)
	}
	if w, ok := ix.byIP[ip]; ok {
		return target{dst: w, port: port}, nil
	}
	return target{}, errRefused
}

func (ix *index) toEndpoint(svc Service, port int, clusterDomain string) (target, error) {
	tp, ok := targetPort(svc, port)
	if !ok {
		return target{}, errRefused
	}
	w, ok := ix.endpoint(svc)
	if !ok {
		return target{}, errRefused
	}
	return target{service: fqdn(svc, clusterDomain), dst: w, port: tp}, nil
}

// endpoint picks the first selected pod in name order: repeatable runs matter
// more to the sandbox than spreading load.
func (ix *index) endpoint(svc Service) (Workload, bool) {
	if len(svc.Selector) == 0 {
		return Workload{}, false
	}
	for _, w := range ix.ordered {
		if w.Namespace == svc.Namespace && selects(svc.Selector, w.Labels) {
			return w, true
		}
	}
	return Workload{}, false
}

func targetPort(svc Service, port int) (int, bool) {
	for _, p := range svc.Ports {
		if p.Port != port {
			continue
		}
		if p.TargetPort == 0 {
			return p.Port, true
		}
		return p.TargetPort, true
	}
	return 0, false
}

// serviceName reads the names a pod's resolver accepts for a Service, given
// the usual search path (<ns>.svc.<domain>, svc.<domain>, <domain>):
// <svc>, <svc>.<ns>, <svc>.<ns>.svc and <svc>.<ns>.svc.<domain>.
func serviceName(host, srcNamespace, clusterDomain string) (ns, name string, ok bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if suffix := ".svc." + strings.ToLower(clusterDomain); strings.HasSuffix(host, suffix) {
		host = strings.TrimSuffix(host, suffix) + ".svc"
	}
	labels := strings.Split(host, ".")
	if len(labels) == 3 && labels[2] == "svc" {
		labels = labels[:2]
	}
	switch {
	case len(labels) == 1 && labels[0] != "" && srcNamespace != "":
		return srcNamespace, labels[0], true
	case len(labels) == 2 && labels[0] != "" && labels[1] != "":
		return labels[1], labels[0], true
	}
	return "", "", false
}

func fqdn(svc Service, clusterDomain string) string {
	return svc.Name + "." + svc.Namespace + ".svc." + clusterDomain
}

// selects reports whether every selector label is present in labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
