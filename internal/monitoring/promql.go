// Package monitoring checks what config/prometheus and config/grafana ask of the manager's metrics: which metric
// names and label names their PromQL uses. Its tests hold the alert rules and the dashboard to the metrics the
// manager really exports.
//
// PromQL is read with regular expressions, not Prometheus's parser: github.com/prometheus/prometheus would move
// modules the operator pins (client_golang, common). The subset read here is what the repository's rules and
// dashboard use: selectors with label matchers, range and subquery brackets, function calls, aggregations with
// by/without, vector matching with on/ignoring/group_left/group_right, Grafana variables, label_values().
package monitoring

import (
	"regexp"
	"slices"
	"strings"
)

// Selector is one metric a query reads, with the label names its matchers use.
type Selector struct {
	Metric string
	Labels []string
}

// Use is what one query needs of the exported metrics.
type Use struct {
	// Selectors are the metrics read, each with its matchers' label names.
	Selectors []Selector
	// Grouping are the label names of by, without, on, ignoring, group_left and group_right clauses, and of
	// label_values().
	Grouping []string
}

var (
	stringLit   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	grafanaVar  = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	brackets    = regexp.MustCompile(`\[[^\]]*\]`)
	matchers    = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping    = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	labelValues = regexp.MustCompile(`label_values\(\s*(.*?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
	// A number token takes a duration's units along (offset 5m).
	token     = regexp.MustCompile(`[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?[a-zA-Z0-9]*|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelName = regexp.MustCompile(`[a-zA-Z_][a-zA-Z0-9_]*`)
)

// keywords are PromQL words that are neither metrics nor followed by a parenthesis.
var keywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
	"group_right", "inf", "nan", "Inf", "NaN"}

// Parse returns the metrics and label names a PromQL query (or a Grafana label_values() query) uses.
func Parse(query string) Use {
	var u Use
	// Matchers first: their values are strings, and strings are dropped next.
	query = matchers.ReplaceAllStringFunc(query, func(m string) string {
		sub := matchers.FindStringSubmatch(m)
		s := Selector{Metric: sub[1]}
		for _, n := range matcherName.FindAllStringSubmatch(stringLit.ReplaceAllString(sub[2], `""`), -1) {
			if n[1] == "__name__" {
				continue
			}
			s.Labels = append(s.Labels, n[1])
		}
		u.Selectors = append(u.Selectors, s)
		return " "
	})
	query = stringLit.ReplaceAllString(query, " ")
	query = grafanaVar.ReplaceAllString(query, " ")
	query = brackets.ReplaceAllString(query, " ")
	query = labelValues.ReplaceAllStringFunc(query, func(m string) string {
		sub := labelValues.FindStringSubmatch(m)
		u.Grouping = append(u.Grouping, sub[2])
		return " " + sub[1] + " "
	})
	query = grouping.ReplaceAllStringFunc(query, func(m string) string {
		u.Grouping = append(u.Grouping, labelName.FindAllString(grouping.FindStringSubmatch(m)[1], -1)...)
		return " "
	})
	for _, loc := range token.FindAllStringIndex(query, -1) {
		word := query[loc[0]:loc[1]]
		if word[0] >= '0' && word[0] <= '9' || slices.Contains(keywords, word) ||
			strings.HasPrefix(strings.TrimLeft(query[loc[1]:], " \t\n"), "(") {
			continue
		}
		u.Selectors = append(u.Selectors, Selector{Metric: word})
	}
	u.Selectors = slices.DeleteFunc(u.Selectors, func(s Selector) bool { return s.Metric == "" && len(s.Labels) == 0 })
	return u
}
