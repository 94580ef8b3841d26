package sandbox

import (
	"context"
	"fmt"

	secv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// The lab guide's world.
const (
	RootNamespace     = "istio-system"
	DemoNamespace     = "demo"
	OperatorNamespace = "labrun-system"
	PolicyName        = "backend-allow-frontend-only"
	KongPrincipal     = "cluster.local/ns/kong/sa/kong-gateway"
	ztunnelContainer  = "istio-proxy"
	ambientLabel      = "istio.io/dataplane-mode"
	ambientValue      = "ambient"
)

// ztunnelPodName names the ztunnel pod of a node, as the DaemonSet would (stable, so logs can be found).
func ztunnelPodName(node string) string { return "ztunnel-" + node }

// seedWorld creates the guide's world: namespaces, the frontend and backend workloads, Service backend:80,
// one ztunnel per node, PeerAuthentication istio-system/default STRICT and the backend's L4 policy; and the shop
// namespace with its workloads and policies (shop.go).
func seedWorld(ctx context.Context, c client.Client, nodes []string, replicas int) error {
	objs := []client.Object{
		// The world's namespaces are enabled for runs, as an administrator would do (labs.ambientlab.io/enabled).
		namespace(RootNamespace, map[string]string{labsv1.LabelEnabled: "true"}), namespace(OperatorNamespace, nil),
		namespace(DemoNamespace, map[string]string{ambientLabel: ambientValue, labsv1.LabelEnabled: "true"}),
		serviceAccount(DemoNamespace, "frontend"), serviceAccount(DemoNamespace, "backend"),
		deployment(DemoNamespace, "frontend", 1), deployment(DemoNamespace, "backend", int32(replicas)),
		// frontend's Service gives a run a bystander: an enrolled workload a Workload-scope run does not weaken.
		backendService(), appService("frontend"), ztunnelDaemonSet(), strictPeerAuthentication(), backendPolicy(),
	}
	objs = append(objs, shopObjects()...)
	for _, p := range worldPods(nodes, replicas) {
		objs = append(objs, p)
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", o, client.ObjectKeyFromObject(o), err)
		}
		if d, ok := o.(*appsv1.Deployment); ok {
			// No controller-manager runs in the sandbox: the status its deployment controller would write, so
			// that `kubectl get deploy` shows the pods the world runs as ready.
			n := *d.Spec.Replicas
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n,
				ReadyReplicas: n, AvailableReplicas: n}
			if err := c.Status().Update(ctx, d); err != nil {
				return fmt.Errorf("writing the status of Deployment %s: %w", client.ObjectKeyFromObject(d), err)
			}
		}
	}
	return nil
}

// worldPods are the world's pods: frontend on the first node, the backend replicas on the nodes from the second
// on (round robin), shop's apps on the last node, and one ztunnel per node.
func worldPods(nodes []string, replicas int) []*corev1.Pod {
	pods := []*corev1.Pod{appPod(DemoNamespace, "frontend", nodes[0], 0)}
	for i := range replicas {
		node := nodes[0]
		if len(nodes) > 1 {
			node = nodes[1+i%(len(nodes)-1)]
		}
		pods = append(pods, appPod(DemoNamespace, "backend", node, i))
	}
	pods = append(pods, shopPods(nodes)...)
	for _, n := range nodes {
		pods = append(pods, ztunnelPod(n))
	}
	return pods
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func serviceAccount(ns, name string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// appSpec is one container, no sidecar and no init container: that is what ambient mode looks like. The container
// declares the given ports (its Service's, same numbers), or port 80.
func appSpec(name string, ports ...corev1.ServicePort) corev1.PodSpec {
	containerPorts := []corev1.ContainerPort{{ContainerPort: 80}}
	if len(ports) > 0 {
		containerPorts = nil
		for _, p := range ports {
			containerPorts = append(containerPorts, corev1.ContainerPort{Name: p.Name, ContainerPort: p.Port})
		}
	}
	return corev1.PodSpec{
		ServiceAccountName: name,
		Containers: []corev1.Container{{
			Name: name, Image: "kong/httpbin:0.1.0", Ports: containerPorts,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi"),
			}},
		}},
	}
}

