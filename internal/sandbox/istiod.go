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

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ambientlab/labrun-operator/internal/istiod"
	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// istiodPoll is how often the simulated ztunnel asks istiod for its state; the sandbox's propagation delay
// comes on top, as a push reaches ztunnel some time after istiod computed it.
const istiodPoll = 100 * time.Millisecond

// startIstiod runs the real istiod against the sandbox's API server and feeds what it computes for ztunnel
// (converted policies and their attachment to workloads) to the simulated ztunnel. It returns once istiod has
// attached the world's policies to backend.
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
	// The world is ready when istiod attached the guide's policies to backend (backend-allow-frontend-only and
	// the static strict policy).
	return wait.PollUntilContextTimeout(ctx, istiodPoll, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		a, err := s.istiod.Ambientz(ctx)
		if err != nil {
			return false, nil
		}
		for _, w := range a.Workloads {
			if w.Namespace == DemoNamespace && strings.HasPrefix(w.Name, "backend-") &&
				slices.Contains(w.AuthorizationPolicies, DemoNamespace+"/"+PolicyName) {
				return true, nil
			}
		}
		return false, nil
	})
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
