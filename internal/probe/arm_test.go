package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

// armScript is a LoadArm whose arm the test changes as it goes. Each change is a new version; every Attempt
// emitted is recorded with the version of the load that preceded it (load, attempt and emit run in turn on
// Observe's goroutine), so the test knows which arm each attempt was made under.
type armScript struct {
	mu       sync.Mutex
	arm      Arm
	version  int
	loads    []int // version of each load, in order
	attempts []Attempt
	under    []int // version of the arm each attempt was made under
}

func (s *armScript) load() (Arm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads = append(s.loads, s.version)
	return s.arm, nil
}

func (s *armScript) emit(a Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts = append(s.attempts, a)
	s.under = append(s.under, s.loads[len(s.loads)-1])
}

// set makes arm the current one and returns its version.
func (s *armScript) set(arm Arm) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arm = arm
	s.version++
	return s.version
}

// loadsOf counts the loads that saw version v.
func (s *armScript) loadsOf(v int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.loads {
		if l == v {
			n++
		}
	}
	return n
}

// made returns the attempts made under version v.
func (s *armScript) made(v int) []Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Attempt
	for i, a := range s.attempts {
		if s.under[i] == v {
			out = append(out, a)
		}
	}
	return out
}

func (s *armScript) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.attempts)
}

// observing runs Observe with script's arm (10ms interval) until stop, which waits for it to return; stop may be
// called again.
func observing(t *testing.T, script *armScript) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Observe(ctx, Options{Observe: true, LoadArm: script.load, Timeout: time.Second, Interval: 10 * time.Millisecond},
			script.emit)
	}()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Observe did not return after its context ended")
		}
	}
}

func TestObserveFollowsItsArm(t *testing.T) {
	g := NewWithT(t)
	srvA, connsA := statusServer(t, always(http.StatusOK))
	srvB, connsB := statusServer(t, always(http.StatusOK))
	srvC, connsC := statusServer(t, always(http.StatusOK))
	a, b, c := srvA.URL+"/get", srvB.URL+"/get", srvC.URL+"/get"

	script := &armScript{}
	stop := observing(t, script)
	defer stop()

	// Idle: several loads, no attempt.
	g.Eventually(func() int { return script.loadsOf(0) }, 5*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 3))
	g.Expect(script.count()).To(BeZero(), "attempts while idle")

	both := script.set(Arm{Token: "t1", URLs: []string{a, b}, Until: time.Now().Add(time.Minute)})
	g.Eventually(func() int { return len(script.made(both)) }, 5*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 4))

	one := script.set(Arm{Token: "t1", URLs: []string{c}, Until: time.Now().Add(time.Minute)})
	g.Eventually(func() int { return len(script.made(one)) }, 5*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 3))

	expired := script.set(Arm{Token: "t1", URLs: []string{c}, Until: time.Now()})
	g.Eventually(func() int { return script.loadsOf(expired) }, 5*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 3))
	stop()

	g.Expect(script.made(0)).To(BeEmpty(), "attempts before the arm")
	g.Expect(script.made(expired)).To(BeEmpty(), "attempts after the arm expired")
	for i, at := range script.made(both) {
		want := []string{a, b}[i%2] // in turn, from the first
		g.Expect(at).To(And(HaveField("URL", want), HaveField("Arm", "t1"), HaveField("Observed", "allowed")), "attempt %d of the first arm", i)
	}
	for i, at := range script.made(one) {
		g.Expect(at).To(And(HaveField("URL", c), HaveField("Arm", "t1"), HaveField("Observed", "allowed")), "attempt %d of the second arm", i)
	}
	g.Expect(script.count()).To(Equal(len(script.made(both))+len(script.made(one))), "every attempt was made under an arm")
	g.Expect([]int32{connsA.Load(), connsB.Load(), connsC.Load()}).To(HaveEach(BeNumerically(">", 0)), "connections reached each URL")
}

