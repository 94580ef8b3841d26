package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox/kubelet"
)

// nodeAgent stands in for kubelet on the simulated nodes: it binds unscheduled pods, marks pods Running and
// Ready with pod IPs, runs probe pods' prober in-process through the simulated ztunnel, writes their terminated
// status as kubelet does, and confirms pod deletions.
type nodeAgent struct {
	client.Client
	dp         *dataplane.Dataplane
	nodes      []string
	startDelay atomic.Int64 // time.Duration: how long a pod takes to start

	mu      sync.Mutex
	ips     map[types.UID]podAddr              // pod UID → its node and host number
	byName  map[types.NamespacedName]types.UID // pod → UID, to free an IP whose pod went unseen
	used    map[string]map[int]bool            // node → host numbers in use
	nextIP  map[string]int                     // node → last host number handed out
	running map[string]context.CancelFunc      // probe pod UID → cancel of its prober
	logs    *kubelet.LogStore
	arms    *arms // what warm observers' arm volumes hold
	wg      sync.WaitGroup
	ctx     context.Context
}

// Reconcile moves one pod along its lifecycle.
func (a *nodeAgent) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pod := &corev1.Pod{}
	if err := a.Get(ctx, req.NamespacedName, pod); err != nil {
		if apierrors.IsNotFound(err) {
			a.releaseIP(req.NamespacedName, "")
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	switch {
	case !pod.DeletionTimestamp.IsZero():
		return ctrl.Result{}, a.confirmDeletion(ctx, pod)
	case pod.Spec.NodeName == "":
		bound, err := a.bind(ctx, pod)
		if err == nil && !bound {
			return ctrl.Result{RequeueAfter: time.Second}, nil // unschedulable: the scheduler retries too
		}
		return ctrl.Result{}, err
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return ctrl.Result{}, nil
	case pod.Status.Phase == corev1.PodRunning && !isProbe(pod):
		return ctrl.Result{}, nil
	}
	if wait := time.Duration(a.startDelay.Load()) - time.Since(pod.CreationTimestamp.Time); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil // simulated pod start latency, a setting of the sandbox
	}
	if img := unpullable(pod); img != "" {
		return ctrl.Result{}, a.markPullFailure(ctx, pod, img)
	}
	if pod.Status.Phase != corev1.PodRunning {
		if taint, err := a.untolerated(ctx, pod.Spec.NodeName, pod, corev1.TaintEffectNoExecute); err != nil || taint != nil {
			if err != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{}, a.reject(ctx, pod, taint)
		}
		if err := a.markRunning(ctx, pod); err != nil {
			return ctrl.Result{}, err
		}
	}
	if isProbe(pod) {
		a.startProbe(pod)
	}
	return ctrl.Result{}, nil
}

// unpullable returns an image whose registry is under the reserved .invalid TLD: no kubelet could pull it.
func unpullable(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		host, _, found := strings.Cut(c.Image, "/")
		if found && strings.HasSuffix(strings.Split(host, ":")[0], ".invalid") {
			return c.Image
		}
	}
	return ""
}

// markPullFailure writes what kubelet reports when an image cannot be pulled.
func (a *nodeAgent) markPullFailure(ctx context.Context, pod *corev1.Pod, image string) error {
	if len(pod.Status.ContainerStatuses) > 0 && pod.Status.ContainerStatuses[0].State.Waiting != nil {
		return nil
	}
	return a.updateStatus(ctx, pod, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = nil
		for _, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
					Reason: "ErrImagePull", Message: fmt.Sprintf("failed to pull image %q: no such host", image),
				}},
			})
		}
	})
}

func isProbe(pod *corev1.Pod) bool { return pod.Labels[labsv1.LabelProbe] == "true" }

// untolerated is the first of the node's taints with one of effects that the pod does not tolerate, or nil.
func (a *nodeAgent) untolerated(ctx context.Context, node string, pod *corev1.Pod, effects ...corev1.TaintEffect) (*corev1.Taint, error) {
	n := &corev1.Node{}
	if err := a.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		return nil, fmt.Errorf("reading node %s: %w", node, err)
	}
	for i := range n.Spec.Taints {
		t := &n.Spec.Taints[i]
		if !slices.Contains(effects, t.Effect) {
			continue
		}
		if !slices.ContainsFunc(pod.Spec.Tolerations, func(tol corev1.Toleration) bool { return tol.ToleratesTaint(logr.Discard(), t, false) }) {
			return t, nil
		}
	}
	return nil, nil
}

