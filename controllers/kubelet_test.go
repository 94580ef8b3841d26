package controllers_test

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// fakeKubelet plays kubelet for probe pods until the sandbox's node agent replaces it: it runs the real prober
// in-process, dialling the given loopback address whatever host the URL names, and writes the terminated
// container status with the JSON result as termination message, as kubelet does.
func fakeKubelet(t *testing.T, ns, backend string) {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns), client.MatchingLabels{labsv1.LabelProbe: "true"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); w.Stop(); wg.Wait() })
	seen := map[string]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type != watch.Added || seen[string(pod.UID)] {
				continue
			}
			seen[string(pod.UID)] = true
			wg.Add(1)
			go func() { defer wg.Done(); runProbePod(ctx, t, pod, backend) }()
		}
	}()
}

func runProbePod(ctx context.Context, t *testing.T, pod *corev1.Pod, backend string) {
	opts, err := probe.ParseArgs(pod.Spec.Containers[0].Args)
	if err != nil {
		t.Errorf("probe pod %s has bad args: %v", pod.Name, err)
		return
	}
	opts.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, backend)
	}
	res := probe.Run(ctx, opts)
	msg, _ := json.Marshal(res)
	exit := int32(0)
	if !res.Matched {
		exit = 1
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Pod{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur); err != nil {
			return err
		}
		cur.Status.Phase = corev1.PodSucceeded
		cur.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: probe.ContainerName, Image: cur.Spec.Containers[0].Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: exit, Reason: "Completed", Message: string(msg),
				StartedAt: metav1.NewTime(res.StartTime), FinishedAt: metav1.NewTime(res.EndTime),
			}},
		}}
		return k8s.Status().Update(ctx, cur)
	})
	if err != nil && ctx.Err() == nil && client.IgnoreNotFound(err) != nil {
		t.Errorf("writing probe pod status: %v", err)
	}
}
