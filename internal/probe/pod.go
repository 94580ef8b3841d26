package probe

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// ContainerName is the name of the single container of a probe pod.
const ContainerName = "probe"

// PodRequest describes one probe pod.
type PodRequest struct {
	Name           string
	Namespace      string
	ServiceAccount string // "" runs as the namespace's default ServiceAccount
	Image          string
	Labels         map[string]string
	Annotations    map[string]string
	// NodeName pins the pod to a node (an observer that probes from every node); "" lets the scheduler pick.
	NodeName string
	// Tolerations let a pinned pod past the node's NoExecute taints, which kubelet still enforces when the
	// scheduler is bypassed: an observer takes those of the node's ztunnel, so it runs wherever ztunnel does.
	Tolerations []corev1.Toleration
	Options     Options
	// Arm, when set, makes the pod a warm observer: the ConfigMap key it names is mounted read-only as
	// ArmFileName in ArmDir, and Options.ArmFile points at it (Options.URL and URLs must then be empty).
	Arm *ArmVolume
}

// Args is the command line of `manager probe` for o; the sandbox's node agent parses it back with ParseArgs.
func Args(o Options) []string {
	if o.Observe {
		return observerArgs(o)
	}
	count := o.Count
	if count < 1 {
		count = DefaultCount
	}
	return []string{"probe",
		"--url=" + o.URL,
		"--expect=" + string(o.Expect),
		"--timeout=" + o.Timeout.String(),
		"--settle=" + o.Settle.String(),
		"--count=" + strconv.Itoa(count),
	}
}

// observerArgs is an observer's command line: no expectation or count, and the interval, which paces every
// attempt of an observer (a one-shot probe keeps the default between failed attempts).
func observerArgs(o Options) []string {
	interval := o.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	args := []string{"probe", "--observe"}
	if o.ArmFile != "" {
		args = append(args, "--arm="+o.ArmFile)
	}
	if o.URL != "" || o.ArmFile == "" {
		args = append(args, "--url="+o.URL) // with --arm, only for ParseArgs to refuse
	}
	for _, u := range o.URLs {
		args = append(args, "--url="+u)
	}
	args = append(args,
		"--timeout="+o.Timeout.String(),
		"--settle="+o.Settle.String(),
		"--interval="+interval.String(),
	)
	if o.Expect != "" {
		args = append(args, "--expect="+string(o.Expect))
	}
	return args
}

// ParseArgs reads back the Options written by Args (the node agent runs the prober in-process with them).
func ParseArgs(args []string) (Options, error) {
	if len(args) > 0 && args[0] == "probe" {
		args = args[1:]
	}
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		return Options{}, err
	}
	return cfg.opts, nil
}

// Pod builds a hardened, short-lived probe pod: restartPolicy Never, non-root, read-only root filesystem, no
// privilege escalation, all capabilities dropped, RuntimeDefault seccomp, small limits and no API token (the
// probe needs none: its mesh identity comes from the ServiceAccount alone). An observer pod (Options.Observe)
// has the same shape; its activeDeadlineSeconds, Settle plus the same grace, bounds its life even if nobody
// deletes it (with Settle 0 the grace alone). A warm observer (req.Arm) also mounts its arm (armVolume).
func Pod(req PodRequest) *corev1.Pod {
	if req.Arm != nil {
		req.Options.ArmFile = ArmDir + "/" + ArmFileName
	}
	deadline := int64((req.Options.Settle + 2*req.Options.Timeout + time.Minute) / time.Second)
	limits := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("100m"),
		corev1.ResourceMemory: resource.MustParse("64Mi"),
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: req.Name, Namespace: req.Namespace, Labels: req.Labels, Annotations: req.Annotations,
		},
		Spec: corev1.PodSpec{
			NodeName:                      req.NodeName,
			Tolerations:                   req.Tolerations,
			RestartPolicy:                 corev1.RestartPolicyNever,
			ServiceAccountName:            req.ServiceAccount,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			ActiveDeadlineSeconds:         &deadline,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](65532),
				RunAsGroup:     ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:                     ContainerName,
				Image:                    req.Image,
				ImagePullPolicy:          corev1.PullIfNotPresent,
				Command:                  []string{"/manager"},
				Args:                     Args(req.Options),
				TerminationMessagePath:   corev1.TerminationMessagePathDefault,
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
				Resources: corev1.ResourceRequirements{
					Limits: limits,
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("10m"),
						corev1.ResourceMemory: resource.MustParse("16Mi"),
					},
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Privileged:               ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if req.Arm != nil {
		addArmVolume(pod, *req.Arm)
	}
	return pod
}