func deployment(ns, name string, replicas int32, ports ...corev1.ServicePort) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: appSpec(name, ports...)},
		},
	}
}

// appPod is the i-th pod the Deployment's ReplicaSet would create (no controller-manager runs in the sandbox).
func appPod(ns, name, node string, i int, ports ...corev1.ServicePort) *corev1.Pod {
	spec := appSpec(name, ports...)
	spec.NodeName = node
	suffix := "x2k9p"
	if i > 0 {
		suffix = fmt.Sprintf("r%04d", i)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-7d4f8b9c6d-" + suffix,
			Labels: map[string]string{"app": name}},
		Spec: spec,
	}
}

func backendService() *corev1.Service { return appService("backend") }

// appService is the Service in front of a demo app's pods, port 80.
func appService(app string) *corev1.Service { return service(DemoNamespace, app) }

// service is the Service in front of an app's pods: the given ports (each to the same container port), or http 80.
func service(ns, app string, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Name: "http", Port: 80}}
	}
	var svcPorts []corev1.ServicePort
	for _, p := range ports {
		svcPorts = append(svcPorts, corev1.ServicePort{Name: p.Name, Port: p.Port, TargetPort: intstr.FromInt32(p.Port)})
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app, Labels: map[string]string{"app": app}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": app}, Ports: svcPorts},
	}
}

// ztunnelSpec carries the Istio chart's default requests, which the footprint lab reads, and its tolerations
// (manifests/charts/ztunnel/templates/daemonset.yaml: ztunnel runs on every node, whatever its taints).
func ztunnelSpec() corev1.PodSpec {
	return corev1.PodSpec{
		Tolerations: []corev1.Toleration{
			{Effect: corev1.TaintEffectNoSchedule, Operator: corev1.TolerationOpExists},
			{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
			{Effect: corev1.TaintEffectNoExecute, Operator: corev1.TolerationOpExists},
		},
		Containers: []corev1.Container{{
			Name: ztunnelContainer, Image: "istio/ztunnel:1.28.0",
			Ports: []corev1.ContainerPort{{Name: "ztunnel-stats", ContainerPort: 15020}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("512Mi"),
			}},
		}},
	}
}

func ztunnelDaemonSet() *appsv1.DaemonSet {
	labels := map[string]string{"app": "ztunnel"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: RootNamespace, Name: "ztunnel", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: ztunnelSpec()},
		},
	}
}

func ztunnelPod(node string) *corev1.Pod {
	spec := ztunnelSpec()
	spec.NodeName = node
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: RootNamespace, Name: ztunnelPodName(node),
			Labels: map[string]string{"app": "ztunnel"}},
		Spec: spec,
	}
}

func strictPeerAuthentication() *securityv1.PeerAuthentication {
	return &securityv1.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Namespace: RootNamespace, Name: "default"},
		Spec: secv1beta1.PeerAuthentication{
			Mtls: &secv1beta1.PeerAuthentication_MutualTLS{Mode: secv1beta1.PeerAuthentication_MutualTLS_STRICT},
		},
	}
}

// backendPolicy is the guide's policies/authz-policy.yaml: only frontend and the Kong gateway reach backend.
func backendPolicy() *securityv1.AuthorizationPolicy {
	return &securityv1.AuthorizationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: DemoNamespace, Name: PolicyName},
		Spec: secv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "backend"}},
			Action:   secv1beta1.AuthorizationPolicy_ALLOW,
			Rules: []*secv1beta1.Rule{{From: []*secv1beta1.Rule_From{{Source: &secv1beta1.Source{
				Principals: []string{"cluster.local/ns/" + DemoNamespace + "/sa/frontend", KongPrincipal},
			}}}}},
		},
	}
}
