package sandbox

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
)

// feeder keeps the simulated ztunnel's view of workloads and services current. Security policies come from
// the real istiod (istiod.go), converted and attached as it sends them to ztunnel.
type feeder struct {
	client.Client
	dp *dataplane.Dataplane
}

var workloadKey = reconcile.Request{NamespacedName: client.ObjectKey{Name: "workloads"}}

func (f *feeder) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	return ctrl.Result{}, f.feedWorkloads(ctx)
}

func (f *feeder) feedWorkloads(ctx context.Context) error {
	var pods corev1.PodList
	var svcs corev1.ServiceList
	var nss corev1.NamespaceList
	for _, l := range []client.ObjectList{&pods, &svcs, &nss} {
		if err := f.List(ctx, l); err != nil {
			return err
		}
	}
	byName := map[string]*corev1.Namespace{}
	for i := range nss.Items {
		byName[nss.Items[i].Name] = &nss.Items[i]
	}
	var snap dataplane.Snapshot
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || byName[p.Namespace] == nil {
			continue
		}
		snap.Workloads = append(snap.Workloads, workload(p, byName[p.Namespace], p.Status.PodIP))
	}
	for _, s := range svcs.Items {
		svc := dataplane.Service{Namespace: s.Namespace, Name: s.Name, Selector: s.Spec.Selector, ClusterIP: s.Spec.ClusterIP}
		for _, p := range s.Spec.Ports {
			svc.Ports = append(svc.Ports, dataplane.ServicePort{Port: int(p.Port), TargetPort: p.TargetPort.IntValue()})
		}
		snap.Services = append(snap.Services, svc)
	}
	f.dp.SetSnapshot(snap)
	return nil
}

func (f *feeder) setup(mgr ctrl.Manager) error {
	toKey := func(key reconcile.Request) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
			return []reconcile.Request{key}
		})
	}
	return ctrl.NewControllerManagedBy(mgr).Named("sandbox-ztunnel-feed").
		Watches(&corev1.Pod{}, toKey(workloadKey)).
		Watches(&corev1.Service{}, toKey(workloadKey)).
		Watches(&corev1.Namespace{}, toKey(workloadKey)).
		Complete(f)
}