// reject is kubelet's admission refusing a pod bound to a node whose NoExecute taint it does not tolerate: kubelet
// checks only NoExecute taints (pkg/kubelet/lifecycle/predicate.go), since NoSchedule is the scheduler's, which a
// pod with spec.nodeName bypasses. The pod fails for good, as kubelet's rejectPod leaves it.
func (a *nodeAgent) reject(ctx context.Context, pod *corev1.Pod, taint *corev1.Taint) error {
	return a.updateStatus(ctx, pod, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		p.Status.Reason = "TaintToleration"
		p.Status.Message = fmt.Sprintf("Pod was rejected: Predicate TaintToleration failed: node(s) had untolerated taint {%s: %s}",
			taint.Key, taint.Value)
	})
}

// bind schedules the pod as the scheduler would, through the binding subresource: on a node whose NoSchedule and
// NoExecute taints it tolerates (the scheduler's TaintToleration filter), picked by a hash of its name.
// It tells whether it bound the pod: an unschedulable pod stays Pending.
func (a *nodeAgent) bind(ctx context.Context, pod *corev1.Pod) (bool, error) {
	var fit []string
	for _, n := range a.nodes {
		taint, err := a.untolerated(ctx, n, pod, corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute)
		if err != nil {
			return false, err
		}
		if taint == nil {
			fit = append(fit, n)
		}
	}
	if len(fit) == 0 {
		return false, nil
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(pod.Namespace + "/" + pod.Name))
	node := fit[int(h.Sum32())%len(fit)]
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	if err := a.SubResource("binding").Create(ctx, pod, binding); err != nil && !apierrors.IsConflict(err) {
		return false, fmt.Errorf("binding pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return true, nil
}

// confirmDeletion is kubelet's part of a graceful delete: stop the containers, then remove the pod for good.
func (a *nodeAgent) confirmDeletion(ctx context.Context, pod *corev1.Pod) error {
	a.mu.Lock()
	if cancel := a.running[string(pod.UID)]; cancel != nil {
		cancel()
	}
	a.mu.Unlock()
	err := a.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &pod.UID})
	if err == nil || apierrors.IsNotFound(err) {
		a.releaseIP(client.ObjectKeyFromObject(pod), pod.UID)
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// podAddr is a pod's address on its node's /24: the n-th node's is the n-th /24 from 10.244.1.0 (node 255's is
// 10.244.255.0/24, node 256's 10.245.0.0/24).
type podAddr struct {
	node string
	host int
}

// maxHost is the last host number of a node's /24.
const maxHost = 254

// podIP is the pod's address: the one it has, or a free one on its node's /24, as a node's IPAM hands them out
// (round robin, so an address just freed is not handed out again at once). A deleted pod's address is free again:
// a node runs at most 110 pods at a time, while hundreds come and go (bench-load's 100 runs made over 250 observers
// a node, and the sandbox stopped starting pods with a 10.244.1.256 no API server takes).
func (a *nodeAgent) podIP(pod *corev1.Pod) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	idx := 0
	for i, n := range a.nodes {
		if n == pod.Spec.NodeName {
			idx = i
		}
	}
	addr, ok := a.ips[pod.UID]
	if !ok {
		node := pod.Spec.NodeName
		if a.used[node] == nil {
			a.used[node] = map[int]bool{}
		}
		host := a.nextIP[node]
		for range maxHost {
			host = host%maxHost + 1               // 1 … 254, after the last one handed out
			if host != 1 && !a.used[node][host] { // .1 is the node's gateway
				break
			}
		}
		a.used[node][host], a.nextIP[node] = true, host
		addr = podAddr{node: node, host: host}
		a.ips[pod.UID], a.byName[client.ObjectKeyFromObject(pod)] = addr, pod.UID
	}
	return nodeRange(idx) + strconv.Itoa(addr.host)
}

// nodeRange is the first three octets of the idx-th node's pod /24 (from 0), with the dot after them.
func nodeRange(idx int) string {
	n := 244<<8 + idx + 1
	return fmt.Sprintf("10.%d.%d.", n>>8, n&0xff)
}

// releaseIP frees the address of the pod of that name (and, when uid is set, that UID).
func (a *nodeAgent) releaseIP(key types.NamespacedName, uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	known, ok := a.byName[key]
	if !ok || uid != "" && known != uid {
		return
	}
	if addr, ok := a.ips[known]; ok {
		delete(a.used[addr.node], addr.host)
		delete(a.ips, known)
	}
	delete(a.byName, key)
}

// markRunning writes the status kubelet writes once the containers started.
func (a *nodeAgent) markRunning(ctx context.Context, pod *corev1.Pod) error {
	ip := a.podIP(pod)
	for _, c := range pod.Spec.Containers {
		a.logs.AddContainer(pod.Namespace, pod.Name, c.Name) // a container that has not logged yet has an empty log
	}
	return a.updateStatus(ctx, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		p.Status.Phase = corev1.PodRunning
		p.Status.HostIP, p.Status.PodIP = "127.0.0.1", ip
		p.Status.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		p.Status.StartTime = &now
		p.Status.Conditions = podConditions(corev1.ConditionTrue, now)
		p.Status.ContainerStatuses = nil
		for _, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptrBool(true),
				ContainerID: containerID(p, c.Name),
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			})
		}
	})
}

