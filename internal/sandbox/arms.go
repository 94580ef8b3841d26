package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// armSelector selects the ConfigMaps the node agent watches for warm observers' arms: those labelled
// labsv1.LabelArm. Kubelet would project any ConfigMap a pod mounts; the sandbox watches only these, so that
// 300 nodes' observers read a small map rather than every ConfigMap of the cluster (and a manager that forgets
// the label sees its observers stay idle here).
func armSelector() labels.Selector {
	req, err := labels.NewRequirement(labsv1.LabelArm, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid label key
	}
	return labels.NewSelector().Add(*req)
}

// armCacheOptions limits the node agent's ConfigMap cache to arm ConfigMaps.
func armCacheOptions() cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {Label: armSelector()}}}
}

// arms is what kubelet would have written into warm observers' arm volumes: every arm ConfigMap's keys, parsed
// once per change by the informer's handler and read by observers before every attempt (300 nodes × 10 reads a
// second), without a copy or a request to the API server. Like kubelet's volume, it lags the API a little.
type arms struct {
	mu   sync.RWMutex
	byCM map[types.NamespacedName]map[string]parsedArm
}

// parsedArm is one ConfigMap key's arm, or why it does not decode.
type parsedArm struct {
	arm probe.Arm
	err error
}

func newArms() *arms {
	return &arms{byCM: map[types.NamespacedName]map[string]parsedArm{}}
}

// watch keeps a current with the arm ConfigMaps, through an informer of c (the agent's cache, limited by
// armCacheOptions); the informer starts with the cache.
func (a *arms) watch(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &corev1.ConfigMap{})
	if err != nil {
		return fmt.Errorf("watching arm ConfigMaps: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.set(obj) },
		UpdateFunc: func(_, obj any) { a.set(obj) },
		DeleteFunc: a.drop,
	})
	return err
}

// drop forgets a deleted ConfigMap, seen or missed (a tombstone).
func (a *arms) drop(obj any) {
	if gone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = gone.Obj
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.byCM, client.ObjectKeyFromObject(cm))
	}
}

// set parses every data key of the ConfigMap obj (the informer's own object, only read).
func (a *arms) set(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	parsed := make(map[string]parsedArm, len(cm.Data))
	for key, raw := range cm.Data {
		var p parsedArm
		if err := json.Unmarshal([]byte(raw), &p.arm); err != nil {
			p.err = fmt.Errorf("decoding arm %s/%s[%s]: %w", cm.Namespace, cm.Name, key, err)
		}
		parsed[key] = p
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byCM[client.ObjectKeyFromObject(cm)] = parsed
}

// get is the arm under key in the ConfigMap cm: the zero (idle) Arm when either is missing, as the optional
// volume then leaves the file out.
func (a *arms) get(cm types.NamespacedName, key string) (probe.Arm, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	p := a.byCM[cm][key]
	return p.arm, p.err
}

// loader reads the arm of the observer pod as kubelet would have projected it at armFile: from the ConfigMap
// volume mounted at armFile's directory in the probe container, the key projected as armFile's name. A pod
// with no such volume never has the file: it stays idle.
func (a *arms) loader(pod *corev1.Pod, armFile string) func() (probe.Arm, error) {
	cm, key, ok := armSource(pod, armFile)
	if !ok {
		return func() (probe.Arm, error) { return probe.Arm{}, nil }
	}
	return func() (probe.Arm, error) { return a.get(cm, key) }
}

// armSource finds which ConfigMap key a pod's volumes put at path in its probe container.
func armSource(pod *corev1.Pod, path string) (types.NamespacedName, string, bool) {
	dir, file := filepath.Dir(path), filepath.Base(path)
	for _, c := range pod.Spec.Containers {
		if c.Name != probe.ContainerName {
			continue
		}
		for _, m := range c.VolumeMounts {
			if filepath.Clean(m.MountPath) != dir || m.SubPath != "" {
				continue
			}
			if key, cm, ok := configMapKey(pod.Spec.Volumes, m.Name, file); ok {
				return types.NamespacedName{Namespace: pod.Namespace, Name: cm}, key, true
			}
		}
	}
	return types.NamespacedName{}, "", false
}

// configMapKey is the key that the ConfigMap volume named volume projects as file, and the ConfigMap's name.
// Without items, every key is projected under its own name.
func configMapKey(volumes []corev1.Volume, volume, file string) (key, configMap string, ok bool) {
	for _, v := range volumes {
		if v.Name != volume || v.ConfigMap == nil {
			continue
		}
		if len(v.ConfigMap.Items) == 0 {
			return file, v.ConfigMap.Name, true
		}
		for _, it := range v.ConfigMap.Items {
			if filepath.Clean(it.Path) == file {
				return it.Key, v.ConfigMap.Name, true
			}
		}
	}
	return "", "", false
}
