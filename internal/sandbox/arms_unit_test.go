package sandbox

import (
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/ambientlab/labrun-operator/internal/probe"
)

// TestArmSource: the node agent finds the ConfigMap key a warm observer's volume projects at its arm file, as
// kubelet would, and nothing where no volume puts the file.
func TestArmSource(t *testing.T) {
	armFile := filepath.Join(probe.ArmDir, probe.ArmFileName)
	warm := func(mutate func(*corev1.Pod)) *corev1.Pod {
		p := probe.Pod(probe.PodRequest{Name: "w", Namespace: "demo", Image: "img",
			Options: probe.Options{Observe: true, Settle: time.Hour},
			Arm:     &probe.ArmVolume{ConfigMap: "arms", Key: "node-1.json"}})
		if mutate != nil {
			mutate(p)
		}
		return p
	}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		wantOK bool
		want   string // the key
	}{
		{"as probe.Pod mounts it", warm(nil), true, "node-1.json"},
		{"all keys, none chosen", warm(func(p *corev1.Pod) { p.Spec.Volumes[0].ConfigMap.Items = nil }), true, probe.ArmFileName},
		{"another item's path", warm(func(p *corev1.Pod) { p.Spec.Volumes[0].ConfigMap.Items[0].Path = "other.json" }), false, ""},
		{"mounted elsewhere", warm(func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/elsewhere" }), false, ""},
		{"not a ConfigMap", warm(func(p *corev1.Pod) {
			p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		}), false, ""},
		{"no volume", probe.Pod(probe.PodRequest{Name: "w", Namespace: "demo", Options: probe.Options{Observe: true}}), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cm, key, ok := armSource(tc.pod, armFile)
			g.Expect(ok).To(Equal(tc.wantOK))
			if tc.wantOK {
				g.Expect(cm).To(Equal(types.NamespacedName{Namespace: "demo", Name: "arms"}))
				g.Expect(key).To(Equal(tc.want))
			}
		})
	}
}

// TestArmsFollowConfigMaps: arms holds each key's parsed arm; a key that does not decode is an error, a missing
// ConfigMap or key and a deleted ConfigMap the idle zero Arm.
func TestArmsFollowConfigMaps(t *testing.T) {
	g := NewWithT(t)
	until := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "arms"}, Data: map[string]string{
		"node-1.json": `{"token":"run-1","urls":["http://a/"],"until":"2025-03-01T10:00:00Z"}`,
		"node-2.json": `{not json`,
	}}
	key := types.NamespacedName{Namespace: "demo", Name: "arms"}
	a := newArms()
	a.set(cm)

	g.Expect(a.get(key, "node-1.json")).To(Equal(probe.Arm{Token: "run-1", URLs: []string{"http://a/"}, Until: until}))
	_, err := a.get(key, "node-2.json")
	g.Expect(err).To(MatchError(ContainSubstring("demo/arms[node-2.json]")))
	g.Expect(a.get(key, "node-3.json")).To(BeZero())
	g.Expect(a.get(types.NamespacedName{Namespace: "demo", Name: "other"}, "node-1.json")).To(BeZero())

	cm.Data = map[string]string{"node-1.json": `{"token":"run-2","urls":["http://b/"],"until":"2025-03-01T10:00:00Z"}`}
	a.set(cm)
	g.Expect(a.get(key, "node-1.json")).To(HaveField("Token", "run-2"))
	g.Expect(a.get(key, "node-2.json")).To(BeZero(), "a key removed from the ConfigMap")

	a.drop(toolscache.DeletedFinalStateUnknown{Key: "demo/arms", Obj: cm})
	g.Expect(a.get(key, "node-1.json")).To(BeZero(), "a deleted ConfigMap, missed by the watch")
	a.set(cm)
	a.drop(cm)
	g.Expect(a.get(key, "node-1.json")).To(BeZero(), "a deleted ConfigMap")
}
