package sandbox

import "github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"

// SetNodeFault makes node's ztunnel misbehave (dataplane.FaultNoEnforce, dataplane.FaultRefuseAll) until it is
// switched off with dataplane.FaultNone: per-node verification must fail and name that node.
func (s *Sandbox) SetNodeFault(node string, f dataplane.Fault) { s.Dataplane.SetNodeFault(node, f) }
