package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// Defaults of where the operator runs (config/default).
const (
	defaultOperatorNamespace = "labrun-system"
	defaultManagerSA         = "labrun-controller-manager"
)

type restoreOptions struct {
	*Options
	operatorNS string
	managerSA  string
	asManager  bool
	dryRun     bool
}

func newRestoreCommand(o *Options) *cobra.Command {
	r := &restoreOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "restore [--dry-run] [--as-manager]",
		Short: "Emergency: put back what LabRuns left changed in the mesh, when the operator is gone",
		Long: `Put back every mesh change a LabRun made and the operator has not restored: the operator is gone
(uninstalled, crash-looping, its namespace broken) and the mesh is left weakened. The plugin reads only the
operator's trusted records (ConfigMaps labrun-record-<uid> in --operator-namespace, which only the operator's
ServiceAccount writes), never a LabRun's status or the marks on policies, and restores each pending entry
with the operator's own restore code: the PeerAuthentication or AuthorizationPolicy gets back its journaled spec
(a PeerAuthentication always STRICT), labels and annotations; a temporary PeerAuthentication the run created
is deleted. Each entry is read back and marked restored in the record, and the record is marked interrupted, so
an operator that comes back ends the run (Failed, mesh restored) instead of resuming it. While the operator
runs it restores by itself: you do not need this.

Rights: you need get, list and update on ConfigMaps in the operator namespace, and get, update, create and
delete on peerauthentications and authorizationpolicies (security.istio.io) where runs changed them.

Admission: the operator's policy mesh-marks (installed as labrun-mesh-marks) lets only its ServiceAccount add, change or remove labs.ambientlab.io/
marks on Istio policies, and restoring removes the run's marks. Run as yourself, a restore of a changed policy is
therefore refused; --as-manager makes the plugin act as the operator's ServiceAccount (Kubernetes
impersonation: you need the impersonate verb on that ServiceAccount, which cluster admins have, and the API
server's audit log records who impersonated). Deleting a temporary PeerAuthentication is not refused.

--dry-run lists each pending entry (kind, namespace/name, the change the run made, and what would be written
back) and changes nothing.`,
		Example: `  kubectl labrun restore --dry-run
  kubectl labrun restore --as-manager`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return r.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&r.operatorNS, "operator-namespace", defaultOperatorNamespace, "the namespace the operator runs in, where its trusted records are")
	f.StringVar(&r.managerSA, "manager-service-account", defaultManagerSA, "the operator's ServiceAccount, for --as-manager")
	f.BoolVar(&r.asManager, "as-manager", false, "act as the operator's ServiceAccount (impersonation), which the mesh-marks admission policy lets restore marked policies")
	f.BoolVar(&r.dryRun, "dry-run", false, "list what would be restored and change nothing")
	return cmd
}

func (r *restoreOptions) run(ctx context.Context) error {
	cfg, err := r.config()
	if err != nil {
		return err
	}
	c, err := clientFor(cfg)
	if err != nil {
		return err
	}
	store := mesh.Store{Client: c, Reader: c, Namespace: r.operatorNS}
	recs, undecodable, err := store.List(ctx)
	if err != nil {
		return err
	}
	for _, err := range undecodable {
		fmt.Fprintln(r.Streams.ErrOut, "Warning: skipping a record nothing can be restored from:", err)
	}
	var pending []*mesh.Record
	for _, rec := range recs {
		if len(rec.Pending()) > 0 {
			pending = append(pending, rec)
		}
	}
	if len(pending) == 0 {
		fmt.Fprintf(r.Streams.Out, "Nothing to restore: no trusted record in namespace %s has a change pending\n", r.operatorNS)
		return nil
	}
	for _, rec := range pending {
		if err := r.restoreRecord(ctx, c, store, rec); err != nil {
			return err
		}
	}
	return nil
}

// config is the user's connection; with --as-manager, impersonating the operator's ServiceAccount.
func (r *restoreOptions) config() (*rest.Config, error) {
	cfg, err := r.restConfig()
	if err != nil || !r.asManager {
		return cfg, err
	}
	if cfg.Impersonate.UserName != "" {
		return nil, &exitError{code: ExitError, err: fmt.Errorf("--as-manager and --as %s both impersonate: give one", cfg.Impersonate.UserName)}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + r.operatorNS + ":" + r.managerSA,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + r.operatorNS, "system:authenticated"},
	}
	return cfg, nil
}

// restoreRecord lists (dry run) or restores each pending entry of one run's record.
func (r *restoreOptions) restoreRecord(ctx context.Context, c client.Client, store mesh.Store, rec *mesh.Record) error {
	out := r.Streams.Out
	fmt.Fprintf(out, "LabRun %s (uid %s), record %s/%s:\n", rec.Run, rec.Run.UID, r.operatorNS, mesh.RecordName(rec.Run.UID))
	if r.dryRun {
		for _, e := range rec.Pending() {
			if err := describe(out, *e); err != nil {
				return err
			}
		}
		return nil
	}
	// Marked first, as the operator's takeover does: an operator that comes back ends this run, whose changes
	// are no longer what it believes, instead of resuming it.
	if rec.Interrupted == nil {
		now := metav1.Now()
		rec.Interrupted = &now
		if err := store.Save(ctx, rec); err != nil {
			return err
		}
	}
	for _, e := range rec.Pending() {
		if err := restoreEntry(ctx, c, *e); err != nil {
			return err
		}
		e.Restored, e.Change = true, ""
		if err := store.Save(ctx, rec); err != nil {
			return err
		}
		fmt.Fprintf(out, "  restored %s\n", mesh.RefOf(*e))
	}
	return nil
}

// restoreEntry puts one original back with the operator's restore and reads it back.
func restoreEntry(ctx context.Context, c client.Client, e labsv1.JournalEntry) error {
	err := mesh.Restore(ctx, c, e)
	if err == nil {
		err = mesh.Verify(ctx, c, e)
	}
	if err != nil && apierrors.IsForbidden(err) && strings.Contains(err.Error(), "labs.ambientlab.io/") {
		return fmt.Errorf("%w\nThe admission policy mesh-marks (labrun-mesh-marks) lets only the operator's ServiceAccount remove a run's marks: "+
			"run kubectl labrun restore --as-manager (it impersonates that ServiceAccount; cluster admins may)", err)
	}
	return err
}

// describe prints what restoring e would do.
func describe(out io.Writer, e labsv1.JournalEntry) error {
	ref := mesh.RefOf(e)
	if e.Created {
		_, err := fmt.Fprintf(out, "  %s: created by the run; would delete it\n", ref)
		return err
	}
	spec, err := mesh.DesiredSpec(e)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(map[string]any{"spec": spec, "labels": e.Labels, "annotations": e.Annotations})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "  %s: changed by the run (%s); would write back %s\n", ref, orDash(e.Change), raw)
	return err
}