// containerID names a container as a runtime would (kubelet writes "<runtime>://<id>"): one per pod and
// container, so a pod created anew under the same name has other containers.
func containerID(p *corev1.Pod, container string) string {
	return "sandbox://" + string(p.UID) + "/" + container
}

func podConditions(s corev1.ConditionStatus, now metav1.Time) []corev1.PodCondition {
	var cs []corev1.PodCondition
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized,
		corev1.ContainersReady, corev1.PodReady} {
		st := s
		if t == corev1.PodScheduled || t == corev1.PodInitialized {
			st = corev1.ConditionTrue
		}
		cs = append(cs, corev1.PodCondition{Type: t, Status: st, LastTransitionTime: now})
	}
	return cs
}

func ptrBool(b bool) *bool { return &b }

func (a *nodeAgent) updateStatus(ctx context.Context, pod *corev1.Pod, mutate func(*corev1.Pod)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Pod{}
		if err := a.Get(ctx, client.ObjectKeyFromObject(pod), cur); err != nil {
			return err
		}
		if cur.UID != pod.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		}
		mutate(cur)
		return a.Status().Update(ctx, cur)
	})
}

// startProbe runs the pod's prober once, in-process: the same code as `manager probe`, with the pod's
// identity, its connections routed through the simulated ztunnel.
func (a *nodeAgent) startProbe(pod *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.running[string(pod.UID)]; ok {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	a.running[string(pod.UID)] = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runProbe(ctx, pod.DeepCopy())
	}()
}

func (a *nodeAgent) runProbe(ctx context.Context, pod *corev1.Pod) {
	log := ctrl.LoggerFrom(ctx).WithValues("pod", pod.Namespace+"/"+pod.Name)
	opts, err := probe.ParseArgs(pod.Spec.Containers[0].Args)
	var res probe.Result
	if err == nil {
		var src dataplane.Workload
		// A passing API error must not strand the pod: retry with a bound, as kubelet retries a pod sync.
		serr := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true,
			func(ctx context.Context) (bool, error) {
				w, err := a.workloadOf(ctx, pod)
				src = w
				return err == nil, nil
			})
		if serr != nil {
			log.Error(serr, "Reading probe pod's identity")
			return
		}
		opts.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return a.dp.Dial(ctx, src, network, addr)
		}
		if opts.Observe {
			if err := a.runObserver(ctx, pod, opts); err != nil && !apierrors.IsNotFound(err) {
				log.Error(err, "Writing observer pod status")
			}
			return
		}
		res = probe.Run(ctx, opts)
	}
	if ctx.Err() != nil {
		return // the pod is being deleted or the sandbox stops
	}
	if err := a.terminate(context.WithoutCancel(ctx), pod, res, err); err != nil && !apierrors.IsNotFound(err) {
		log.Error(err, "Writing probe pod status")
	}
}

