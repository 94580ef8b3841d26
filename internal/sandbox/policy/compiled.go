package policy

// compiled is one Authorization as ztunnel holds it (istiod converted it; see
// istiod.go): a policy matches when any rule matches; a rule matches when all
// its clauses match; a clause matches when any of its match groups matches.
type compiled struct {
	key   string
	deny  bool
	rules []l4Rule
}

type l4Rule []clause

type clause []matchGroup
