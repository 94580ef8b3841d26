package docs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator"
	"github.com/ambientlab/labrun-operator/operator/operatortest"
)

// notRun are the README's kubectl commands the documentation test does not run against the sandbox, and why. Any
// other kubectl command of the README runs (TestReadmeKubectlInTheSandbox fails on one it does not know).
var notRun = map[string]string{
	"kubectl apply -k config/prometheus": "the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) are not " +
		"in the sandbox; internal/monitoring checks the rules with promtool and the metrics they query",
}

var (
	sharedOnce sync.Once
	shared     *sandbox.Sandbox
	sharedErr  error
)

// sandboxWithManager is the package's one sandbox (started by the first test that needs it, stopped by
// TestMain), with the manager the sandbox command runs (main.go's sandboxController) running for the test.
func sandboxWithManager(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = sandbox.Start(context.Background(), sandbox.Options{Progress: os.Stderr})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	operatortest.StartManager(t, shared, operator.Options{ProbeImage: sandbox.SandboxProbeImage,
		SkipNameValidation: true, PodStartGrace: 20 * time.Second, Namespace: sandbox.OperatorNamespace})
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		_ = shared.Stop()
	}
	os.Exit(code)
}

// fatal is kubectl's exit (cmdutil.CheckErr) caught: kubectl runs in this process.
type fatal struct {
	msg  string
	code int
}

func init() {
	cmdutil.BehaviorOnFatal(func(msg string, code int) { panic(fatal{msg, code}) })
}

// kubectl runs kubectl's own code (k8s.io/kubectl, the version of the project's client-go) with args against
// the kubeconfig, and returns what it printed. It runs in the test process: the project builds no kubectl binary.
func kubectl(kubeconfig string, args ...string) (out string, err error) {
	var stdout, stderr bytes.Buffer
	cmd := kubectlcmd.NewKubectlCommand(kubectlcmd.KubectlOptions{
		Arguments:   append([]string{"kubectl"}, args...),
		ConfigFlags: genericclioptions.NewConfigFlags(true),
		IOStreams:   genericiooptions.IOStreams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr},
	})
	cmd.SetArgs(append(slices.Clone(args), "--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(filepath.Dir(kubeconfig), "cache")))
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(fatal)
			if !ok {
				panic(p)
			}
			out, err = stdout.String(), fmt.Errorf("exit %d: %s%s", f.code, f.msg, stderr.String())
		}
	}()
	if err := cmd.Execute(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.String(), nil
}

// columns are a table header's column names (columns are two or more spaces apart; a name may hold one space).
func columns(header string) []string {
	return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(header), -1)
}

// listed are the names a README comment lists: "A, B, C".
func listed(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// shownTable is a `$ kubectl get …` line of the README's fenced blocks and the header line shown under it.
type shownTable struct {
	words  []string
	header string
	line   int
}

func shownTables(t *testing.T) []shownTable {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []shownTable
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		if rest, ok := strings.CutPrefix(line, "$ kubectl get "); ok && i+1 < len(lines) {
			out = append(out, shownTable{words: append([]string{"get"}, split(stripComment(rest))...), header: lines[i+1], line: i + 1})
		}
	}
	return out
}

