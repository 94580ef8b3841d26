// Package controlplane starts a local kube-apiserver and etcd, built from Go modules by hack/controlplane.sh,
// with the LabRun and Istio CRDs installed. The tests and the sandbox run on it; no cluster is needed.
package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const module = "module github.com/ambientlab/labrun-operator\n"

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	Root   string // repository root
}

// Options tune Start.
type Options struct {
	// Progress receives one-line progress messages (the first build takes minutes). Nil discards them.
	Progress io.Writer
}

// RepoRoot finds the repository root by walking up from the working directory to this module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), module) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the labrun-operator repository (no go.mod of the module found above the working directory)")
		}
		dir = parent
	}
}

// Start builds the control plane if it is missing, starts it and installs the CRDs.
func Start(o Options) (*Env, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := ensureBinaries(root, o.Progress)
	if err != nil {
		return nil, err
	}
	istioCRDs, err := IstioCRDs(root)
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), istioCRDs},
		ErrorIfCRDPathMissing: true,
	}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		// envtest's 20 s is short when test packages start their control planes side by side on a busy machine.
		env.ControlPlaneStartTimeout = 2 * time.Minute
	}
	cfg, err := env.Start()
	if err != nil {
		// A start that timed out may have left etcd or kube-apiserver running.
		return nil, errors.Join(fmt.Errorf("starting the local control plane: %w", err), env.Stop())
	}
	return &Env{Environment: env, Config: cfg, Root: root}, nil
}

// ensureBinaries returns the directory of kube-apiserver and etcd, building them with hack/controlplane.sh when
// KUBEBUILDER_ASSETS is unset and bin/k8s lacks them.
func ensureBinaries(root string, progress io.Writer) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" && hasBinaries(dir) {
		return dir, nil
	}
	dir := filepath.Join(root, "bin", "k8s")
	if hasBinaries(dir) {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(root, "hack", "controlplane.sh"), dir)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the local control plane (hack/controlplane.sh): %w", err)
	}
	return dir, nil
}

func hasBinaries(dir string) bool {
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// IstioCRDs is the path of the Istio CRDs shipped in the istio.io/api module at the version go.mod pins.
func IstioCRDs(root string) (string, error) {
	var out, stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("locating the istio.io/api module: %v: %s", err, stderr.String())
	}
	path := filepath.Join(strings.TrimSpace(out.String()), "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return path, nil
}
