package sandbox

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A node hands out addresses from its /24 and takes them back when pods go: far more pods than a /24 holds may
// come and go (100 runs at once make hundreds of observers a node), and no two live pods share an address.
func TestPodIPsAreReusedAndNeverShared(t *testing.T) {
	a := &nodeAgent{nodes: []string{"node-1", "node-2"}, ips: map[types.UID]podAddr{},
		byName: map[types.NamespacedName]types.UID{}, used: map[string]map[int]bool{}, nextIP: map[string]int{}}
	pod := func(i int) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: fmt.Sprintf("p-%d", i),
			UID: types.UID(fmt.Sprintf("uid-%d", i))}, Spec: corev1.PodSpec{NodeName: "node-2"}}
	}
	live := map[string]int{} // IP → pod
	var window []*corev1.Pod
	for i := range 1000 {
		p := pod(i)
		ip := a.podIP(p)
		addr, err := netip.ParseAddr(ip)
		if err != nil || !netip.MustParsePrefix("10.244.2.0/24").Contains(addr) {
			t.Fatalf("pod %d got %q: not an address of node-2's 10.244.2.0/24", i, ip)
		}
		if other, ok := live[ip]; ok {
			t.Fatalf("pod %d got %s, which live pod %d has", i, ip, other)
		}
		if again := a.podIP(p); again != ip {
			t.Fatalf("pod %d asked again got %s, had %s", i, again, ip)
		}
		live[ip] = i
		window = append(window, p)
		if len(window) > 110 { // a node's pod capacity: the oldest pod goes
			gone := window[0]
			window = window[1:]
			delete(live, a.podIP(gone))
			if i%2 == 0 {
				a.releaseIP(client.ObjectKeyFromObject(gone), gone.UID) // its deletion confirmed
			} else {
				a.releaseIP(client.ObjectKeyFromObject(gone), "") // found gone
			}
		}
	}
}

// A fleet of more than 255 nodes: every node's pods get addresses of a /24 of its own, valid ones.
func TestNodeRangesAreValidPastTheTwoHundredFiftyFifthNode(t *testing.T) {
	seen := map[string]bool{}
	for idx := range 600 {
		r := nodeRange(idx)
		prefix, err := netip.ParsePrefix(r + "0/24")
		if err != nil || seen[r] {
			t.Fatalf("node %d: range %q (valid: %v, seen before: %v)", idx+1, r, err == nil, seen[r])
		}
		seen[r] = true
		if !netip.MustParsePrefix("10.0.0.0/8").Contains(prefix.Addr()) {
			t.Errorf("node %d: %s is outside 10.0.0.0/8", idx+1, prefix)
		}
	}
	if got := nodeRange(1); got != "10.244.2." {
		t.Errorf("node-2's range is %q, want 10.244.2.", got)
	}
}
