// Package istiod runs the real istiod (pilot-discovery, built from a pinned istio.io/istio by hack/istiod.sh)
// against the sandbox's API server on loopback ports, and reads what it computes for ztunnel from its
// /debug/ambientz endpoint.
package istiod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// Options configure Start.
type Options struct {
	// Root is the repository root (hack/istiod.sh builds into bin/istiod there).
	Root string
	// Kubeconfig of the API server istiod watches.
	Kubeconfig string
	// RootNamespace is istiod's own namespace and the mesh root (default istio-system).
	RootNamespace string
	// Progress receives progress messages (the first build takes minutes).
	Progress io.Writer
}

// Istiod is a running pilot-discovery.
type Istiod struct {
	cmd  *exec.Cmd
	http string
	done chan error
	logs *limited
}

// Start builds pilot-discovery if missing, starts it and waits until it is ready.
func Start(ctx context.Context, o Options) (*Istiod, error) {
	if o.RootNamespace == "" {
		o.RootNamespace = "istio-system"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	bin, err := ensureBinary(o.Root, o.Progress)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	cmd := exec.Command(bin, "discovery", "--kubeconfig", o.Kubeconfig, "--meshConfig", os.DevNull,
		"--grpcAddr", addr(0), "--httpAddr", addr(1), "--secureGRPCAddr", addr(2), "--monitoringAddr", addr(3),
		"--httpsAddr", addr(4), "--ctrlz_port", strconv.Itoa(ports[5]), "--ctrlz_address", "127.0.0.1")
	// REVISION=default as the Istio chart sets it: objects labelled for another revision are then not ours.
	// AMBIENT_ENABLE_STATUS is on by default with ambient; set here so that an environment cannot turn off what
	// the sandbox waits for: istiod writing ZtunnelAccepted into policies' status (pilot/pkg/features/ambient.go),
	// once it holds the status-writer Lease in POD_NAMESPACE.
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+o.RootNamespace, "PILOT_ENABLE_AMBIENT=true", "REVISION=default",
		"AMBIENT_ENABLE_STATUS=true")
	logs := &limited{}
	cmd.Stdout, cmd.Stderr = logs, logs // one writer: exec then writes from one goroutine
	// istiod dies with the process that started it, however that process ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting pilot-discovery: %w", err)
	}
	i := &Istiod{cmd: cmd, http: "http://" + addr(1), done: make(chan error, 1), logs: logs}
	go func() { i.done <- cmd.Wait() }()
	if err := i.waitReady(ctx, 2*time.Minute); err != nil {
		_ = i.Stop()
		return nil, err
	}
	return i, nil
}

func (i *Istiod) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-i.done:
			i.done <- err
			return fmt.Errorf("pilot-discovery exited before it was ready (%v): %s", err, tail(i.logs.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(i.http + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("pilot-discovery not ready within %s: %s", timeout, tail(i.logs.String()))
}

// Ambientz reads what istiod computed for ztunnel: workloads with their attached policies, and the converted
// policies.
func (i *Istiod) Ambientz(ctx context.Context) (policy.Ambientz, error) {
	var a policy.Ambientz
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, i.http+"/debug/ambientz", nil)
	if err != nil {
		return a, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return a, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("istiod /debug/ambientz: %s", resp.Status)
	}
	return a, json.NewDecoder(resp.Body).Decode(&a)
}

// Stop ends istiod: SIGTERM, then SIGKILL if it has not exited within 10 s.
func (i *Istiod) Stop() error {
	if i.cmd.Process == nil {
		return nil
	}
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-i.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = i.cmd.Process.Kill()
		<-i.done
		return errors.New("pilot-discovery did not stop on SIGTERM within 10s; killed")
	}
}

// ensureBinary returns bin/istiod/pilot-discovery, built by hack/istiod.sh at the pinned version (the script
// returns at once when the binary is up to date).
func ensureBinary(root string, progress io.Writer) (string, error) {
	dir := filepath.Join(root, "bin", "istiod")
	cmd := exec.Command(filepath.Join(root, "hack", "istiod.sh"), dir)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building istiod (hack/istiod.sh): %w", err)
	}
	return filepath.Join(dir, "pilot-discovery"), nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// limited keeps the last 64 KiB of istiod's output, for error messages.
type limited struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limited) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if over := l.b.Len() - 64<<10; over > 0 {
		l.b.Next(over)
	}
	return len(p), nil
}

func (l *limited) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
