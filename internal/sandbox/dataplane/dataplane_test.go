package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

func TestMeshClientAllowedOverHBONE(t *testing.T) {
	g := NewWithT(t)
	d, sink := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(true, true))

	code, body, err := get(d, frontend, "http://backend.demo/get?x=1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(200))
	var got getResponse
	g.Expect(json.Unmarshal([]byte(body), &got)).To(Succeed())
	g.Expect(got.URL).To(Equal("http://backend.demo/get?x=1"))
	g.Expect(got.Headers).To(HaveKeyWithValue("Host", "backend.demo"))
	g.Expect(got.Origin).To(Equal(frontendIP))

	// Lines are written when the transport closes the connection, which it
	// does on its own goroutine after the body is read.
	var out, in ztunnel.Entry
	g.Eventually(func(g Gomega) {
		out = sink.only(g, nodeA, "outbound")
		in = sink.only(g, nodeB, "inbound")
	}).WithTimeout(2 * time.Second).Should(Succeed())
	g.Expect(sink.all()).To(HaveLen(2))

	for _, e := range []ztunnel.Entry{out, in} {
		g.Expect(e.Level).To(Equal("info"))
		g.Expect(e.IsAccess()).To(BeTrue())
		g.Expect(e.Message).To(Equal("connection complete"))
		g.Expect(e.SrcIdentity()).To(Equal("spiffe://cluster.local/ns/demo/sa/frontend"))
		g.Expect(e.DstIdentity()).To(Equal("spiffe://cluster.local/ns/demo/sa/backend"))
		g.Expect(e.DstAddr()).To(Equal(backendIP + ":15008"))
		g.Expect(e.HBONEAddr()).To(Equal(backendIP + ":8080"))
		g.Expect(e.IsHBONE()).To(BeTrue())
		g.Expect(e.DstService()).To(Equal(backendService))
		g.Expect(e.Fields.Map()).To(HaveKeyWithValue("src.workload", "frontend-6d8f9"))
		g.Expect(e.Fields.Map()).To(HaveKeyWithValue("dst.workload", "backend-7f9c4"))
		g.Expect(e.Fields.Get(ztunnel.FieldSrcAddr)).To(HavePrefix(frontendIP + ":"))
		g.Expect(e.Fields.Get("duration")).To(MatchRegexp(`^\d+ms$`))
		g.Expect(e.Error()).To(BeEmpty())
		// Real bytes: the request went out, the JSON body (and headers) came back.
		g.Expect(atoi(g, e.Fields.Get("bytes_sent"))).To(BeNumerically(">", 0))
		g.Expect(atoi(g, e.Fields.Get("bytes_recv"))).To(BeNumerically(">", len(body)))
	}
}

func TestAttackerIsReset(t *testing.T) {
	g := NewWithT(t)
	d, sink := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(true, true))

	_, _, err := get(d, attacker, "http://backend.demo/get")
	g.Expect(errors.Is(err, syscall.ECONNRESET)).To(BeTrue(), "want a genuine reset, got %v", err)
	g.Expect(classify(err)).To(Equal([]any{"reset", 56}))

	// Denials are logged at once, not when the client closes.
	in := sink.only(g, nodeB, "inbound")
	g.Expect(in.Level).To(Equal("error"))
	g.Expect(in.Error()).To(Equal(errNoneAllowed))
	g.Expect(in.SrcIdentity()).To(Equal("spiffe://cluster.local/ns/demo/sa/attacker"))
	g.Expect(in.IsHBONE()).To(BeTrue())
	g.Expect(in.Fields.Map()).To(HaveKeyWithValue("bytes_sent", "0"))
	out := sink.only(g, nodeA, "outbound")
	g.Expect(out.Level).To(Equal("error"))
	g.Expect(out.Error()).To(Equal(err401))
	g.Expect(out.IsPolicyRejection()).To(BeTrue())
}

