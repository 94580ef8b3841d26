package operator_test

// These tests scrape the manager's metrics the way Prometheus does on a cluster: over HTTPS with a
// ServiceAccount's bearer token, which the manager checks with the API server (TokenReview, then a
// SubjectAccessReview for GET /metrics) under its own ServiceAccount. So they prove both config/rbac's
// metrics-reader role (the scraper's side) and its metrics-auth role (the manager's side).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator"
)

const (
	// metricsReaderRole and metricsAuthBinding are config/rbac's objects as config/default names them.
	metricsReaderRole  = "labrun-metrics-reader"
	metricsAuthBinding = "labrun-metrics-auth-rolebinding"
	scrapersNamespace  = "monitoring"
)

// scrapers are two ServiceAccounts with API-server-issued tokens: reader is bound to the metrics-reader
// ClusterRole, stranger to nothing.
type scrapers struct{ reader, stranger string }

var theScrapers *scrapers

// scraperTokens creates, once for the package, the scrapers' namespace, ServiceAccounts, tokens (TokenRequest
// API) and the reader's ClusterRoleBinding, and waits until the API server's authorizer lets the reader GET
// /metrics, so the manager's authorizer never caches an early denial.
func scraperTokens(t *testing.T) *scrapers {
	t.Helper()
	if theScrapers != nil {
		return theScrapers
	}
	ctx := context.Background()
	g := NewWithT(t)
	g.Expect(client.IgnoreAlreadyExists(sb.Client.Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: scrapersNamespace}}))).To(Succeed())
	s := &scrapers{reader: serviceAccountToken(t, "prometheus"), stranger: serviceAccountToken(t, "stranger")}
	g.Expect(sb.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-labrun-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: scrapersNamespace, Name: "prometheus"}},
	})).To(Succeed(), "binding the scraper to %s (config/rbac/metrics_reader_role.yaml)", metricsReaderRole)
	g.Eventually(func() (bool, error) {
		return allowed(ctx, "system:serviceaccount:"+scrapersNamespace+":prometheus",
			authorizationv1.SubjectAccessReviewSpec{NonResourceAttributes: &authorizationv1.NonResourceAttributes{
				Path: "/metrics", Verb: "get"}})
	}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(BeTrue(),
		"the ClusterRole %s lets its subjects GET /metrics", metricsReaderRole)
	theScrapers = s
	return s
}

// serviceAccountToken creates a ServiceAccount in the scrapers' namespace and returns a token the API server
// issued for it, as a kubelet mounts into Prometheus's pod.
func serviceAccountToken(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(sb.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: scrapersNamespace, Name: name}}
	if err := sb.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating ServiceAccount %s/%s: %v", scrapersNamespace, name, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(scrapersNamespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for ServiceAccount %s/%s: %v", scrapersNamespace, name, err)
	}
	return tr.Status.Token
}

// allowed asks the API server's authorizer whether user (a ServiceAccount) may do what spec says.
func allowed(ctx context.Context, user string, spec authorizationv1.SubjectAccessReviewSpec) (bool, error) {
	spec.User = user
	spec.Groups = []string{"system:serviceaccounts", "system:authenticated"}
	sar := &authorizationv1.SubjectAccessReview{Spec: spec}
	if err := sb.Client.Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}

// freePort is a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSecureMetrics starts a manager serving secure metrics and returns the address of its endpoint.
func startSecureMetrics(t *testing.T) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startManager(t, operator.Options{MetricsAddr: addr, MetricsSecure: true})
	return addr
}

type scrape struct {
	code int
	body string
}

// scraper is an HTTPS client that accepts the manager's self-signed certificate, as the shipped ServiceMonitor
// does (insecureSkipVerify).
func scraper(t *testing.T) *http.Client {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the endpoint's certificate is self-signed
	}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// get scrapes url with token as the bearer token ("" sends none).