func TestObserveRestartsItsTurnForANewToken(t *testing.T) {
	srvA, _ := statusServer(t, always(http.StatusOK))
	srvB, _ := statusServer(t, always(http.StatusOK))
	urls := []string{srvA.URL + "/get", srvB.URL + "/get"}
	until := time.Now().Add(time.Minute)
	loads := 0
	var got []Attempt
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	Observe(ctx, Options{Observe: true, Timeout: time.Second, Interval: time.Millisecond, Settle: 10 * time.Second,
		LoadArm: func() (Arm, error) {
			loads++
			if loads <= 3 {
				return Arm{Token: "run-1", URLs: urls, Until: until}, nil
			}
			return Arm{Token: "run-2", URLs: urls, Until: until}, nil
		}}, func(a Attempt) {
		if got = append(got, a); len(got) == 5 {
			cancel()
		}
	})
	want := []string{"run-1 " + srvA.URL, "run-1 " + srvB.URL, "run-1 " + srvA.URL, "run-2 " + srvA.URL, "run-2 " + srvB.URL}
	var called []string
	for _, a := range got {
		called = append(called, a.Arm+" "+strings.TrimSuffix(a.URL, "/get"))
	}
	if !slices.Equal(called, want) {
		t.Errorf("attempts called %q, want %q: in turn, from the first URL again for a new run", called, want)
	}
}

// writeArm replaces the arm file in one rename, as kubelet swaps a ConfigMap volume's files.
func writeArm(t *testing.T, path string, arm Arm) {
	t.Helper()
	raw, err := json.Marshal(arm)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestObserveReadsItsArmFile(t *testing.T) {
	g := NewWithT(t)
	srv, conns := statusServer(t, always(http.StatusOK))
	path := filepath.Join(t.TempDir(), ArmFileName)
	var mu sync.Mutex
	var attempts []Attempt
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Observe(ctx, Options{Observe: true, ArmFile: path, Timeout: time.Second, Interval: 10 * time.Millisecond},
			func(a Attempt) {
				mu.Lock()
				defer mu.Unlock()
				attempts = append(attempts, a)
			})
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts)
	}

	// No file yet: idle for ten intervals, not an attempt at an empty URL.
	g.Consistently(count, 100*time.Millisecond, 5*time.Millisecond).Should(BeZero())
	writeArm(t, path, Arm{Token: "t2", URLs: []string{srv.URL + "/get"}, Until: time.Now().Add(time.Minute)})
	g.Eventually(count, 5*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 2))
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	for i, a := range attempts {
		g.Expect(a).To(And(HaveField("URL", srv.URL+"/get"), HaveField("Arm", "t2"), HaveField("Observed", "allowed")), "attempt %d", i)
	}
	g.Expect(int(conns.Load())).To(BeNumerically(">=", len(attempts)))
}

func TestMainObserveReportsABadArmOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), ArmFileName)
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "termination-log")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second) // only a bound: the budget ends the run
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--observe", "--arm=" + path, "--settle=200ms", "--interval=10ms",
		"--termination-log=" + logPath}, &stdout, &stderr)
	if code != 0 || stdout.Len() != 0 {
		t.Errorf("exit status %d, stdout %q; want 0 and no attempt while the arm cannot be read", code, stdout.String())
	}
	if n := strings.Count(stderr.String(), "reading arm"); n != 1 {
		t.Errorf("stderr = %q, want the bad arm reported once", stderr.String())
	}
	checkSummary(t, logPath, 0)
}

func TestArmArgsRoundTrip(t *testing.T) {
	in := Options{Observe: true, ArmFile: ArmDir + "/" + ArmFileName, Timeout: 2 * time.Second, Settle: time.Hour,
		Interval: 100 * time.Millisecond}
	args := Args(in)
	if !slices.Contains(args, "--arm="+ArmDir+"/"+ArmFileName) || slices.ContainsFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--url")
	}) {
		t.Errorf("args = %q, want --arm and no --url", args)
	}
	got, err := ParseArgs(args)
	if err != nil {
		t.Fatalf("ParseArgs(%q): %v", args, err)
	}
	want := in
	want.Count = DefaultCount
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseArgs(Args(o)) = %+v, want %+v", got, want)
	}
	if _, err := ParseArgs(Args(Options{Observe: true, ArmFile: "/arm.json", URL: "http://a/"})); err == nil {
		t.Error("an armed observer accepted a --url too")
	}
}