func TestPlaintextClientAgainstStrictIsReset(t *testing.T) {
	g := NewWithT(t)
	d, sink := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(true, true))

	_, _, err := get(d, plain, "http://backend.demo/get")
	g.Expect(errors.Is(err, syscall.ECONNRESET)).To(BeTrue(), "want a genuine reset, got %v", err)

	// Only the destination has a ztunnel in the path.
	g.Expect(sink.all()).To(HaveLen(1))
	in := sink.only(g, nodeB, "inbound")
	g.Expect(in.Level).To(Equal("error"))
	g.Expect(in.Error()).To(Equal(errStaticStrict))
	g.Expect(in.IsMTLS()).To(BeFalse())
	g.Expect(in.IsHBONE()).To(BeFalse())
	g.Expect(in.DstAddr()).To(Equal(backendIP + ":8080"))
	g.Expect(in.Fields.Map()).To(HaveKeyWithValue("src.workload", "curl-plain"))
}

func TestPlaintextClientAgainstPermissiveIsAllowed(t *testing.T) {
	g := NewWithT(t)
	d, sink := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(false, false))

	code, _, err := get(d, plain, "http://backend.demo.svc.cluster.local/get")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(200))

	var in ztunnel.Entry
	g.Eventually(func(g Gomega) { in = sink.only(g, nodeB, "inbound") }).WithTimeout(2 * time.Second).Should(Succeed())
	g.Expect(sink.all()).To(HaveLen(1))
	g.Expect(in.Level).To(Equal("info"))
	g.Expect(in.IsMTLS()).To(BeFalse())
	g.Expect(in.DstAddr()).To(Equal(backendIP + ":8080"))
	g.Expect(in.DstService()).To(Equal(backendService))
}

func TestMeshClientToUncapturedDestinationIsPlaintext(t *testing.T) {
	g := NewWithT(t)
	d, sink := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(true, false))

	code, _, err := get(d, frontend, "http://web.legacy/get")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(200))

	var out ztunnel.Entry
	g.Eventually(func(g Gomega) { out = sink.only(g, nodeA, "outbound") }).WithTimeout(2 * time.Second).Should(Succeed())
	g.Expect(sink.all()).To(HaveLen(1))
	g.Expect(out.IsMTLS()).To(BeFalse())
	g.Expect(out.IsHBONE()).To(BeFalse())
	g.Expect(out.DstAddr()).To(Equal(webIP + ":8080"))
}

func TestPolicyChangeTakesEffectAfterPropagationDelay(t *testing.T) {
	g := NewWithT(t)
	const delay = 300 * time.Millisecond
	const slack = 10 * time.Millisecond
	d, _ := newDataplane(t, Options{PropagationDelay: delay})
	d.SetEnforcer(istiodState(true, false))
	g.Eventually(func() bool { return has(d, staticStrictKey) }).
		WithTimeout(2 * time.Second).WithPolling(10 * time.Millisecond).Should(BeTrue())
	g.Expect(plainAllowed(d)).To(BeFalse(), "STRICT must deny the plaintext client")

	begin := time.Now()
	d.SetEnforcer(istiodState(false, false))
	// Whatever the scheduler does, the change must never show before the delay.
	allowedNow := plainAllowed(d)
	g.Expect(!allowedNow || time.Since(begin) >= delay).To(BeTrue(), "allowed before the propagation delay")

	var firstSuccess time.Duration
	g.Eventually(func() bool {
		at := time.Since(begin)
		if !plainAllowed(d) {
			return false
		}
		firstSuccess = at
		return true
	}).WithTimeout(3 * time.Second).WithPolling(20 * time.Millisecond).Should(BeTrue())
	g.Expect(firstSuccess).To(BeNumerically(">=", delay-slack))
}

// plainAllowed reports whether the uncaptured client gets through to backend.
func plainAllowed(d *Dataplane) bool {
	code, _, err := get(d, plain, "http://backend.demo/get")
	return err == nil && code == 200
}

