// Package crddocs unwraps Go comment line breaks in CRD descriptions (hack/crddocs runs it on config/crd/bases).
package crddocs

import (
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// Unwrap rewrites every description in the schema, at every depth, with Text.
func Unwrap(s *apiextensionsv1.JSONSchemaProps) {
	if s == nil {
		return
	}
	s.Description = Text(s.Description)
	for k, p := range s.Properties {
		Unwrap(&p)
		s.Properties[k] = p
	}
	if s.Items != nil {
		Unwrap(s.Items.Schema)
		for i := range s.Items.JSONSchemas {
			Unwrap(&s.Items.JSONSchemas[i])
		}
	}
	if s.AdditionalProperties != nil {
		Unwrap(s.AdditionalProperties.Schema)
	}
	for _, list := range [][]apiextensionsv1.JSONSchemaProps{s.AllOf, s.AnyOf, s.OneOf} {
		for i := range list {
			Unwrap(&list[i])
		}
	}
	Unwrap(s.Not)
}

// Text joins the lines of each paragraph with spaces, as Go's own doc rendering does. A blank line stays a
// paragraph break; a line that starts a list item ("- ", "* ", "1. "), an indented line and every line of a
// fenced code block keep their line break.
func Text(desc string) string {
	lines := strings.Split(desc, "\n")
	var b strings.Builder
	inCode, prevFence := false, false
	for i, line := range lines {
		fence := strings.HasPrefix(strings.TrimSpace(line), "```") || strings.HasPrefix(strings.TrimSpace(line), "~~~")
		if i > 0 {
			prev := lines[i-1]
			switch {
			case inCode || fence || prevFence || line == "" || prev == "" || keepsBreak(line):
				b.WriteByte('\n')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteString(line)
		if fence {
			inCode = !inCode
		}
		prevFence = fence
	}
	return b.String()
}

// keepsBreak: a list item or an indented line begins on a line of its own.
func keepsBreak(line string) bool {
	if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") ||
		strings.HasPrefix(line, "- ") || strings.HasPrefix(line, "* ") {
		return true
	}
	digits := len(line) - len(strings.TrimLeft(line, "0123456789"))
	return digits > 0 && strings.HasPrefix(line[digits:], ". ")
}