// armVolumeName is the name of a warm observer's arm volume.
const armVolumeName = "arm"

// addArmVolume mounts the arm's ConfigMap key at ArmDir/ArmFileName, read only. The volume is optional, so the
// pod starts before the manager first writes the arm (the observer is idle until then), and only the one key
// is projected: the ConfigMap holds every node's arm.
func addArmVolume(pod *corev1.Pod, arm ArmVolume) {
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
		Name: armVolumeName,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: arm.ConfigMap},
			Items:                []corev1.KeyToPath{{Key: arm.Key, Path: ArmFileName}},
			Optional:             ptr.To(true),
			DefaultMode:          ptr.To[int32](0o444),
		}},
	})
	c := &pod.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: armVolumeName, MountPath: ArmDir, ReadOnly: true})
}

// Finished tells whether the probe container has terminated, and returns its result when it has. A terminated
// container without a readable result yields an error that says what the pod reported instead.
func Finished(pod *corev1.Pod) (Result, bool, error) {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName || cs.State.Terminated == nil {
			continue
		}
		t := cs.State.Terminated
		var res Result
		if err := json.Unmarshal([]byte(strings.TrimSpace(t.Message)), &res); err != nil {
			return Result{}, true, fmt.Errorf("probe container exited %d (%s) without a result: %q",
				t.ExitCode, t.Reason, truncate(t.Message, 200))
		}
		return res, true, nil
	}
	if pod.Status.Phase == corev1.PodFailed {
		return Result{}, true, fmt.Errorf("probe pod failed before its container ran: %s %s",
			pod.Status.Reason, pod.Status.Message)
	}
	return Result{}, false, nil
}

// FinishedAt is when the probe container terminated, or fallback when the pod does not say.
func FinishedAt(pod *corev1.Pod, fallback time.Time) time.Time {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == ContainerName && cs.State.Terminated != nil && !cs.State.Terminated.FinishedAt.IsZero() {
			return cs.State.Terminated.FinishedAt.Time
		}
	}
	return fallback
}

// Stuck reports why a probe pod cannot start (image pull failures, bad config), or "" if it is not stuck.
func Stuck(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
				"CreateContainerError":
				return w.Reason + ": " + w.Message
			}
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Digest sums what makes a pod the operator's prober: its ServiceAccount and every container's name,
// image, command and args, with the number of init and ephemeral containers. A probe pod's image is a mutable
// field and ephemeral containers can be added to a running pod: a pod whose digest changed since the operator
// created it no longer runs (only) what the operator started, and its log is not the prober's record.
func Digest(pod *corev1.Pod) string {
	type container struct {
		Name, Image   string
		Command, Args []string
	}
	var cs []container
	for _, c := range pod.Spec.Containers {
		cs = append(cs, container{Name: c.Name, Image: c.Image, Command: c.Command, Args: c.Args})
	}
	// Not the node: the scheduler sets it after creation (and then it cannot change).
	raw, _ := json.Marshal(struct {
		ServiceAccount  string
		Containers      []container
		Init, Ephemeral int
	}{pod.Spec.ServiceAccountName, cs, len(pod.Spec.InitContainers), len(pod.Spec.EphemeralContainers)})
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Tampering tells how a probe pod differs from what was recorded when it was created (digest) and first seen
// running (container ID): "" when it is the same pod running the same container that never restarted.
func Tampering(pod *corev1.Pod, digest, containerID string) string {
	if got := Digest(pod); got != digest {
		images := make([]string, 0, len(pod.Spec.Containers))
		for _, c := range pod.Spec.Containers {
			images = append(images, c.Image)
		}
		return fmt.Sprintf("its spec is not the one the operator wrote (containers %s, %d ephemeral)",
			strings.Join(images, ","), len(pod.Spec.EphemeralContainers))
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.RestartCount > 0 {
			return fmt.Sprintf("container %s restarted %d time(s)", s.Name, s.RestartCount)
		}
		if s.Name == ContainerName && containerID != "" && s.ContainerID != "" && s.ContainerID != containerID {
			return fmt.Sprintf("container %s is %s, not %s as first seen", s.Name, s.ContainerID, containerID)
		}
	}
	return ""
}

// ContainerID is the prober's container ID, "" until it runs.
func ContainerID(pod *corev1.Pod) string {
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == ContainerName {
			return s.ContainerID
		}
	}
	return ""
}
