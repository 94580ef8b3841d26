package docs_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/strvals"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/chart"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// helmInstall is the README's `helm install … --take-ownership` into the sandbox, read from its flags.
type helmInstall struct {
	release, chart, namespace string
	takeOwnership, create     bool
	forceConflicts            bool
	values                    map[string]any
}

func parseHelmInstall(t *testing.T, c command) helmInstall {
	t.Helper()
	h := helmInstall{release: c.words[2], chart: c.words[3], values: map[string]any{}}
	for i := 4; i < len(c.words); i++ {
		switch w := c.words[i]; w {
		case "--namespace", "-n":
			i++
			h.namespace = c.words[i]
		case "--take-ownership":
			h.takeOwnership = true
		case "--create-namespace":
			h.create = true
		case "--force-conflicts":
			h.forceConflicts = true
		case "--set":
			i++
			if err := strvals.ParseInto(c.words[i], h.values); err != nil {
				t.Fatalf("README line %d: --set %s: %v", c.line, c.words[i], err)
			}
		default:
			t.Fatalf("README line %d: `%s`: the test does not know the flag %s", c.line, c, w)
		}
	}
	return h
}

// TestReadmeHelmIntoTheSandbox runs the README's Helm path into the sandbox as written: on a sandbox that applied
// config/default and runs the manager, the `helm install --take-ownership` it shows succeeds, the chart then owns
// the operator's objects, and the sample LabRun still succeeds with the mesh restored.
func TestReadmeHelmIntoTheSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the sandbox")
	}
	var install *command
	for _, c := range readmeCommands(t) {
		if len(c.words) > 3 && c.words[0] == "helm" && c.words[1] == "install" && strings.Contains(c.String(), "--take-ownership") {
			install = &c
		}
	}
	if install == nil {
		t.Fatal("the README shows no `helm install … --take-ownership` into the sandbox")
	}
	h := parseHelmInstall(t, *install)
	g := NewWithT(t)
	ctx := context.Background()

	sb := sandboxWithManager(t)

	getter, kubeconfig, err := chart.Getter(sb.Env.Config, h.namespace)
	t.Cleanup(func() { _ = os.Remove(kubeconfig) })
	g.Expect(err).NotTo(HaveOccurred())
	ac := chart.Quiet()
	g.Expect(ac.Init(getter, h.namespace, "secret")).To(Succeed())
	ch, err := loader.Load(filepath.Join(root, h.chart))
	g.Expect(err).NotTo(HaveOccurred())
	in := action.NewInstall(ac)
	in.ReleaseName, in.Namespace, in.TakeOwnership, in.CreateNamespace = h.release, h.namespace, h.takeOwnership, h.create
	in.ForceConflicts = h.forceConflicts
	// The sandbox runs no controllers to roll a Deployment out: wait for hooks only (the chart has none).
	in.WaitStrategy, in.Timeout = kube.HookOnlyStrategy, time.Minute
	rel, err := in.RunWithContext(ctx, ch, h.values)
	g.Expect(err).NotTo(HaveOccurred(), "README line %d: `%s`", install.line, install)
	r, ok := rel.(*releasev1.Release)
	g.Expect(ok).To(BeTrue(), "a Helm 4 v1 release")
	notes := notesCommands(r.Info.Notes)
	g.Expect(notes).NotTo(BeEmpty(), "the chart's NOTES show commands")

	var sa corev1.ServiceAccount
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.OperatorNamespace, Name: sandbox.ManagerServiceAccount}, &sa)).To(Succeed())
	g.Expect(sa.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"), "the chart took the ServiceAccount over")

	run := sampleRun(t, root)
	g.Expect(sb.Client.Create(ctx, run)).To(Succeed())
	t.Cleanup(func() { deleteRun(t, sb, run) })
	done, err := sandbox.WaitForRun(ctx, sb.Client, client.ObjectKeyFromObject(run), 3*time.Minute)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), done.Status.Message)
	g.Expect(meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored)).To(BeTrue())

	// The chart's NOTES, as the install printed them: each kubectl command runs against the sandbox, in the
	// repository's root, as written (a watch is run once, without -w).
	admin := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(sb.WriteAdminKubeconfig(admin)).To(Succeed())
	t.Chdir(root)
	for _, c := range notes {
		if why, ok := notesNotRun(c); ok {
			t.Logf("NOTES: `%s` not run: %s", strings.Join(c, " "), why)
			continue
		}
		args := slices.DeleteFunc(slices.Clone(c[1:]), func(w string) bool { return w == "-w" || w == "--watch" })
		out, err := kubectl(admin, args...)
		g.Expect(err).NotTo(HaveOccurred(), "NOTES: `%s`", strings.Join(c, " "))
		if slices.Contains(args, "get") {
			g.Expect(out).To(HavePrefix("NAME "), "NOTES: `%s` shows a table", strings.Join(c, " "))
		}
		if args[0] == "create" && args[1] == "clusterrolebinding" {
			name := args[2]
			t.Cleanup(func() { _, _ = kubectl(admin, "delete", "clusterrolebinding", name) })
		}
		t.Logf("NOTES: `%s`:\n%s", strings.Join(c, " "), out)
	}
}

// notesCommands are the kubectl commands of the chart's NOTES: indented lines beginning with kubectl, continuation
// lines joined.
func notesCommands(notes string) [][]string {
	var out [][]string
	pending := ""
	for _, line := range strings.Split(notes, "\n") {
		trimmed := strings.TrimSpace(line)
		if pending == "" && !strings.HasPrefix(trimmed, "kubectl ") {
			continue
		}
		if rest, ok := strings.CutSuffix(trimmed, `\`); ok {
			pending += rest + " "
			continue
		}
		out = append(out, split(pending+trimmed))
		pending = ""
	}
	return out
}

// notesNotRun says why a NOTES command is not run against the sandbox.
func notesNotRun(c []string) (string, bool) {
	joined := strings.Join(c, " ")
	if strings.Contains(joined, "$(") {
		return "it needs a shell (command substitution) and Argo CD's argocd-cm, which the sandbox does not have; " +
			"config/argocd's tests check the health script it merges", true
	}
	return "", false
}