func get(c *http.Client, url, token string) (scrape, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return scrape{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return scrape{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return scrape{code: resp.StatusCode, body: string(b)}, err
}

// waitServing waits until the endpoint answers at all (an anonymous request), so later requests meet a running
// server and each assertion is about one request.
func waitServing(t *testing.T, c *http.Client, url string) {
	t.Helper()
	NewWithT(t).Eventually(func() error { _, err := get(c, url, ""); return err }).
		WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
}

// TestSecureMetrics: the endpoint speaks only HTTPS, refuses a request without a token (401), with a token the API
// server did not issue (500, see below) or of an identity without the metrics-reader role (403), and serves the
// operator's metrics to a token bound to that role.
func TestSecureMetrics(t *testing.T) {
	s := scraperTokens(t)
	addr := startSecureMetrics(t)
	c, url := scraper(t), "https://"+addr+"/metrics"
	waitServing(t, c, url)

	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"no token", "", http.StatusUnauthorized},
		// controller-runtime's filter answers 500 when the TokenReview comes back with an error, which the API
		// server sets for a token it cannot parse; either way nothing is served.
		{"a token the API server did not issue", "not-a-token", http.StatusInternalServerError},
		{"a ServiceAccount without the metrics-reader role", s.stranger, http.StatusForbidden},
		{"a ServiceAccount bound to the metrics-reader role", s.reader, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := get(c, url, tc.token)
			g := NewWithT(t)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.code).To(Equal(tc.code), got.body)
			if tc.code == http.StatusOK {
				g.Expect(got.body).To(ContainSubstring("# TYPE labrun_mesh_unreadable_records gauge"))
				g.Expect(got.body).To(ContainSubstring("controller_runtime_reconcile_total"))
			} else {
				g.Expect(got.body).NotTo(ContainSubstring("labrun_"))
			}
		})
	}

	t.Run("plain HTTP", func(t *testing.T) {
		// The listener is TLS-only: a plain request fails its handshake and the connection is dropped.
		got, err := get(&http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/metrics", s.reader)
		NewWithT(t).Expect(err).To(HaveOccurred(), "answered %d: %s", got.code, got.body)
	})
}

// TestSecureMetricsNeedTheManagersReviewRights removes config/rbac's metrics-auth binding: the manager can then
// check no token, and serves nothing even to a permitted scraper. It shows the manager reviews tokens under its own
// ServiceAccount, and that metrics_auth_role.yaml is what makes the endpoint work.
func TestSecureMetricsNeedTheManagersReviewRights(t *testing.T) {
	s := scraperTokens(t)
	ctx := context.Background()
	g := NewWithT(t)
	binding := &rbacv1.ClusterRoleBinding{}
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Name: metricsAuthBinding}, binding)).To(Succeed(),
		"config/default installs ClusterRoleBinding %s", metricsAuthBinding)
	g.Expect(sb.Client.Delete(ctx, binding)).To(Succeed())
	t.Cleanup(func() { restoreBinding(t, binding) })
	waitManagerMayReview(t, false)

	addr := startSecureMetrics(t)
	c, url := scraper(t), "https://"+addr+"/metrics"
	waitServing(t, c, url)
	got, err := get(c, url, s.reader)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.code).To(Equal(http.StatusInternalServerError), got.body)
	g.Expect(got.body).To(ContainSubstring("Authentication failed"))
}

// waitManagerMayReview waits until the API server's authorizer agrees the manager may (or may not) create
// TokenReviews.
func waitManagerMayReview(t *testing.T, want bool) {
	t.Helper()
	NewWithT(t).Eventually(func() (bool, error) {
		return allowed(context.Background(), sandbox.ManagerUser, authorizationv1.SubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"}})
	}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(Equal(want),
		"the manager may create TokenReviews")
}

// restoreBinding puts config/default's binding back as it was.
func restoreBinding(t *testing.T, b *rbacv1.ClusterRoleBinding) {
	t.Helper()
	restored := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: b.Name, Labels: b.Labels, Annotations: b.Annotations},
		RoleRef:    b.RoleRef, Subjects: b.Subjects,
	}
	if err := sb.Client.Create(context.Background(), restored); err != nil {
		t.Errorf("restoring ClusterRoleBinding %s: %v", b.Name, err)
		return
	}
	waitManagerMayReview(t, true)
}

// TestSecureMetricsServeTheGivenCertificate: with --metrics-cert-path (a cert-manager Secret mounted, say) the
// endpoint serves that certificate, so a scraper can verify it instead of skipping verification.
func TestSecureMetricsServeTheGivenCertificate(t *testing.T) {
	s := scraperTokens(t)
	const host = "labrun-controller-manager-metrics-service.labrun-system.svc"
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate in the generated PEM")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startManager(t, operator.Options{MetricsAddr: addr, MetricsSecure: true, MetricsCertDir: dir})
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host}}}
	t.Cleanup(c.CloseIdleConnections)
	url := "https://" + addr + "/metrics"
	waitServing(t, c, url) // fails with a certificate error if another certificate is served
	got, err := get(c, url, s.reader)
	g := NewWithT(t)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.code).To(Equal(http.StatusOK), got.body)
	g.Expect(got.body).To(ContainSubstring("labrun_mesh_unreadable_records"))
}
