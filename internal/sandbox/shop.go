package sandbox

import (
	secv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// The shop namespace: a second ambient namespace whose policies show each verdict a policy audit can reach
// (config/samples/world/shop-*.yaml is its plain-manifest twin).
const (
	ShopNamespace = "shop"
	// OrdersAllowWebPolicy allows shop/web to reach orders: a probe as web is allowed.
	OrdersAllowWebPolicy = "orders-allow-web"
	// OrdersDenyLegacyPolicy denies shop/legacy to orders: a probe as legacy is denied by it, by name.
	OrdersDenyLegacyPolicy = "orders-deny-legacy"
	// OrdersAllowGatewayPolicy allows the Kong gateway's identity (KongPrincipal), which a probe may not run as.
	OrdersAllowGatewayPolicy = "orders-allow-gateway"
	// PaymentsGetOnlyPolicy allows web only for GET: HTTP attributes, and no waypoint, so istiod drops the rule
	// for ztunnel (status ZtunnelAccepted, reason UnsupportedValue) and payments denies every caller.
	PaymentsGetOnlyPolicy = "payments-get-only"
	// GhostAllowWebPolicy selects app=ghost, which no pod carries: istiod converts it and attaches it nowhere.
	GhostAllowWebPolicy = "ghost-allow-web"
	// CatalogMetricsPermissive is the PeerAuthentication that leaves catalog's metrics port (CatalogMetricsPort)
	// PERMISSIVE under the mesh-wide STRICT: istiod converts it into DENY policy
	// shop/converted_peer_authentication_catalog-metrics-permissive, attached to catalog instead of the static
	// strict policy (ISTIO-FACTS.md, "PeerAuthentication in ambient").
	CatalogMetricsPermissive = "catalog-metrics-permissive"
	// CatalogMetricsPort is catalog's second port (container and Service), the one left PERMISSIVE.
	CatalogMetricsPort = 9090
	// ConvertedPeerAuthenticationPrefix starts the name of the DENY policy istiod converts a workload
	// PeerAuthentication with portLevelMtls into, in its namespace (pilot/pkg/model GetAmbientPolicyConfigName).
	ConvertedPeerAuthenticationPrefix = "converted_peer_authentication_"
)

// shopIdentities are the ServiceAccounts of shop without pods: callers a probe runs as.
var shopIdentities = []string{"web", "legacy"}

// shopApps are shop's workloads: one pod each, on the last node, each behind its Service.
var shopApps = []string{"orders", "payments", "catalog"}

// shopPrincipal is the SPIFFE principal of a shop ServiceAccount, as AuthorizationPolicy writes it.
func shopPrincipal(sa string) string { return "cluster.local/ns/" + ShopNamespace + "/sa/" + sa }

// shopPorts are an app's ports: catalog serves metrics besides http.
func shopPorts(app string) []corev1.ServicePort {
	ports := []corev1.ServicePort{{Name: "http", Port: 80}}
	if app == "catalog" {
		ports = append(ports, corev1.ServicePort{Name: "metrics", Port: CatalogMetricsPort})
	}
	return ports
}

// shopObjects are shop's objects but its pods (shopPods): namespace, ServiceAccounts, Deployments, Services and
// policies.
func shopObjects() []client.Object {
	objs := []client.Object{
		namespace(ShopNamespace, map[string]string{ambientLabel: ambientValue, labsv1.LabelEnabled: "true"}),
	}
	for _, sa := range append(append([]string{}, shopIdentities...), shopApps...) {
		objs = append(objs, serviceAccount(ShopNamespace, sa))
	}
	for _, app := range shopApps {
		ports := shopPorts(app)
		objs = append(objs, deployment(ShopNamespace, app, 1, ports...), service(ShopNamespace, app, ports...))
	}
	return append(objs, shopPolicies()...)
}

// shopPods are the pods shop's Deployments' ReplicaSets would create, on the last node.
func shopPods(nodes []string) []*corev1.Pod {
	var pods []*corev1.Pod
	for _, app := range shopApps {
		pods = append(pods, appPod(ShopNamespace, app, nodes[len(nodes)-1], 0, shopPorts(app)...))
	}
	return pods
}

// shopPolicies are shop's AuthorizationPolicies and PeerAuthentication, one per verdict of an audit.
func shopPolicies() []client.Object {
	from := func(principal string) []*secv1beta1.Rule_From {
		return []*secv1beta1.Rule_From{{Source: &secv1beta1.Source{Principals: []string{principal}}}}
	}
	return []client.Object{
		shopPolicy(OrdersAllowWebPolicy, "orders", secv1beta1.AuthorizationPolicy_ALLOW,
			&secv1beta1.Rule{From: from(shopPrincipal("web"))}),
		shopPolicy(OrdersDenyLegacyPolicy, "orders", secv1beta1.AuthorizationPolicy_DENY,
			&secv1beta1.Rule{From: from(shopPrincipal("legacy"))}),
		shopPolicy(OrdersAllowGatewayPolicy, "orders", secv1beta1.AuthorizationPolicy_ALLOW,
			&secv1beta1.Rule{From: from(KongPrincipal)}),
		shopPolicy(PaymentsGetOnlyPolicy, "payments", secv1beta1.AuthorizationPolicy_ALLOW,
			&secv1beta1.Rule{From: from(shopPrincipal("web")),
				To: []*secv1beta1.Rule_To{{Operation: &secv1beta1.Operation{Methods: []string{"GET"}}}}}),
		shopPolicy(GhostAllowWebPolicy, "ghost", secv1beta1.AuthorizationPolicy_ALLOW,
			&secv1beta1.Rule{From: from(shopPrincipal("web"))}),
		&securityv1.PeerAuthentication{
			ObjectMeta: metav1.ObjectMeta{Namespace: ShopNamespace, Name: CatalogMetricsPermissive},
			Spec: secv1beta1.PeerAuthentication{
				Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "catalog"}},
				PortLevelMtls: map[uint32]*secv1beta1.PeerAuthentication_MutualTLS{
					CatalogMetricsPort: {Mode: secv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE},
				},
			},
		},
	}
}

func shopPolicy(name, app string, action secv1beta1.AuthorizationPolicy_Action,
	rule *secv1beta1.Rule) *securityv1.AuthorizationPolicy {
	return &securityv1.AuthorizationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ShopNamespace, Name: name},
		Spec: secv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": app}},
			Action:   action,
			Rules:    []*secv1beta1.Rule{rule},
		},
	}
}
