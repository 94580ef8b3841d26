package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// TestSandboxManagerServesMetrics is the README's metrics path in the sandbox: the manager `manager sandbox` runs
// serves /metrics over plain HTTP where --metrics-bind-address says, with the LabRun controller's series in it.
func TestSandboxManagerServesMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the sandbox")
	}
	g := NewWithT(t)
	sb, err := sandbox.Start(context.Background(), sandbox.Options{Progress: os.Stderr})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = sb.Stop() })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	addr := l.Addr().String()
	g.Expect(l.Close()).To(Succeed())
	stop, err := sandboxController(sb, sandbox.ControllerOptions{MetricsAddr: addr})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(stop)

	g.Eventually(func(g Gomega) {
		resp, err := http.Get("http://" + addr + "/metrics")
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(strings.Split(string(body), "\n")).To(ContainElement(HavePrefix(`controller_runtime_active_workers{controller="labrun"}`)))
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
}
