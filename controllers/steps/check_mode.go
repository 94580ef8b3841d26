package steps

import (
	"context"
	"fmt"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// checkModeExecutor checks the lab guide's starting point: the target's effective mTLS mode is STRICT. The mode
// comes from every PeerAuthentication that applies to the target's pods (workload, namespace, mesh), not from the
// mesh-wide object alone, and the step names the one that decided.
type checkModeExecutor struct{ env Target }

func (x checkModeExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	modes, err := x.env.TargetModes(ctx, in.Run)
	if err != nil {
		return Errored(err.Error()), nil
	}
	for _, m := range modes {
		if m.Mode != mesh.Strict {
			return Concluded(labsv1.VerdictFail, "effective mode "+m.String(), fmt.Sprintf(
				"The target pod %s is %s, not STRICT: plaintext may reach it", m.Pod, m.ModeDecision)), nil
		}
	}
	return Concluded(labsv1.VerdictPass, "effective mode "+modes[0].String(),
		fmt.Sprintf("Every target pod (%d) is STRICT", len(modes))), nil
}
