// Package e2ekind tests hack/e2e-kind.sh where it can be tested without a container engine: its --dry-run
// prints every command with the pinned versions, in the order docs/real-cluster.md gives, naming files that exist
// and the archive `make image` writes.
package e2ekind

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/ambientlab/labrun-operator/internal/controlplane"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// dryRun runs the script with --dry-run and returns the commands it prints (the lines after "+ ").
func dryRun(t *testing.T, root string) (commands []string, output string) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(root, "hack", "e2e-kind.sh"), "--dry-run")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/e2e-kind.sh --dry-run: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(l, "+ "); ok {
			commands = append(commands, c)
		}
	}
	return commands, string(out)
}

// pins are the versions the script pins (NAME_VERSION=… and KIND_NODE_IMAGE=… at the start of a line).
func pins(t *testing.T, root string) map[string]string {
	b, err := os.ReadFile(filepath.Join(root, "hack", "e2e-kind.sh"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+_VERSION|KIND_NODE_IMAGE)=([^\s$]+)$`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// TestDryRunPrintsThePinnedCommands checks the whole path of docs/real-cluster.md in order, with the pinned
// versions in the commands that use them.
func TestDryRunPrintsThePinnedCommands(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	p := pins(t, root)
	g.Expect(p).To(HaveKey("KIND_VERSION"))
	g.Expect(p).To(HaveKey("KIND_NODE_IMAGE"))
	g.Expect(p).To(HaveKey("KUBECTL_VERSION"))
	g.Expect(p).To(HaveKey("ISTIO_VERSION"))
	g.Expect(p["KIND_NODE_IMAGE"]).To(MatchRegexp(`^kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}$`), "the node image by digest")
	commands, output := dryRun(t, root)

	helm := goModVersion(t, root, "helm.sh/helm/v4")
	want := []string{
		"go install sigs.k8s.io/kind@" + p["KIND_VERSION"],
		"go install helm.sh/helm/v4/cmd/helm@" + helm,
		"dl.k8s.io/release/" + p["KUBECTL_VERSION"] + "/",
		"releases/download/" + p["ISTIO_VERSION"] + "/istioctl-" + p["ISTIO_VERSION"] + "-",
		"kind create cluster --name labrun-e2e --image " + p["KIND_NODE_IMAGE"],
		"istioctl install --set profile=ambient",
		"rollout status ds/ztunnel",
		"kubectl apply -k config/samples/world",
		"kubectl label namespace istio-system labs.ambientlab.io/enabled=true",
		"make image IMAGE_REPOSITORY=labrun-operator IMAGE_TAG=e2e",
		"kind load image-archive bin/image/labrun-operator.tar --name labrun-e2e",
		"helm install labrun-operator charts/labrun-operator -n labrun-system --create-namespace --set image.repository=labrun-operator --set image.tag=e2e",
		"bin/image/image.json",
		"kubectl apply -f config/samples/labs_v1alpha1_labrun.yaml",
		"wait until labrun ambient-security-labs {.status.phase} is Succeeded",
		"kubectl -n demo wait labrun ambient-security-labs --for=condition=MeshRestored=True",
		"config/samples/labs_v1alpha1_labschedule.yaml | kubectl apply -f -",
		"wait until labschedule ambient-security-verify {.status.lastRun.phase} is Succeeded",
		"--for=condition=MeshRestored=True",
		"get peerauthentication default -o jsonpath='{.spec.mtls.mode}')\" = STRICT",
		"bin/kubectl-labrun report ambient-security-labs -n demo --format junit",
	}
	i := 0
	for _, c := range commands {
		if i < len(want) && strings.Contains(c, want[i]) {
			i++
		}
	}
	g.Expect(i).To(Equal(len(want)), "missing or out of order: %q\n%s", want[min(i, len(want)-1)], output)
	g.Expect(output).To(ContainSubstring("e2e-kind: passed"))
	g.Expect(output).NotTo(ContainSubstring("kind delete cluster"), "a dry run makes no cluster and so deletes none")
}

// TestDryRunNamesWhatExists checks that the files the commands name are the repository's, and that the edit the
// script makes to the sample schedule (every minute, not every 15) finds what it replaces.
func TestDryRunNamesWhatExists(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	commands, _ := dryRun(t, root)
	for _, path := range []string{"config/samples/world", "config/samples/labs_v1alpha1_labrun.yaml",
		"config/samples/labs_v1alpha1_labschedule.yaml", "charts/labrun-operator"} {
		g.Expect(strings.Join(commands, "\n")).To(ContainSubstring(path))
		g.Expect(filepath.Join(root, path)).To(BeAnExistingFile())
	}
	sample, err := os.ReadFile(filepath.Join(root, "config", "samples", "labs_v1alpha1_labschedule.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(sample)).To(ContainSubstring(`"@every 15m"`), "the script's sed turns it into @every 1m")
	g.Expect(string(sample)).To(ContainSubstring("name: ambient-security-verify"))
	g.Expect(string(sample)).To(ContainSubstring("mode: Verify"))
	run, err := os.ReadFile(filepath.Join(root, "config", "samples", "labs_v1alpha1_labrun.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(run)).To(ContainSubstring("name: ambient-security-labs"))

	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(mk)).To(MatchRegexp(`(?m)^image:`))
	g.Expect(string(mk)).To(ContainSubstring("-out $(LOCALBIN)/image"), "the archive kind loads is bin/image/labrun-operator.tar")
	manager, err := os.ReadFile(filepath.Join(root, "config", "manager", "manager.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(manager)).To(ContainSubstring("control-plane: controller-manager"), "the label the script finds the manager's pods by")
}

// TestNodeImageMeetsTheChartsFloor keeps the pinned node image at or above the chart's kubeVersion.
func TestNodeImageMeetsTheChartsFloor(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	node := regexp.MustCompile(`:v1\.(\d+)\.`).FindStringSubmatch(pins(t, root)["KIND_NODE_IMAGE"])
	g.Expect(node).To(HaveLen(2))
	chart, err := os.ReadFile(filepath.Join(root, "charts", "labrun-operator", "Chart.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	floor := regexp.MustCompile(`(?m)^kubeVersion: ">=1\.(\d+)\.`).FindSubmatch(chart)
	g.Expect(floor).To(HaveLen(2), "Chart.yaml's kubeVersion")
	n, _ := strconv.Atoi(node[1])
	f, _ := strconv.Atoi(string(floor[1]))
	g.Expect(n).To(BeNumerically(">=", f))
}

// TestWorkflowRunsTheScript checks that the CI workflow runs the script and pins no version of its own.
func TestWorkflowRunsTheScript(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, ".github", "workflows", "e2e-kind.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	wf := string(b)
	g.Expect(wf).To(MatchRegexp(`(?m)^\s+run: hack/e2e-kind.sh$`))
	g.Expect(wf).To(ContainSubstring("go-version-file: go.mod"))
	for name, v := range pins(t, root) {
		g.Expect(wf).NotTo(ContainSubstring(v), "%s is pinned in hack/e2e-kind.sh only", name)
	}
}

func goModVersion(t *testing.T, root, module string) string {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
