package meshguard_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestManagerProcessKilledWithSIGKILL runs the real manager binary as its own process, kills it with SIGKILL
// as soon as the mesh is weakened (no deferred code runs, no status is flushed), and starts a fresh process:
// it restores the mesh from the trusted record before anything else, and the run ends Failed saying so, with
// the mesh as found.
func TestManagerProcessKilledWithSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the manager binary")
	}
	g := NewWithT(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "../..")
	build.Stderr = os.Stderr
	g.Expect(build.Run()).To(Succeed())
	kubeconfig := writeKubeconfig(t, dir)

	first := startProcess(t, bin, kubeconfig)
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	suite.Create(t, run)
	suite.WaitUntilWeakened(t)
	g.Expect(first.Process.Signal(syscall.SIGKILL)).To(Succeed())
	_ = first.Wait()

	startProcess(t, bin, kubeconfig)
	suite.ExpectInterrupted(t, suite.Finished(t, run))
	suite.DeleteAndWait(t, run)
	suite.ExpectMeshAsFound(t)
}

func startProcess(t *testing.T, bin, kubeconfig string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--leader-elect=false", "--metrics-bind-address=0",
		"--health-probe-bind-address=0", "--probe-image="+suite.TestProbeImage, "--namespace="+sandbox.OperatorNamespace)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return cmd
}

func writeKubeconfig(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "kubeconfig")
	if err := suite.SB.WriteManagerKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	return path
}
