package mailauth

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mailgate/gateway/sdk"
)

// FieldName is the name of the field this package writes and strips.
const FieldName = "Authentication-Results"

// header is the Authentication-Results field of RFC 8601 for the checks
// made, one result per line, and the QuarantineField when quarantine.
func (c *Checker) header(spf spfOutcome, dkims []dkimOutcome, dm dmarcOutcome, arc arcOutcome, quarantine bool) []byte {
	var clauses []string
	if c.opt.SPF {
		clauses = append(clauses, resinfo(&authres.SPFResult{
			Value: authres.ResultValue(spf.result), From: spf.mailfrom, Helo: spf.helo,
		}))
	}
	if c.opt.DKIM {
		if len(dkims) == 0 {
			clauses = append(clauses, "dkim=none")
		}
		for _, d := range dkims {
			clauses = append(clauses, resinfo(&authres.GenericResult{
				Method: "dkim", Value: authres.ResultValue(d.result),
				Params: map[string]string{"reason": d.reason, "header.d": d.domain, "header.s": d.selector, "header.b": d.b},
			}))
		}
	}
	if c.opt.DMARC != DMARCOff {
		params := map[string]string{"reason": dm.reason, "header.from": dm.domain}
		if dm.result == "fail" {
			params["policy.dmarc"] = dm.policy
		}
		clauses = append(clauses, resinfo(&authres.GenericResult{Method: "dmarc", Value: authres.ResultValue(dm.result), Params: params}))
	}
	if c.opt.ARC != nil {
		clauses = append(clauses, oneLine(arc.resinfo))
	}
	var b strings.Builder
	b.WriteString(FieldName + ": " + c.opt.AuthservID)
	if len(clauses) == 0 {
		b.WriteString("; none")
	}
	for _, cl := range clauses {
		b.WriteString(";\r\n\t" + cl)
	}
	b.WriteString("\r\n")
	if quarantine {
		b.WriteString(QuarantineField + ": dmarc (policy of " + oneLine(dm.domain) + ")\r\n")
	}
	return []byte(b.String())
}

// resinfo is one result formatted by go-msgauth/authres, without the
// separator before it and the blank it leaves after it.
func resinfo(r authres.Result) string {
	s := authres.Format("", []authres.Result{r})
	return oneLine(strings.TrimSpace(strings.TrimPrefix(s, "; ")))
}

// oneLine keeps text from breaking out of its header line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Ours reports whether f is an Authentication-Results field with our
// authserv-id (compared case-insensitively, RFC 8601 §5): one that came
// from outside is forged and must be removed.
func (c *Checker) Ours(f sdk.HeaderField) bool {
	return strings.EqualFold(f.Name, FieldName) && strings.EqualFold(AuthservID(f.Value), c.opt.AuthservID)
}

// AuthservID returns the authserv-id an Authentication-Results value
// starts with (RFC 8601 §2.2: CFWS, then a token or a quoted-string), ""
// when there is none.
func AuthservID(v string) string {
	i := skipCFWS(v, 0)
	if i < len(v) && v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v) && v[i] != '"'; i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	j := i
	for j < len(v) && !strings.ContainsRune(" \t\r\n;()\"", rune(v[j])) {
		j++
	}
	return v[i:j]
}

// skipCFWS returns the index after the blanks and comments (nested, with
// quoted pairs) that start at v[i].
func skipCFWS(v string, i int) int {
	depth := 0
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return i
		}
	}
	return min(i, len(v)) // a quoted pair's backslash may be the last byte
}
