package mesh

import (
	"context"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestLockKeysOverlap(t *testing.T) {
	backend := LockKey{Level: LockWorkload, Namespace: "demo", Selector: map[string]string{"app": "backend"}}
	cases := []struct {
		name string
		a, b LockKey
		want bool
	}{
		{"same workload", backend, backend, true},
		{"another app in the namespace", backend,
			LockKey{Level: LockWorkload, Namespace: "demo", Selector: map[string]string{"app": "frontend"}}, false},
		{"a selector on other labels may pick the same pods", backend,
			LockKey{Level: LockWorkload, Namespace: "demo", Selector: map[string]string{"tier": "web"}}, true},
		{"the same app in another namespace", backend,
			LockKey{Level: LockWorkload, Namespace: "team-b", Selector: map[string]string{"app": "backend"}}, false},
		{"its namespace", backend, LockKey{Level: LockNamespace, Namespace: "demo"}, true},
		{"another namespace", backend, LockKey{Level: LockNamespace, Namespace: "team-b"}, false},
		{"the mesh", backend, LockKey{Level: LockMesh}, true},
		{"the mesh and a namespace", LockKey{Level: LockNamespace, Namespace: "team-b"}, LockKey{Level: LockMesh}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Overlaps(tc.b); got != tc.want {
				t.Errorf("%s overlaps %s = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := tc.b.Overlaps(tc.a); got != tc.want {
				t.Errorf("%s overlaps %s = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

// queue is a Lock over a fake client (this tests one function's bookkeeping; the controllers' tests prove the
// lock on the sandbox). Every holder is alive unless listed dead.
func queue(t *testing.T, dead map[Holder]bool) (Lock, client.Client) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := coordinationv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	return Lock{Client: c, Reader: c, Namespace: "labrun-system", Serve: &sync.Mutex{},
		Alive: func(_ context.Context, h Holder) (bool, error) { return !dead[h], nil }}, c
}

func TestLockServesOverlappingTicketsInArrivalOrder(t *testing.T) {
	ctx := context.Background()
	dead := map[Holder]bool{}
	l, _ := queue(t, dead)
	backend := []LockKey{{Level: LockWorkload, Namespace: "demo", Selector: map[string]string{"app": "backend"}}}
	frontend := []LockKey{{Level: LockWorkload, Namespace: "demo", Selector: map[string]string{"app": "frontend"}}}
	a, b, c, d := NewHolder("demo", "a", "1"), NewHolder("demo", "b", "2"), NewHolder("demo", "c", "3"), NewHolder("team", "d", "4")
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	request := func(h Holder, keys []LockKey, at time.Duration) Place {
		t.Helper()
		p, err := l.Request(ctx, h, fixed(keys), t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := request(a, backend, 0); !p.Served {
		t.Fatalf("the first ticket waits: %+v", p)
	}
	if p := request(b, backend, time.Millisecond); p.Served || p.Ahead != 1 || p.Blocker != a {
		t.Fatalf("b: %+v, want 1 ahead (a)", p)
	}
	if p := request(c, backend, 2*time.Millisecond); p.Served || p.Ahead != 2 || p.Blocker != a {
		t.Fatalf("c: %+v, want 2 ahead (a first)", p)
	}
	if p := request(d, frontend, 3*time.Millisecond); !p.Served {
		t.Fatalf("a ticket on another workload waits: %+v", p)
	}
	// a ends: b, which asked first, is served; c still waits behind it.
	if err := l.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	if p := request(c, backend, time.Second); p.Served || p.Blocker != b || p.Ahead != 1 {
		t.Fatalf("c after a: %+v, want 1 ahead (b)", p)
	}
	if p := request(b, backend, time.Second); !p.Served {
		t.Fatalf("b after a: %+v", p)
	}
	// b's run is gone and restored: its ticket is dropped on the way, and c is served.
	dead[b] = true
	if p := request(c, backend, 2*time.Second); !p.Served {
		t.Fatalf("c after b died: %+v", p)
	}
}

// A served ticket blocks whatever its time: a ticket numbered earlier by a skewed clock still waits.
func TestLockServedTicketBlocksAnEarlierOne(t *testing.T) {
	ctx := context.Background()
	l, _ := queue(t, nil)
	mesh := []LockKey{{Level: LockMesh}}
	ns := []LockKey{{Level: LockNamespace, Namespace: "demo"}}
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	if p, err := l.Request(ctx, NewHolder("demo", "late", "1"), fixed(mesh), t0); err != nil || !p.Served {
		t.Fatalf("%+v %v", p, err)
	}
	p, err := l.Request(ctx, NewHolder("demo", "early", "2"), fixed(ns), t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if p.Served || p.Blocker != NewHolder("demo", "late", "1") {
		t.Fatalf("a ticket from an earlier clock was served beside the holder of the mesh: %+v", p)
	}
}

// A ticket keeps its place and its keys: asking again later does not move it to the back.
func TestLockRequestKeepsItsPlace(t *testing.T) {
	ctx := context.Background()
	l, c := queue(t, nil)
	keys := []LockKey{{Level: LockNamespace, Namespace: "demo"}}
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	a, b := NewHolder("demo", "a", "1"), NewHolder("demo", "b", "2")
	for _, h := range []Holder{a, b} {
		if _, err := l.Request(ctx, h, fixed(keys), t0); err != nil {
			t.Fatal(err)
		}
	}
	if p, _ := l.Request(ctx, b, fixed(keys), t0.Add(time.Hour)); p.Served || p.Ahead != 1 {
		t.Fatalf("b: %+v", p)
	}
	lease := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "labrun-system", Name: TicketName("2")}, lease); err != nil {
		t.Fatal(err)
	}
	if got := lease.Annotations[annotationLockRequested]; got != t0.Format(time.RFC3339Nano) {
		t.Fatalf("b's ticket was renumbered: %s", got)
	}
}

func fixed(keys []LockKey) func() ([]LockKey, error) {
	return func() ([]LockKey, error) { return keys, nil }
}
