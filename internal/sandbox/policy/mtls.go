package policy

import (
	secv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// paLevels holds the winning PeerAuthentication at each scope for one workload.
type paLevels struct {
	mesh, namespace, workload *securityv1.PeerAuthentication
}

// EffectiveMTLS returns the mTLS mode in effect for dst (its namespace, labels and
// Port), following ISTIO-FACTS.md "PeerAuthentication in ambient":
//   - scope: no selector in the root namespace = mesh; no selector elsewhere =
//     namespace; selector outside the root namespace = workload; selector policies
//     in the root namespace are ignored;
//   - precedence workload > namespace > mesh, UNSET (or a nil mtls) inherits from
//     the parent, and UNSET with no parent is PERMISSIVE;
//   - at one level the oldest policy wins (tie: name order);
//   - portLevelMtls of the workload-level policy overrides the mode for that
//     container port (a non-UNSET port mode wins; UNSET inherits).
//
// DISABLE is reported as ModeDisable; it behaves as non-STRICT.
func EffectiveMTLS(cfg Config, dst Workload) string {
	lv := selectPeerAuthentications(cfg, dst)
	mode := secv1beta1.PeerAuthentication_MutualTLS_UNSET
	for _, pa := range []*securityv1.PeerAuthentication{lv.mesh, lv.namespace, lv.workload} {
		if pa == nil {
			continue
		}
		if m := pa.Spec.GetMtls().GetMode(); m != secv1beta1.PeerAuthentication_MutualTLS_UNSET {
			mode = m
		}
	}
	if lv.workload != nil && dst.Port > 0 && dst.Port <= 65535 {
		// portLevelMtls needs a selector, so only the workload-level policy can
		// carry it (ISTIO-FACTS.md); ports are container ports.
		if pm := lv.workload.Spec.GetPortLevelMtls()[uint32(dst.Port)].GetMode(); pm != secv1beta1.PeerAuthentication_MutualTLS_UNSET {
			mode = pm
		}
	}
	return modeName(mode)
}

func modeName(m secv1beta1.PeerAuthentication_MutualTLS_Mode) string {
	switch m {
	case secv1beta1.PeerAuthentication_MutualTLS_STRICT:
		return ModeStrict
	case secv1beta1.PeerAuthentication_MutualTLS_DISABLE:
		return ModeDisable
	default:
		// PERMISSIVE, or UNSET with no parent (ISTIO-FACTS.md).
		return ModePermissive
	}
}

// selectPeerAuthentications classifies the PeerAuthentications that apply to dst by
// scope and keeps the oldest one at each scope.
func selectPeerAuthentications(cfg Config, dst Workload) paLevels {
	root := cfg.rootNamespace()
	var lv paLevels
	for _, pa := range cfg.PeerAuthentications {
		if pa == nil {
			continue
		}
		// Like istiod, a selector with no matchLabels counts as no selector.
		hasSelector := len(pa.Spec.GetSelector().GetMatchLabels()) > 0
		switch {
		case pa.Namespace == root && !hasSelector:
			lv.mesh = older(lv.mesh, pa)
		case pa.Namespace == root:
			// Selector policies in the root namespace are ignored (ISTIO-FACTS.md).
		case pa.Namespace != dst.Namespace:
			// Another namespace's policy.
		case !hasSelector:
			lv.namespace = older(lv.namespace, pa)
		case isSubset(pa.Spec.GetSelector().GetMatchLabels(), dst.Labels):
			lv.workload = older(lv.workload, pa)
		}
	}
	return lv
}

// older returns the older of cur and cand by metadata.creationTimestamp; on a tie
// the lower "<ns>/<name>" wins ("At one level, the oldest policy wins",
// ISTIO-FACTS.md).
func older(cur, cand *securityv1.PeerAuthentication) *securityv1.PeerAuthentication {
	if cur == nil {
		return cand
	}
	ct, nt := cur.CreationTimestamp, cand.CreationTimestamp
	if nt.Before(&ct) {
		return cand
	}
	if ct.Equal(&nt) && key(cand.Namespace, cand.Name) < key(cur.Namespace, cur.Name) {
		return cand
	}
	return cur
}
