package main

import "testing"

func TestSoftMemoryLimit(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		name, gomemlimit, limit string
		want                    int64
		wantErr                 bool
	}{
		{name: "the shipped 256Mi limit in bytes, as the downward API writes it", limit: "268435456", want: 241591910},
		{name: "a quantity with a suffix", limit: "200Mi", want: 180 * mi},
		{name: "an explicit GOMEMLIMIT wins", gomemlimit: "100MiB", limit: "268435456"},
		{name: "no container limit", limit: ""},
		{name: "GOMEMLIMIT=off is explicit too", gomemlimit: "off", limit: "268435456"},
		{name: "not a quantity", limit: "lots", wantErr: true},
		{name: "zero", limit: "0", wantErr: true},
		{name: "negative", limit: "-1Mi", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := softMemoryLimit(tc.gomemlimit, tc.limit)
			if (err != nil) != tc.wantErr {
				t.Fatalf("softMemoryLimit(%q, %q) error = %v, want error %v", tc.gomemlimit, tc.limit, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("softMemoryLimit(%q, %q) = %d, want %d", tc.gomemlimit, tc.limit, got, tc.want)
			}
		})
	}
}
