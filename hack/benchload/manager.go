package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	shipped "github.com/ambientlab/labrun-operator/config"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// readyLine is what the manager logs once its admission policies check out; before that it holds every run.
const readyLine = "Admission policies installed as shipped and enforced"

// manager is the manager binary running as its own process.
type manager struct {
	cmd            *exec.Cmd
	exited         chan struct{}
	log            string
	metrics, pprof string // host:port
}

// startManager runs the manager binary under its ServiceAccount with leader election off, metrics over plain
// HTTP and pprof on loopback, and returns once it logged that its admission policies check out.
func startManager(ctx context.Context, bin, kubeconfig, logPath string) (*manager, error) {
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	pprof, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	m := &manager{log: logPath, metrics: metrics, pprof: pprof, exited: make(chan struct{})}
	m.cmd = exec.Command(bin, "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--metrics-bind-address="+metrics, "--metrics-secure=false", "--health-probe-bind-address=0",
		"--pprof-bind-address="+pprof, "--probe-image="+sandbox.SandboxProbeImage,
		"--namespace="+sandbox.OperatorNamespace)
	// As the Deployment runs it: MEMORY_LIMIT is its container's memory limit (the downward API), from which the
	// manager sets the Go runtime's soft memory limit. Without it the heap grows to twice what is live before a
	// collection, and the peak heap measured is not the one the Deployment would see.
	limit, err := deploymentMemoryLimit()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	m.cmd.Env = append(os.Environ(), "MEMORY_LIMIT="+strconv.FormatInt(limit, 10))
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	if err := m.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { _ = m.cmd.Wait(); logFile.Close(); close(m.exited) }()
	if err := m.waitReady(ctx, 2*time.Minute); err != nil {
		m.stop()
		return nil, err
	}
	return m, nil
}

func (m *manager) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		raw, _ := os.ReadFile(m.log)
		if strings.Contains(string(raw), readyLine) {
			return nil
		}
		select {
		case <-m.exited:
			return fmt.Errorf("the manager exited (%s); see %s", m.cmd.ProcessState, m.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the manager did not log %q within %s; see %s", readyLine, timeout, m.log)
}

func (m *manager) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// rss is the process's peak resident set (VmHWM) and current one (VmRSS), in bytes.
func (m *manager) rss() (peak, now int64) {
	st := m.status()
	return st["VmHWM"], st["VmRSS"]
}

// status is the process's /proc/PID/status sizes, in bytes (empty once it is gone).
func (m *manager) status() map[string]int64 {
	out := map[string]int64{}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if kb, ok := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok {
			n, _ := strconv.ParseInt(kb, 10, 64)
			out[k] = n << 10
		}
	}
	return out
}

// gauge reads one unlabelled sample of the manager's metrics, e.g. go_memstats_sys_bytes.
func (m *manager) gauge(name string) (float64, bool) {
	raw, err := httpGet(context.Background(), "http://"+m.metrics+"/metrics")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// memoryParts is what the manager's resident set is made of now: file-backed pages (the binary's text and data,
// which GOMEMLIMIT does not count), anonymous memory, and what the Go runtime holds from the OS (go_memstats_sys_bytes:
// what GOMEMLIMIT limits).
func (m *manager) memoryParts() (file, anon, goSys int64) {
	st := m.status()
	sys, _ := m.gauge("go_memstats_sys_bytes")
	return st["RssFile"], st["RssAnon"], int64(sys)
}

// clientCounts are the manager's own API requests so far by HTTP method (client-go's rest_client_requests_total).
func (m *manager) clientCounts() (map[string]float64, error) {
	raw, err := httpGet(context.Background(), "http://"+m.metrics+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("scraping the manager's metrics: %w", err)
	}
	out := map[string]float64{}
	for _, s := range parseSamples(string(raw), "rest_client_requests_total") {
		out[s.labels["method"]] += s.value
	}
	return out, nil
}

// profile saves CPU profiles back to back until ctx ends, and a heap profile each time RSS reaches a new high
// (at most every 5 s); then the heap at the end (its alloc_space is everything the case allocated). It returns
// the files saved.
func (m *manager) profile(ctx context.Context, dir string, n int) []string {
	var files []string
	heapDone := make(chan []string)
	go func() { heapDone <- m.heapAtPeak(ctx, dir, n) }()
	for i := 0; ctx.Err() == nil; i++ {
		path := filepath.Join(dir, fmt.Sprintf("cpu-%d-%02d.pb.gz", n, i))
		// A profile asked for after ctx ended still runs its 10 s against the idle manager: keep it (cheap).
		if err := m.save("/debug/pprof/profile?seconds=10", path); err == nil {
			files = append(files, path)
		}
	}
	files = append(files, <-heapDone...)
	path := filepath.Join(dir, fmt.Sprintf("heap-%d-end.pb.gz", n))
	if err := m.save("/debug/pprof/heap", path); err == nil {
		files = append(files, path)
	}
	return files
}

func (m *manager) heapAtPeak(ctx context.Context, dir string, n int) []string {
	path := filepath.Join(dir, fmt.Sprintf("heap-%d-peak.pb.gz", n))
	var high int64
	var last time.Time
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if high == 0 {
				return nil
			}
			return []string{path}
		case <-tick.C:
		}
		_, now := m.rss()
		if now > high*21/20 && time.Since(last) > 5*time.Second {
			if m.save("/debug/pprof/heap", path) == nil {
				high, last = now, time.Now()
			}
		}
	}
}

func (m *manager) save(path, file string) error {
	raw, err := httpGet(context.Background(), "http://"+m.pprof+path)
	if err != nil {
		return err
	}
	return os.WriteFile(file, raw, 0o644)
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeManagerKubeconfig writes a kubeconfig that acts as the manager's ServiceAccount, so config/default's RBAC
// and admission policies apply to the manager process as on a cluster.
func writeManagerKubeconfig(sb *sandbox.Sandbox, dir string) (string, error) {
	path := filepath.Join(dir, "manager.kubeconfig")
	return path, sb.WriteManagerKubeconfig(path)
}

// deploymentMemoryLimit is the manager container's memory limit in config/manager/manager.yaml, in bytes.
func deploymentMemoryLimit() (int64, error) {
	raw, err := fs.ReadFile(shipped.Files, "manager/manager.yaml")
	if err != nil {
		return 0, err
	}
	for _, doc := range strings.Split(string(raw), "\n---") {
		d := &appsv1.Deployment{}
		if err := yaml.Unmarshal([]byte(doc), d); err != nil || d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				return q.Value(), nil
			}
		}
	}
	return 0, fmt.Errorf("config/manager/manager.yaml: no Deployment container with a memory limit")
}
