package ztunnel

import (
	"bytes"
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// LogReader reads ztunnel access logs through the API server (pods/log), as `kubectl logs -l app=ztunnel` does.
type LogReader struct {
	Client kubernetes.Interface
}

// Source is a ztunnel pod whose log was read: reports name where their evidence came from.
type Source struct {
	Namespace, Pod, Node string
}

// Read returns the parsed log entries of every ztunnel pod matching selector in namespace, written since the
// given time, and the pods it read. It fails when no ztunnel pod is found or a pod's logs cannot be read: no
// logs is not evidence.
func (r LogReader) Read(ctx context.Context, namespace string, selector map[string]string, since time.Time) ([]Entry, []Source, error) {
	pods, err := r.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(selector).String(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing ztunnel pods in %s: %w", namespace, err)
	}
	if len(pods.Items) == 0 {
		return nil, nil, fmt.Errorf("no ztunnel pods match %s in namespace %s", labels.SelectorFromSet(selector), namespace)
	}
	var all []Entry
	sources := make([]Source, 0, len(pods.Items))
	for _, p := range pods.Items {
		entries, err := r.readPod(ctx, &p, since)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, entries...)
		sources = append(sources, Source{Namespace: p.Namespace, Pod: p.Name, Node: p.Spec.NodeName})
	}
	return all, sources, nil
}

func (r LogReader) readPod(ctx context.Context, p *corev1.Pod, since time.Time) ([]Entry, error) {
	opts := &corev1.PodLogOptions{}
	if len(p.Spec.Containers) > 1 {
		opts.Container = "istio-proxy"
	}
	if !since.IsZero() {
		t := metav1.NewTime(since)
		opts.SinceTime = &t
	}
	raw, err := r.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, opts).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading logs of ztunnel pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return Parse(bytes.NewReader(raw))
}

// PodLog returns one pod's log (its only container's) written since the given time, as `kubectl logs --since-time`
// does; the API's sinceTime has a resolution of one second, so callers filter the lines by their own times.
func (r LogReader) PodLog(ctx context.Context, namespace, name string, since time.Time) ([]byte, error) {
	opts := &corev1.PodLogOptions{}
	if !since.IsZero() {
		t := metav1.NewTime(since)
		opts.SinceTime = &t
	}
	raw, err := r.Client.CoreV1().Pods(namespace).GetLogs(name, opts).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading logs of pod %s/%s: %w", namespace, name, err)
	}
	return raw, nil
}