func TestArmed(t *testing.T) {
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	urls := []string{"http://a/"}
	tests := []struct {
		name string
		arm  Arm
		want bool
	}{
		{"zero", Arm{}, false},
		{"no URLs", Arm{Token: "t", Until: now.Add(time.Minute)}, false},
		{"until passed", Arm{Token: "t", URLs: urls, Until: now.Add(-time.Nanosecond)}, false},
		{"until now", Arm{Token: "t", URLs: urls, Until: now}, false},
		{"armed", Arm{Token: "t", URLs: urls, Until: now.Add(time.Nanosecond)}, true},
	}
	for _, tc := range tests {
		if got := tc.arm.Armed(now); got != tc.want {
			t.Errorf("%s: Armed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestWarmObserverPod(t *testing.T) {
	g := NewWithT(t)
	o := Options{Observe: true, Timeout: 2 * time.Second, Settle: time.Hour, Interval: 100 * time.Millisecond}
	req := PodRequest{Name: "warm", Namespace: "demo", ServiceAccount: "frontend", Image: "img", Options: o,
		Arm: &ArmVolume{ConfigMap: "arms", Key: "node-1.json"}}
	pod := Pod(req)

	g.Expect(pod.Spec.Volumes).To(HaveExactElements(And(
		HaveField("Name", "arm"),
		HaveField("ConfigMap.Name", "arms"),
		HaveField("ConfigMap.Items", HaveExactElements(corev1.KeyToPath{Key: "node-1.json", Path: ArmFileName})),
		HaveField("ConfigMap.Optional", HaveValue(BeTrue())),
		HaveField("ConfigMap.DefaultMode", HaveValue(BeEquivalentTo(0o444))),
	)))
	c := pod.Spec.Containers[0]
	g.Expect(c.VolumeMounts).To(HaveExactElements(corev1.VolumeMount{Name: "arm", MountPath: ArmDir, ReadOnly: true}))
	parsed, err := ParseArgs(c.Args)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.ArmFile).To(Equal(filepath.Join(ArmDir, ArmFileName)), "args %q", c.Args)
	g.Expect(c.Args).To(ContainElement("--arm=/var/run/labrun/arm/arm.json"))

	// Otherwise the same hardened observer pod.
	req.Arm = nil
	plain := Pod(req)
	plain.Spec.Volumes, plain.Spec.Containers[0].VolumeMounts = pod.Spec.Volumes, c.VolumeMounts
	plain.Spec.Containers[0].Args = c.Args
	g.Expect(plain).To(Equal(pod))
}

// TestObserveIsPacedByItsArm: an arm's Interval paces the attempts made under it (one attempt starts at least that
// long after the one before), while an idle arm is still loaded at the observer's own, shorter, interval.
func TestObserveIsPacedByItsArm(t *testing.T) {
	g := NewWithT(t)
	srv, _ := statusServer(t, always(http.StatusOK))
	script := &armScript{}
	stop := observing(t, script)
	defer stop()
	g.Eventually(func() int { return script.loadsOf(0) }, 5*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 3))
	paced := script.set(Arm{Token: "t1", URLs: []string{srv.URL + "/get"}, Until: time.Now().Add(time.Minute),
		Interval: 150 * time.Millisecond})
	g.Eventually(func() int { return len(script.made(paced)) }, 5*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 4))
	stop()
	made := script.made(paced)
	for i := 1; i < len(made); i++ {
		g.Expect(made[i].Time.Sub(made[i-1].Time)).To(BeNumerically(">=", 150*time.Millisecond), "attempt %d", i)
	}
}
