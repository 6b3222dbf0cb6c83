package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error is a configuration that could not be loaded: every problem found,
// each a diagnostic naming the file, line and column it is about. Callers
// that need the positions use errors.As and read Diagnostics.
type Error struct {
	Diagnostics hcl.Diagnostics
}

// newError sorts diags by position (file, line, column) and wraps them.
func newError(diags hcl.Diagnostics) *Error {
	diags = slices.Clone(diags)
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		if a.Subject == nil || b.Subject == nil {
			return cmp.Compare(boolInt(a.Subject != nil), boolInt(b.Subject != nil))
		}
		return cmp.Or(
			cmp.Compare(a.Subject.Filename, b.Subject.Filename),
			cmp.Compare(a.Subject.Start.Line, b.Subject.Start.Line),
			cmp.Compare(a.Subject.Start.Column, b.Subject.Start.Column),
		)
	})
	return &Error{Diagnostics: diags}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Error prints one line per diagnostic:
//
//	FILE:LINE:COL: SUMMARY; DETAIL
//
// A diagnostic without a detail ends after the summary; one without a
// position starts with the summary.
func (e *Error) Error() string {
	var b strings.Builder
	for i, d := range e.Diagnostics {
		if i > 0 {
			b.WriteByte('\n')
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(oneLine(d.Summary))
		if d.Detail != "" {
			b.WriteString("; ")
			b.WriteString(oneLine(d.Detail))
		}
	}
	return b.String()
}

// oneLine keeps a diagnostic on its line: some HCL details span lines.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.ReplaceAll(s, "\n", " ")
}