func TestUnknownHostIsADNSFailure(t *testing.T) {
	g := NewWithT(t)
	d, sink := newDataplane(t, Options{})

	_, _, err := get(d, frontend, "http://nope.demo/get")
	var dnsErr *net.DNSError
	g.Expect(errors.As(err, &dnsErr)).To(BeTrue(), "got %v", err)
	g.Expect(dnsErr.IsNotFound).To(BeTrue())
	g.Expect(dnsErr.Name).To(Equal("nope.demo"))
	g.Expect(classify(err)).To(Equal([]any{"dns", 6}))
	g.Expect(sink.all()).To(BeEmpty())
}

func TestNothingListeningIsRefused(t *testing.T) {
	for name, url := range map[string]string{
		"unknown service port": "http://backend.demo:81/get",
		"no endpoints":         "http://empty/get",
		"unknown IP":           "http://10.99.0.1/get",
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d, sink := newDataplane(t, Options{})
			_, _, err := get(d, frontend, url)
			g.Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "got %v", err)
			g.Expect(classify(err)).To(Equal([]any{"refused", 7}))
			g.Expect(sink.all()).To(BeEmpty())
		})
	}
}

func TestBackendStatusAndNotFound(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{})

	code, _, err := get(d, frontend, "http://backend/status/503")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(503))
	code, _, err = get(d, frontend, "http://10.96.0.20/elsewhere")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(404))
}

func TestCloseStopsListenersAndGoroutines(t *testing.T) {
	g := NewWithT(t)
	before := runtime.NumGoroutine()
	d, err := New(Options{PropagationDelay: time.Hour})
	g.Expect(err).NotTo(HaveOccurred())
	d.SetSnapshot(seedSnapshot())
	d.SetEnforcer(istiodState(true, false)) // pending: Close must cancel it
	rawRequest(g, d)
	addrs := []string{d.backend.addr(), d.resetter.addr()}

	g.Expect(d.Close()).To(Succeed())
	g.Expect(runtime.NumGoroutine()).To(BeNumerically("<=", before), "goroutines left behind")
	for _, a := range addrs {
		_, err := net.Dial("tcp", a)
		g.Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "%s still open: %v", a, err)
	}
	_, err = d.Dial(context.Background(), frontend, "tcp", "backend.demo:80")
	g.Expect(errors.Is(err, ErrClosed)).To(BeTrue())
	g.Expect(d.Close()).To(Succeed())
}

// rawRequest makes one HTTP request without net/http's client, which would
// leave goroutines of its own behind for a moment.
func rawRequest(g Gomega, d *Dataplane) {
	c, err := d.Dial(context.Background(), frontend, "tcp", "backend.demo:80")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { g.Expect(c.Close()).To(Succeed()) }()
	_, err = c.Write([]byte("GET /status/204 HTTP/1.1\r\nHost: backend.demo\r\nConnection: close\r\n\r\n"))
	g.Expect(err).NotTo(HaveOccurred())
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	g.Expect(string(buf[:n])).To(HavePrefix("HTTP/1.1 204"))
}

// classify is the prober's reading of err: curl's word and exit code.
func classify(err error) []any {
	reason, exit := probe.Classify(err)
	return []any{reason, exit}
}

func atoi(g Gomega, s string) int {
	n, err := strconv.Atoi(s)
	g.Expect(err).NotTo(HaveOccurred())
	return n
}

func TestProberReadsOutcomesAsCurl(t *testing.T) {
	g := NewWithT(t)
	d, _ := newDataplane(t, Options{})
	d.SetEnforcer(istiodState(true, true))
	run := func(src Workload, expect probe.Expectation) probe.Result {
		return probe.Run(context.Background(), probe.Options{
			URL: "http://backend.demo/get", Expect: expect, Timeout: 2 * time.Second,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.Dial(ctx, src, network, addr)
			},
		})
	}

	allowed := run(frontend, probe.ExpectAllowed)
	g.Expect(allowed.Matched).To(BeTrue(), "%+v", allowed)
	g.Expect(allowed.HTTPCode).To(Equal(200))
	denied := run(attacker, probe.ExpectDenied)
	g.Expect(denied.Matched).To(BeTrue(), "%+v", denied)
	g.Expect([]any{denied.HTTPCode, denied.ExitCode, denied.Reason}).To(Equal([]any{0, 56, "reset"}))
}