// TestReadmeKubectlInTheSandbox runs the README's kubectl commands as written against the sandbox, in the
// README's order, and compares what they print with what the README shows: the columns a comment lists, the
// pieces of a log line it quotes, the header of each table it shows. A LabRun the README applies is waited for
// (the lines after it describe a finished run).
func TestReadmeKubectlInTheSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the sandbox")
	}
	sb := sandboxWithManager(t)
	g := NewWithT(t)
	ctx := context.Background()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(sb.WriteAdminKubeconfig(kubeconfig)).To(Succeed())
	t.Cleanup(func() { putMeshBack(t, sb) })
	commands, tables := readmeCommands(t), shownTables(t)
	t.Chdir(root) // the README's commands run in the repository's root

	ran := 0
	for _, c := range commands {
		if c.words[0] != "kubectl" || (len(c.words) > 1 && c.words[1] == "labrun") {
			continue // the plugin's commands: checkPlugin and internal/plugin's tests
		}
		if why, ok := notRun[c.String()]; ok {
			t.Logf("README line %d: `%s` not run: %s", c.line, c, why)
			continue
		}
		out, err := kubectl(kubeconfig, c.words[1:]...)
		g.Expect(err).NotTo(HaveOccurred(), "README line %d: `%s`", c.line, c)
		ran++
		switch {
		case c.words[1] == "apply" && slices.Contains(c.words, "config/samples/labs_v1alpha1_labrun.yaml"):
			run := sampleRun(t, ".")
			t.Cleanup(func() { deleteRun(t, sb, run) })
			done, err := sandbox.WaitForRun(ctx, sb.Client, client.ObjectKeyFromObject(run), 3*time.Minute)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), "README line %d: %s", c.line, done.Status.Message)
		case c.words[1] == "get" && c.comment != "":
			// "# NAMESPACE, NAME, … (-o wide: SCOPE, …)": the columns, then those -o wide adds.
			plain, wide, _ := strings.Cut(c.comment, "(-o wide:")
			g.Expect(columns(firstLine(out))).To(Equal(listed(plain)), "README line %d: `%s` prints\n%s", c.line, c, out)
			if wide != "" {
				wideOut, err := kubectl(kubeconfig, append(c.words[1:], "-o", "wide")...)
				g.Expect(err).NotTo(HaveOccurred())
				added := slices.DeleteFunc(columns(firstLine(wideOut)), func(n string) bool { return slices.Contains(listed(plain), n) })
				g.Expect(added).To(Equal(listed(strings.TrimSuffix(strings.TrimSpace(wide), ")"))),
					"README line %d: `%s -o wide` prints\n%s", c.line, c, wideOut)
			}
		case c.words[1] == "logs" && c.comment != "":
			// "# connection complete … src.identity=…": each piece the comment quotes is on one line printed.
			pieces := strings.Split(c.comment, "…")
			g.Expect(strings.Split(out, "\n")).To(ContainElement(SatisfyAll(containsAll(pieces)...)),
				"README line %d: `%s` prints no line with %q", c.line, c, pieces)
		case c.words[1] == "patch":
			g.Expect(out).To(ContainSubstring("patched"), "README line %d: `%s`", c.line, c)
			putMeshBack(t, sb)
		case c.words[1] == "create" && c.words[2] == "clusterrolebinding":
			name := c.words[3]
			t.Cleanup(func() { _, _ = kubectl(kubeconfig, "delete", "clusterrolebinding", name) })
		}
	}
	g.Expect(ran).To(BeNumerically(">=", 7), "the README's kubectl commands were found and run")

	// The tables the README shows: the same header, column for column. A schedule is there for `get ls`.
	const schedule = "config/samples/labs_v1alpha1_labschedule.yaml"
	_, err := kubectl(kubeconfig, "apply", "-f", schedule)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _, _ = kubectl(kubeconfig, "delete", "-f", schedule) })
	g.Expect(tables).NotTo(BeEmpty())
	for _, tb := range tables {
		out, err := kubectl(kubeconfig, tb.words...)
		g.Expect(err).NotTo(HaveOccurred(), "README line %d: `kubectl %s`", tb.line, strings.Join(tb.words, " "))
		g.Expect(columns(firstLine(out))).To(Equal(columns(tb.header)),
			"README line %d: `kubectl %s` prints\n%s", tb.line, strings.Join(tb.words, " "), out)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func containsAll(pieces []string) []OmegaMatcher {
	var ms []OmegaMatcher
	for _, p := range pieces {
		if p = strings.TrimSpace(p); p != "" {
			ms = append(ms, ContainSubstring(p))
		}
	}
	return ms
}

// sampleRun is config/samples' LabRun, read from the repository at dir.
func sampleRun(t *testing.T, dir string) *labsv1.LabRun {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config", "samples", "labs_v1alpha1_labrun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	run := &labsv1.LabRun{}
	if err := yaml.UnmarshalStrict(raw, run); err != nil {
		t.Fatal(err)
	}
	return run
}

// deleteRun deletes a run and waits until it is gone (its finalizer restores the mesh and cleans up), so the next
// test may create the sample again.
func deleteRun(t *testing.T, sb *sandbox.Sandbox, run *labsv1.LabRun) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(client.IgnoreNotFound(sb.Client.Delete(context.Background(), run))).To(Succeed())
	g.Eventually(func() bool {
		err := sb.Client.Get(context.Background(), client.ObjectKeyFromObject(run), &labsv1.LabRun{})
		return client.IgnoreNotFound(err) == nil && err != nil
	}, time.Minute, 100*time.Millisecond).Should(BeTrue(), "the run is deleted")
}

// putMeshBack sets the mesh-wide PeerAuthentication STRICT again after the README's manual PERMISSIVE patch.
func putMeshBack(t *testing.T, sb *sandbox.Sandbox) {
	t.Helper()
	pa := &unstructured.Unstructured{}
	pa.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
	g := NewWithT(t)
	g.Expect(sb.Client.Get(context.Background(), client.ObjectKey{Namespace: "istio-system", Name: "default"}, pa)).To(Succeed())
	g.Expect(unstructured.SetNestedField(pa.Object, mesh.Strict, "spec", "mtls", "mode")).To(Succeed())
	g.Expect(sb.Client.Update(context.Background(), pa)).To(Succeed())
}
