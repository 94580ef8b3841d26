// Package sandbox is a simulated ambient node: a real kube-apiserver and etcd, the lab guide's world, a node
// agent standing in for kubelet, and a simulated ztunnel that enforces the live PeerAuthentication and
// AuthorizationPolicy objects with Istio's rules and writes ztunnel-format access logs, served through the
// kubelet API so `kubectl logs` works. It is a simulator: the same controller runs against a real cluster.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/istiod"
	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox/kubelet"
	labscheme "github.com/ambientlab/labrun-operator/internal/scheme"
)

// Options tune the sandbox.
type Options struct {
	// PropagationDelay is how long a policy change takes to reach the simulated ztunnel (default 500ms;
	// negative means none).
	PropagationDelay time.Duration
	// PodStartLatency is how long a pod takes from creation to Running.
	PodStartLatency time.Duration
	// Nodes is the number of simulated nodes (default 3, as in the guide's comparison).
	Nodes int
	// Replicas is the number of backend pods (default 1), on the nodes from the second on, round robin.
	Replicas int
	// ProbeImages are the images the manager may start probe pods with (config/admission's parameter);
	// default the in-process manager's (labrun-operator:sandbox) and the manager binary's default.
	ProbeImages []string
	// Progress receives progress messages (the first control-plane build takes minutes).
	Progress io.Writer
	// Install, when set, installs the operator's namespace, ServiceAccount, RBAC and admission policies instead
	// of config/default (e.g. a Helm chart's rendered output); the sandbox then waits, as after config/default,
	// until the admission policies are enforced for the manager's ServiceAccount (ManagerUser). ProbeImages is
	// then the installer's business. c and cfg are the admin's.
	Install func(ctx context.Context, c client.Client, cfg *rest.Config) error
}

// Sandbox is a running simulated cluster.
type Sandbox struct {
	Env       *controlplane.Env
	Client    client.WithWatch
	Dataplane *dataplane.Dataplane
	Logs      *kubelet.LogStore
	Nodes     []string
	// Replicas is the number of backend pods of the world.
	Replicas int

	kubelet   *kubelet.Server
	agent     *nodeAgent
	istiod    *istiod.Istiod
	istiodDir string
	stopFeed  context.CancelFunc
	feedDone  chan struct{}
	cancel    context.CancelFunc
	done      chan error
	stopMu    sync.Once
}

// Start brings the sandbox up: control plane, nodes, world, node agent and simulated ztunnel. It returns once
// the world's pods (frontend, backend, shop's apps, a ztunnel per node) are Ready.
func Start(ctx context.Context, o Options) (*Sandbox, error) {
	o = withDefaults(o)
	env, err := controlplane.Start(controlplane.Options{Progress: o.Progress})
	if err != nil {
		return nil, err
	}
	s := &Sandbox{Env: env, Logs: kubelet.NewLogStore(), done: make(chan error, 1)}
	if err := s.start(ctx, o); err != nil {
		_ = s.Stop() // leaves no control-plane process or etcd data behind; the cause is err
		return nil, err
	}
	return s, nil
}