// runObserver is `manager probe --observe` in-process: every attempt goes to the container log as one JSON
// line as soon as it is made, while the pod stays Running; when the budget runs out the container exits 0
// with a Summary as its termination message. A deleted pod stops without a status: confirmDeletion cancels ctx.
// A warm observer reads its arm from the agent's arms, as it would from its ConfigMap volume.
func (a *nodeAgent) runObserver(ctx context.Context, pod *corev1.Pod, opts probe.Options) error {
	if opts.ArmFile != "" {
		opts.LoadArm = a.arms.loader(pod, opts.ArmFile)
	}
	started, n := time.Now(), 0
	probe.Observe(ctx, opts, func(at probe.Attempt) {
		n++
		line, _ := json.Marshal(at) // an Attempt has no value json cannot encode
		a.logs.Append(pod.Namespace, pod.Name, probe.ContainerName, string(line))
	})
	if ctx.Err() != nil {
		return nil // the pod is being deleted or the sandbox stops
	}
	msg, _ := json.Marshal(probe.Summary{Attempts: n})
	return a.writeTerminated(context.WithoutCancel(ctx), pod, probe.ExitMatched, "Completed", string(msg), started)
}

// terminate writes the terminated container status with the result as termination message, as kubelet does
// from /dev/termination-log.
func (a *nodeAgent) terminate(ctx context.Context, pod *corev1.Pod, res probe.Result, argErr error) error {
	msg, _ := json.Marshal(res)
	exit, reason := int32(probe.ExitMatched), "Completed"
	if argErr != nil {
		msg, exit, reason = []byte("probe: "+argErr.Error()), probe.ExitUsage, "Error"
	} else if !res.Matched {
		exit, reason = probe.ExitNotMatched, "Error"
	}
	// What the prober printed on stdout is the container's log, as `kubectl logs` would show it.
	a.logs.Append(pod.Namespace, pod.Name, probe.ContainerName, string(msg))
	return a.writeTerminated(ctx, pod, exit, reason, string(msg), res.StartTime)
}

// writeTerminated writes the status kubelet writes when the probe container exited: Succeeded on exit 0,
// Failed otherwise, with msg as the termination message.
func (a *nodeAgent) writeTerminated(ctx context.Context, pod *corev1.Pod, exit int32, reason, msg string, started time.Time) error {
	return a.updateStatus(ctx, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		p.Status.Phase = corev1.PodSucceeded
		if exit != 0 {
			p.Status.Phase = corev1.PodFailed
		}
		p.Status.Conditions = podConditions(corev1.ConditionFalse, now)
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: probe.ContainerName, Image: p.Spec.Containers[0].Image, ImageID: p.Spec.Containers[0].Image,
			ContainerID: containerID(p, probe.ContainerName),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: exit, Reason: reason, Message: msg,
				StartedAt: metav1.NewTime(started), FinishedAt: now,
			}},
		}}
	})
}

// workloadOf is the pod as the data plane sees it: namespace, ServiceAccount, node, IP, and whether ambient
// captures it (its namespace enrolled, unless the pod opts out).
func (a *nodeAgent) workloadOf(ctx context.Context, pod *corev1.Pod) (dataplane.Workload, error) {
	ns := &corev1.Namespace{}
	if err := a.Get(ctx, client.ObjectKey{Name: pod.Namespace}, ns); err != nil {
		return dataplane.Workload{}, err
	}
	return workload(pod, ns, a.podIP(pod)), nil
}

func workload(pod *corev1.Pod, ns *corev1.Namespace, ip string) dataplane.Workload {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return dataplane.Workload{
		Namespace: pod.Namespace, Name: pod.Name, ServiceAccount: sa, Node: pod.Spec.NodeName, IP: ip,
		Labels: pod.Labels, Mesh: inMesh(pod, ns),
	}
}

// inMesh follows ambient enrolment: the namespace label istio.io/dataplane-mode=ambient, which a pod can
// override with its own label (none opts out).
func inMesh(pod *corev1.Pod, ns *corev1.Namespace) bool {
	if v, ok := pod.Labels[ambientLabel]; ok {
		return v == ambientValue
	}
	return ns.Labels[ambientLabel] == ambientValue
}

func (a *nodeAgent) wait() { a.wg.Wait() }
