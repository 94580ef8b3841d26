package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// TestTimesCannotOverflow: the sidecar estimate is exact for small and for huge quantities (the API caps a
// sidecar at 64 cores and 64Gi, but the arithmetic does not rely on it).
func TestTimesCannotOverflow(t *testing.T) {
	cases := []struct {
		q    string
		n    int32
		want string
	}{
		{"100m", 2, "200m"},
		{"50M", 2, "100M"},
		{"64", 1 << 30, "68719476736"},
		{"64Gi", 1 << 30, "73786976294838206464"},
		{"1e30", 1000, "1e33"},
		{"1Ei", 3, "3458764513820540928"},
		{"100m", 0, "0"},
	}
	for _, tc := range cases {
		got := times(resource.MustParse(tc.q), tc.n)
		if want := resource.MustParse(tc.want); got.Cmp(want) != 0 {
			t.Errorf("%s × %d = %s, want %s", tc.q, tc.n, got.String(), tc.want)
		}
		if tc.n > 0 && got.Sign() <= 0 {
			t.Errorf("%s × %d is not positive: %s", tc.q, tc.n, got.String())
		}
	}
}