// start brings up everything on the control plane, in order; Stop undoes what it got to.
func (s *Sandbox) start(ctx context.Context, o Options) error {
	scheme, err := labscheme.New()
	if err != nil {
		return err
	}
	if s.Client, err = client.NewWithWatch(s.Env.Config, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if err := s.startKubelet(ctx, o.Nodes); err != nil {
		return err
	}
	s.Dataplane, err = dataplane.New(dataplane.Options{
		PropagationDelay: o.PropagationDelay,
		Log: func(node, line string) {
			s.Logs.Append(RootNamespace, ztunnelPodName(node), ztunnelContainer, line)
		},
	})
	if err != nil {
		return err
	}
	s.Replicas = o.Replicas
	if err := seedWorld(ctx, s.Client, s.Nodes, s.Replicas); err != nil {
		return err
	}
	install := o.Install
	if install == nil {
		install = func(ctx context.Context, c client.Client, _ *rest.Config) error {
			return installDefault(ctx, c, s.Env.Root, o.ProbeImages)
		}
	}
	if err := install(ctx, s.Client, s.Env.Config); err != nil {
		return err
	}
	manager, err := client.New(s.ManagerConfig(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := waitForAdmission(ctx, s.Client, manager); err != nil {
		return fmt.Errorf("waiting for the admission policies to take effect: %w", err)
	}
	if err := s.startAgent(o); err != nil {
		return err
	}
	if err := s.startIstiod(ctx, o.Progress); err != nil {
		return err
	}
	return s.WaitForWorld(ctx)
}

// WaitForWorld returns once every pod of the world (frontend, backend, shop's apps, a ztunnel per node) is Ready:
// what a run's preflight expects. It gives up after the pod start latency, 30s and a quarter second per pod more
// (the node agent starts a few pods a second: 300 nodes' ztunnels take about 40s), naming the pods not Ready.
func (s *Sandbox) WaitForWorld(ctx context.Context) error {
	var keys []client.ObjectKey
	for _, p := range worldPods(s.Nodes, s.Replicas) {
		keys = append(keys, client.ObjectKeyFromObject(p))
	}
	bound := time.Duration(s.agent.startDelay.Load()) + 30*time.Second + time.Duration(len(keys))*250*time.Millisecond
	if err := waitForPodsReady(ctx, s.Client, keys, bound); err != nil {
		return fmt.Errorf("waiting for the world's pods: %w", err)
	}
	return nil
}

func withDefaults(o Options) Options {
	if o.PropagationDelay == 0 {
		o.PropagationDelay = 500 * time.Millisecond
	}
	if o.PropagationDelay < 0 {
		o.PropagationDelay = 0
	}
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if len(o.ProbeImages) == 0 {
		o.ProbeImages = []string{SandboxProbeImage, "controller:latest"}
	}
	return o
}

// startKubelet serves the kubelet API on loopback and registers the nodes with it, so the API server fetches
// container logs from it.
func (s *Sandbox) startKubelet(ctx context.Context, nodes int) error {
	s.kubelet = kubelet.NewServer(s.Logs)
	if err := s.kubelet.Start(); err != nil {
		return fmt.Errorf("starting the kubelet API: %w", err)
	}
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("node-%d", i)
		if err := registerNode(ctx, s.Client, name, s.kubelet.Port()); err != nil {
			return err
		}
		s.Nodes = append(s.Nodes, name)
	}
	return nil
}

func registerNode(ctx context.Context, c client.Client, name string, port int) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
	}}}
	if err := c.Create(ctx, node); err != nil {
		return fmt.Errorf("registering node %s: %w", name, err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		// Only an InternalIP: the API server prefers a Hostname address, which would not resolve here.
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", Message: "simulated node agent is posting ready status",
			LastHeartbeatTime: now, LastTransitionTime: now}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-sandbox", OperatingSystem: "linux", Architecture: "amd64"},
	}
	if err := c.Status().Update(ctx, node); err != nil {
		return fmt.Errorf("posting status of node %s: %w", name, err)
	}
	// The API server taints a new node not-ready (TaintNodesByCondition); the node lifecycle controller, which the
	// sandbox stands in for, lifts the taint once the node reports Ready.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return err
		}
		node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == corev1.TaintNodeNotReady
		})
		return c.Update(ctx, node)
	})
}

// startAgent runs the node agent and the ztunnel feed in their own manager.
func (s *Sandbox) startAgent(o Options) error {
	scheme, _ := labscheme.New()
	skip := true
	mgr, err := ctrl.NewManager(s.Env.Config, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: &skip, MaxConcurrentReconciles: 4},
		Cache:      armCacheOptions(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		if s.cancel == nil {
			cancel() // the manager never started: Stop must not wait for it to end
		}
	}()
	s.agent = &nodeAgent{Client: mgr.GetClient(), dp: s.Dataplane, nodes: s.Nodes,
		ips: map[types.UID]podAddr{}, byName: map[types.NamespacedName]types.UID{}, used: map[string]map[int]bool{}, nextIP: map[string]int{}, running: map[string]context.CancelFunc{}, ctx: ctx,
		logs: s.Logs, arms: newArms()}
	s.agent.startDelay.Store(int64(o.PodStartLatency))
	if err := s.agent.arms.watch(ctx, mgr.GetCache()); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("sandbox-node-agent").For(&corev1.Pod{}).Complete(s.agent); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("sandbox-namespaces").For(&corev1.Namespace{}).
		Complete(&namespaceFinalizer{Client: mgr.GetClient()}); err != nil {
		return err
	}
	if err := (&feeder{Client: mgr.GetClient(), dp: s.Dataplane}).setup(mgr); err != nil {
		return err
	}
	s.cancel = cancel
	go func() { s.done <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return errors.New("the node agent's cache did not sync")
	}
	return nil
}

// Stop shuts everything down: agent, kubelet API, data plane, control plane (its etcd data is removed).
func (s *Sandbox) Stop() error {
	var errs []error
	s.stopMu.Do(func() {
		if s.cancel != nil {
			s.cancel()
			if err := <-s.done; err != nil {
				errs = append(errs, err)
			}
			s.agent.wait()
		}
		errs = append(errs, s.stopIstiod())
		if s.kubelet != nil {
			errs = append(errs, s.kubelet.Close())
		}
		if s.Dataplane != nil {
			errs = append(errs, s.Dataplane.Close())
		}
		errs = append(errs, s.Env.Stop())
	})
	return errors.Join(errs...)
}

// SetPodStartLatency changes how long pods created from now on take to start (tests use it to make a probe pod
// miss its deadline).
func (s *Sandbox) SetPodStartLatency(d time.Duration) { s.agent.startDelay.Store(int64(d)) }
