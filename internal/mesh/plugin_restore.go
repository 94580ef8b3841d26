package mesh

import labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"

// DesiredSpec is the spec Restore writes back for orig: the journaled spec, a PeerAuthentication's mode STRICT.
// The kubectl plugin's restore --dry-run shows it, so a person sees exactly what would be written.
func DesiredSpec(orig labsv1.JournalEntry) (map[string]any, error) { return desiredSpec(orig) }
