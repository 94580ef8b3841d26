package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1alpha1 "istio.io/api/meta/v1alpha1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/istiod"
	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// istiodPoll is how often the simulated ztunnel asks istiod for its state; the sandbox's propagation delay
// comes on top, as a push reaches ztunnel some time after istiod computed it.
const istiodPoll = 100 * time.Millisecond

// ztunnelAccepted is the condition istiod writes on a policy it sends ztunnel (pilot/pkg/model/service.go).
const ztunnelAccepted = "ZtunnelAccepted"

// startIstiod runs the real istiod against the sandbox's API server and feeds what it computes for ztunnel
// (converted policies and their attachment to workloads) to the simulated ztunnel. It returns once istiod has
// converted the world's policies and attached them where it attaches them (worldAttached), and written what it
// did with each AuthorizationPolicy into its status (policyStatusWritten).
func (s *Sandbox) startIstiod(ctx context.Context, progress interface{ Write([]byte) (int, error) }) error {
	dir, err := os.MkdirTemp("", "labrun-istiod-")
	if err != nil {
		return err
	}
	s.istiodDir = dir
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(kubeconfig(s.Env.Config, ""), kubeconfigPath); err != nil {
		return err
	}
	s.istiod, err = istiod.Start(ctx, istiod.Options{Root: s.Env.Root, Kubeconfig: kubeconfigPath,
		RootNamespace: RootNamespace, Progress: progress})
	if err != nil {
		return err
	}
	feedCtx, cancel := context.WithCancel(context.Background())
	s.stopFeed = cancel
	s.feedDone = make(chan struct{})
	go s.feedIstiod(feedCtx)
	var last policy.Ambientz
	err = wait.PollUntilContextTimeout(ctx, istiodPoll, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		a, err := s.istiod.Ambientz(ctx)
		if err != nil {
			return false, nil
		}
		last = a
		return worldAttached(a) == "", nil
	})
	if err != nil {
		return fmt.Errorf("waiting for istiod to attach the world's policies (%s): %w", worldAttached(last), err)
	}
	// istiod writes the status after it attached the policies; a test reading the status, or updating a policy
	// (a status write bumps its resourceVersion), must not race it.
	pending := "not read yet"
	err = wait.PollUntilContextTimeout(ctx, istiodPoll, time.Minute, true, func(ctx context.Context) (bool, error) {
		if p, err := s.policyStatusWritten(ctx); err == nil {
			pending = p
		}
		return pending == "", nil
	})
	if err != nil {
		return fmt.Errorf("waiting for istiod to write the status of the world's AuthorizationPolicies (%s): %w",
			pending, err)
	}
	return nil
}

// policyStatusWritten lists the world's AuthorizationPolicies whose status has no ZtunnelAccepted condition for
// their current generation ("" when none). istiod writes it (AMBIENT_ENABLE_STATUS, on by default with ambient;
// internal/istiod sets it) once it holds the status-writer lease in its namespace.
func (s *Sandbox) policyStatusWritten(ctx context.Context) (string, error) {
	var pending []string
	for _, o := range append([]client.Object{backendPolicy()}, shopPolicies()...) {
		if _, ok := o.(*securityv1.AuthorizationPolicy); !ok {
			continue // istiod writes no status on PeerAuthentication
		}
		ap := &securityv1.AuthorizationPolicy{}
		if err := s.Client.Get(ctx, client.ObjectKeyFromObject(o), ap); err != nil {
			return "", err
		}
		if !slices.ContainsFunc(ap.Status.GetConditions(), func(c *metav1alpha1.IstioCondition) bool {
			return c.GetType() == ztunnelAccepted && c.GetObservedGeneration() == ap.Generation
		}) {
			pending = append(pending, ap.Namespace+"/"+ap.Name)
		}
	}
	return strings.Join(pending, ", "), nil
}

// attachment is where istiod attaches policies: to every pod of app in namespace (istiod names workloads by pod).
type attachment struct {
	namespace, app string
	policies       []string // "<ns>/<name>" as ztunnel knows them
}

// worldAttachments are the world's policies where istiod attaches them (ISTIO-FACTS.md, "PeerAuthentication in
// ambient"): backend and shop's orders and payments get their AuthorizationPolicies and, under the mesh-wide
// STRICT, the static strict policy; catalog gets its PeerAuthentication's converted DENY policy instead.
func worldAttachments() []attachment {
	strict := RootNamespace + "/" + policy.StaticStrictPolicyName
	shop := func(name string) string { return ShopNamespace + "/" + name }
	return []attachment{
		{DemoNamespace, "backend", []string{DemoNamespace + "/" + PolicyName, strict}},
		{ShopNamespace, "orders", []string{shop(OrdersAllowWebPolicy), shop(OrdersDenyLegacyPolicy),
			shop(OrdersAllowGatewayPolicy), strict}},
		{ShopNamespace, "payments", []string{shop(PaymentsGetOnlyPolicy), strict}},
		{ShopNamespace, "catalog", []string{shop(ConvertedPeerAuthenticationPrefix + CatalogMetricsPermissive)}},
	}
}

// worldAttached says what istiod has yet to do for the world ("" once done): every attachment in place on every
// pod istiod lists of its app (at least one), and ghost-allow-web converted, though it attaches nowhere.
func worldAttached(a policy.Ambientz) string {
	var missing []string
	for _, at := range worldAttachments() {
		pods := 0
		for _, w := range a.Workloads {
			if w.Namespace != at.namespace || !strings.HasPrefix(w.Name, at.app+"-") {
				continue
			}
			pods++
			for _, p := range at.policies {
				if !slices.Contains(w.AuthorizationPolicies, p) {
					missing = append(missing, p+" on "+w.Namespace+"/"+w.Name)
				}
			}
		}
		if pods == 0 {
			missing = append(missing, "no workload "+at.namespace+"/"+at.app)
		}
	}
	if !slices.ContainsFunc(a.Policies, func(p policy.Authorization) bool {
		return p.Namespace == ShopNamespace && p.Name == GhostAllowWebPolicy
	}) {
		missing = append(missing, "policy "+ShopNamespace+"/"+GhostAllowWebPolicy+" not converted")
	}
	return strings.Join(missing, ", ")
}

// feedIstiod polls istiod and pushes every change of its ztunnel state to the simulated ztunnel.
func (s *Sandbox) feedIstiod(ctx context.Context) {
	defer close(s.feedDone)
	var last []byte
	for {
		if a, err := s.istiod.Ambientz(ctx); err == nil {
			slices.SortFunc(a.Workloads, func(x, y policy.AmbientWorkload) int {
				return strings.Compare(x.Namespace+"/"+x.Name, y.Namespace+"/"+y.Name)
			})
			slices.SortFunc(a.Policies, func(x, y policy.Authorization) int {
				return strings.Compare(x.Namespace+"/"+x.Name, y.Namespace+"/"+y.Name)
			})
			if raw, err := json.Marshal(a); err == nil && !bytes.Equal(raw, last) {
				last = raw
				s.Dataplane.SetEnforcer(policy.NewZtunnel(a))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(istiodPoll):
		}
	}
}

// stopIstiod stops the feed and istiod, and removes its files.
func (s *Sandbox) stopIstiod() error {
	var err error
	if s.stopFeed != nil {
		s.stopFeed()
		<-s.feedDone
	}
	if s.istiod != nil {
		if e := s.istiod.Stop(); e != nil {
			err = fmt.Errorf("stopping istiod: %w", e)
		}
	}
	if s.istiodDir != "" {
		_ = os.RemoveAll(s.istiodDir)
	}
	return err
}
