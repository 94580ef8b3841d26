package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

const (
	frontendID = "spiffe://cluster.local/ns/demo/sa/frontend"
	backendID  = "spiffe://cluster.local/ns/demo/sa/backend"
	backendURL = "http://backend.demo.svc:80/get"
)

// TestZtunnelLogsThroughAPIServer runs a probe as frontend, then reads the ztunnel pods' logs the way
// `kubectl logs -n istio-system -l app=ztunnel` does: through the API server's pods/log, which asks the
// simulated kubelet.
func TestZtunnelLogsThroughAPIServer(t *testing.T) {
	g := NewWithT(t)
	waitForMesh(t)
	pod := newProbePod(sandbox.DemoNamespace, "frontend", probe.Options{
		URL: backendURL, Expect: probe.ExpectAllowed, Timeout: 2 * time.Second, Settle: 5 * time.Second,
	})
	res := runProbe(t, pod)
	g.Expect(res.Observed).To(Equal(string(probe.ExpectAllowed)), "%+v", res)
	g.Expect(res.Matched).To(BeTrue())
	g.Expect(res.HTTPCode).To(Equal(200))
	g.Expect(res.ExitCode).To(Equal(0))

	var outbound, inbound ztunnel.Entry
	g.Eventually(func(g Gomega) {
		entries := ztunnelLogs(g, t.Context())
		outbound, inbound = ztunnel.Entry{}, ztunnel.Entry{}
		for _, e := range entries {
			if e.Message != "connection complete" || e.Fields.Get("src.workload") != pod.Name {
				continue
			}
			switch e.Direction() {
			case "outbound":
				outbound = e
			case "inbound":
				inbound = e
			}
		}
		g.Expect(outbound.Fields).NotTo(BeEmpty(), "no outbound connection complete line for %s", pod.Name)
		g.Expect(inbound.Fields).NotTo(BeEmpty(), "no inbound connection complete line for %s", pod.Name)
	}, waitFor, pollFor).Should(Succeed())

	g.Expect(outbound.Scope).To(Equal("access"))
	g.Expect(outbound.Level).To(Equal("info"))
	g.Expect(outbound.SrcIdentity()).To(Equal(frontendID))
	g.Expect(outbound.Error()).To(BeEmpty())

	g.Expect(inbound.Level).To(Equal("info"))
	g.Expect(inbound.SrcIdentity()).To(Equal(frontendID))
	g.Expect(inbound.DstIdentity()).To(Equal(backendID))
	g.Expect(inbound.DstAddr()).To(HaveSuffix(":15008"))
	g.Expect(inbound.HBONEAddr()).To(HaveSuffix(":80"))
	g.Expect(inbound.IsHBONE()).To(BeTrue())
	g.Expect(inbound.Error()).To(BeEmpty())

	t.Run("kubectl logs", func(t *testing.T) {
		kubectl := "/usr/bin/kubectl"
		if _, err := os.Stat(kubectl); err != nil {
			t.Skip("kubectl is not installed")
		}
		g := NewWithT(t)
		dir := t.TempDir()
		kubeconfig := filepath.Join(dir, "kubeconfig")
		g.Expect(writeKubeconfig(kubeconfig)).To(Succeed())
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(dir, "cache"),
			"logs", "-n", "istio-system", "-l", "app=ztunnel", "--tail=50")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		g.Expect(cmd.Run()).To(Succeed(), "kubectl: %s", stderr.String())
		g.Expect(stdout.String()).To(ContainSubstring("connection complete"))
		g.Expect(stdout.String()).To(ContainSubstring(frontendID))
		g.Expect(stdout.String()).To(ContainSubstring(fmt.Sprintf("src.workload=%q", pod.Name)))
	})
}

// ztunnelLogs reads every ztunnel pod's log through the API server and parses it.
func ztunnelLogs(g Gomega, ctx context.Context) []ztunnel.Entry {
	cs, err := kubernetes.NewForConfig(sb.Env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	pods := &corev1.PodList{}
	g.Expect(sb.Client.List(ctx, pods, client.InNamespace(sandbox.RootNamespace),
		client.MatchingLabels{"app": "ztunnel"})).To(Succeed())
	g.Expect(pods.Items).NotTo(BeEmpty())
	var all []ztunnel.Entry
	for _, p := range pods.Items {
		raw, err := cs.CoreV1().Pods(sandbox.RootNamespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		g.Expect(err).NotTo(HaveOccurred(), "logs of %s", p.Name)
		entries, err := ztunnel.Parse(strings.NewReader(string(raw)))
		g.Expect(err).NotTo(HaveOccurred())
		all = append(all, entries...)
	}
	return all
}

// writeKubeconfig writes an admin kubeconfig for the sandbox's API server.
func writeKubeconfig(path string) error {
	c := sb.Env.Config
	const name = "sandbox-test"
	return clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{name: {Server: c.Host, CertificateAuthorityData: c.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{name: {ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}},
		Contexts:       map[string]*clientcmdapi.Context{name: {Cluster: name, AuthInfo: name}},
		CurrentContext: name,
	}, path)
}
