package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// TestFootprintTextInKubernetesUnits: quantities read as kubectl top prints them, and a negative saving says
// that ambient uses more.
func TestFootprintTextInKubernetesUnits(t *testing.T) {
	for _, tc := range []struct {
		cpu, memory string
		want        string
	}{
		{"1500m", "1510612736", "saving 1500m CPU, 1441Mi memory"},
		{"-400m", "-1510612736", "ambient uses 400m CPU, 1441Mi memory more than the sidecars would"},
		{"200m", "-64Mi", "saving 200m CPU; ambient uses 64Mi memory more than the sidecars would"},
		{"0", "0", "no difference"},
	} {
		if got := savingText(resource.MustParse(tc.cpu), resource.MustParse(tc.memory)); got != tc.want {
			t.Errorf("savingText(%s, %s) = %q, want %q", tc.cpu, tc.memory, got, tc.want)
		}
	}
	if got := memoryText(resource.MustParse("128Mi")); got != "128Mi" {
		t.Errorf("memoryText(128Mi) = %q", got)
	}
	if got := cpuText(resource.MustParse("2")); got != "2000m" {
		t.Errorf("cpuText(2) = %q", got)
	}
}
