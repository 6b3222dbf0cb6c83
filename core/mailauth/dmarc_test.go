package mailauth_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/mailauth"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/sdk"
)

// TestDMARC covers the DMARC outcomes without signatures: pass by SPF
// alone, each policy on failure, sp= and pct=, and the From: rules.
func TestDMARC(t *testing.T) {
	w := newWorld(t, "")
	w.dns.SetFault("_dmarc.temp.test.", 16, resolvertest.ServFail)
	const dkimNone = "\tdkim=none;\r\n"
	for _, tc := range []struct {
		name, mode, sender, from string
		sample                   bool
		action                   mailauth.Action
		dmarc                    sdk.DMARCResult
		clause                   string // the dmarc clause of the header
	}{
		{"pass by SPF", "enforce", "a@pass.test", "From: x@pass.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "pass", Policy: "reject", Domain: "pass.test"}, "dmarc=pass header.from=pass.test"},
		{"pass relaxed", "enforce", "a@pass.test", "From: x@news.pass.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "pass", Policy: "reject", Domain: "news.pass.test"}, "dmarc=pass header.from=news.pass.test"},
		{"reject", "enforce", "a@fail.test", "From: x@fail.test", true, mailauth.Reject,
			sdk.DMARCResult{Result: "fail", Policy: "reject", Domain: "fail.test"}, "dmarc=fail header.from=fail.test policy.dmarc=reject"},
		{"reject reported", "report", "a@fail.test", "From: x@fail.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "fail", Policy: "reject", Domain: "fail.test"}, "dmarc=fail header.from=fail.test policy.dmarc=reject"},
		{"spoofed From", "enforce", "a@pass.test", "From: ceo@fail.test", true, mailauth.Reject,
			sdk.DMARCResult{Result: "fail", Policy: "reject", Domain: "fail.test"}, "dmarc=fail header.from=fail.test policy.dmarc=reject"},
		{"quarantine", "enforce", "a@softfail.test", "From: x@softfail.test", true, mailauth.Quarantine,
			sdk.DMARCResult{Result: "fail", Policy: "quarantine", Domain: "softfail.test"}, "dmarc=fail header.from=softfail.test policy.dmarc=quarantine"},
		{"p=none", "enforce", "a@neutral.test", "From: x@neutral.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "fail", Policy: "none", Domain: "neutral.test"}, "dmarc=fail header.from=neutral.test policy.dmarc=none"},
		{"no record", "enforce", "a@none.test", "From: x@none.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "none", Domain: "none.test"}, "dmarc=none header.from=none.test"},
		{"sp for a subdomain", "enforce", "a@fail.test", "From: x@mail.example.com", true, mailauth.Quarantine,
			sdk.DMARCResult{Result: "fail", Policy: "quarantine", Domain: "mail.example.com"}, "dmarc=fail header.from=mail.example.com policy.dmarc=quarantine"},
		{"out of the pct sample", "enforce", "a@fail.test", "From: x@half.test", false, mailauth.Quarantine,
			sdk.DMARCResult{Result: "fail", Policy: "quarantine", Domain: "half.test"}, "dmarc=fail header.from=half.test policy.dmarc=quarantine"},
		{"in the pct sample", "enforce", "a@fail.test", "From: x@half.test", true, mailauth.Reject,
			sdk.DMARCResult{Result: "fail", Policy: "reject", Domain: "half.test"}, "dmarc=fail header.from=half.test policy.dmarc=reject"},
		{"record unavailable", "enforce", "a@pass.test", "From: x@temp.test", true, mailauth.Defer,
			sdk.DMARCResult{Result: "temperror", Domain: "temp.test"}, `dmarc=temperror reason="DMARC record unavailable" header.from=temp.test`},
		{"record unavailable reported", "report", "a@pass.test", "From: x@temp.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "temperror", Domain: "temp.test"}, `dmarc=temperror reason="DMARC record unavailable" header.from=temp.test`},
		{"aligned SPF temperror", "enforce", "a@temperror.test", "From: x@temperror.test", true, mailauth.Defer,
			sdk.DMARCResult{Result: "temperror", Policy: "reject", Domain: "temperror.test"},
			`dmarc=temperror reason="an aligned identifier could not be checked" header.from=temperror.test`},
		{"no From", "enforce", "a@pass.test", "Subject: x", true, mailauth.Reject,
			sdk.DMARCResult{Result: "permerror"}, `dmarc=permerror reason="no From: field"`},
		{"no From reported", "report", "a@pass.test", "Subject: x", true, mailauth.Accept,
			sdk.DMARCResult{Result: "permerror"}, `dmarc=permerror reason="no From: field"`},
		{"address in an encoded word", "enforce", "a@pass.test", "From: =?utf-8?q?ceo=40fail.test?=", true, mailauth.Reject,
			sdk.DMARCResult{Result: "permerror"}, `dmarc=permerror reason="From: has no address with a domain"`},
		{"address in an encoded word reported", "report", "a@pass.test", "From: =?utf-8?q?ceo=40fail.test?=", true, mailauth.Accept,
			sdk.DMARCResult{Result: "permerror"}, `dmarc=permerror reason="From: has no address with a domain"`},
		{"empty group", "enforce", "a@pass.test", "From: undisclosed-recipients:;", true, mailauth.Reject,
			sdk.DMARCResult{Result: "permerror"}, `dmarc=permerror reason="From: has no address with a domain"`},
		{"one From without a domain", "enforce", "a@pass.test", "From: ceo\nFrom: x@pass.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "pass", Policy: "reject", Domain: "pass.test"}, "dmarc=pass header.from=pass.test"},
		{"five author domains", "enforce", "a@pass.test", "From: a@d1.test, b@d2.test, c@d3.test, d@d4.test, e@fail.test", true, mailauth.Reject,
			sdk.DMARCResult{Result: "fail", Policy: "reject", Domain: "fail.test"}, "dmarc=fail header.from=fail.test policy.dmarc=reject"},
		{"six author domains", "enforce", "a@pass.test", "From: a@d1.test, b@d2.test, c@d3.test, d@d4.test, e@d5.test\nFrom: F@D6.test, a@d1.test", true, mailauth.Reject,
			sdk.DMARCResult{Result: "permerror"}, `dmarc=permerror reason="From: has more than 5 author domains"`},
		{"six author domains reported", "report", "a@pass.test", "From: a@d1.test, b@d2.test, c@d3.test, d@d4.test, e@d5.test, f@d6.test", true, mailauth.Accept,
			sdk.DMARCResult{Result: "permerror"}, `dmarc=permerror reason="From: has more than 5 author domains"`},
		{"two authors, strictest", "enforce", "a@pass.test", "From: x@pass.test, y@fail.test", true, mailauth.Reject,
			sdk.DMARCResult{Result: "fail", Policy: "reject", Domain: "fail.test"}, "dmarc=fail header.from=fail.test policy.dmarc=reject"},
		{"two From fields", "enforce", "a@softfail.test", "From: x@neutral.test\nFrom: x@softfail.test", true, mailauth.Quarantine,
			sdk.DMARCResult{Result: "fail", Policy: "quarantine", Domain: "softfail.test"}, "dmarc=fail header.from=softfail.test policy.dmarc=quarantine"},
		{"unparsable From", "enforce", "a@pass.test", "From: <<x@fail.test", true, mailauth.Reject,
			sdk.DMARCResult{Result: "fail", Policy: "reject", Domain: "fail.test"}, "dmarc=fail header.from=fail.test policy.dmarc=reject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := w.checker(t, tc.mode, tc.sample)
			m := input(t, tc.sender, "client.test", tc.from+"\nSubject: hi\n\nbody\n")
			v := check(t, c, m)
			if v.Results.DMARC != tc.dmarc {
				t.Errorf("dmarc %+v, want %+v", v.Results.DMARC, tc.dmarc)
			}
			if v.Action != tc.action {
				t.Errorf("action %v, want %v (reply %q)", v.Action, tc.action, v.Reply)
			}
			want := "Authentication-Results: mx.example.test;\r\n\tspf=" + v.Results.SPF.Result +
				" smtp.mailfrom=" + tc.sender + ";\r\n" + dkimNone + "\t" + tc.clause + "\r\n"
			if tc.action == mailauth.Quarantine {
				want += "X-Gateway-Quarantine: dmarc (policy of " + tc.dmarc.Domain + ")\r\n"
			}
			if string(v.Header) != want {
				t.Errorf("header\n%s\nwant\n%s", v.Header, want)
			}
		})
	}
}

func TestDeferReply(t *testing.T) {
	w := newWorld(t, "")
	w.dns.SetFault("_dmarc.temp.test.", 16, resolvertest.ServFail)
	v := check(t, w.checker(t, "enforce", true), input(t, "a@pass.test", "c.test", "From: x@temp.test\n\nb\n"))
	if v.Action != mailauth.Defer || v.Reply != "DMARC check of temp.test failed temporarily (DNS), try again later" {
		t.Errorf("verdict %v %q", v.Action, v.Reply)
	}
}

// TestUnjudgedReply: the refusal of a message DMARC cannot judge says why.
func TestUnjudgedReply(t *testing.T) {
	w := newWorld(t, "")
	c := w.checker(t, "enforce", true)
	for from, want := range map[string]string{
		"":                               "DMARC cannot judge this message (no From: field)",
		"From: =?utf-8?q?a=40b.test?=\n": "DMARC cannot judge this message (From: has no address with a domain)",
		"From: a@1.test, a@2.test, a@3.test, a@4.test, a@5.test, a@6.test\n": "DMARC cannot judge this message (From: has more than 5 author domains)",
	} {
		v := check(t, c, input(t, "a@pass.test", "c.test", from+"Subject: s\n\nb\n"))
		if v.Action != mailauth.Reject || v.Reply != want {
			t.Errorf("%q: verdict %v %q, want %q", from, v.Action, v.Reply, want)
		}
	}
}

// TestAuthorDomainQueries: DMARC looks up each author domain once (and
// its organizational domain when it has no record), and none at all when
// From: has more than 5: a long From: costs no more DNS than a short one.
func TestAuthorDomainQueries(t *testing.T) {
	w := newWorld(t, "")
	c := w.checker(t, "enforce", true)
	var many []string
	for i := range 500 {
		many = append(many, fmt.Sprintf("a@d%d.test", i))
	}
	for _, tc := range []struct {
		from  string
		dmarc int // queries for _dmarc names
	}{
		{"a@d1.test, b@x.d2.test, c@d3.test, d@d4.test, e@d5.test", 6},
		{strings.Join(many, ", "), 0},
	} {
		before := w.dns.TotalQueries()
		check(t, c, input(t, "", fmt.Sprintf("c%d.test", before), "From: "+tc.from+"\n\nb\n"))
		// The SPF check of the HELO name is one query more.
		if n := w.dns.TotalQueries() - before - 1; n != tc.dmarc {
			t.Errorf("From: %.40s…: %d DMARC queries, want %d", tc.from, n, tc.dmarc)
		}
	}
}

func TestOurs(t *testing.T) {
	w := newWorld(t, "")
	c := w.checker(t, "report", true)
	for _, tc := range []struct {
		f    sdk.HeaderField
		ours bool
	}{
		{sdk.HeaderField{Name: "Authentication-Results", Value: "mx.example.test; spf=pass"}, true},
		{sdk.HeaderField{Name: "authentication-results", Value: "MX.Example.TEST; dkim=pass"}, true},
		{sdk.HeaderField{Name: "Authentication-Results", Value: "(forged) mx.example.test;none"}, true},
		{sdk.HeaderField{Name: "Authentication-Results", Value: `"mx.example.test" 1; none`}, true},
		{sdk.HeaderField{Name: "Authentication-Results", Value: "mx.example.test"}, true},
		{sdk.HeaderField{Name: "Authentication-Results", Value: "mx.example.test.evil; spf=pass"}, false},
		{sdk.HeaderField{Name: "Authentication-Results", Value: "mx.other.test; spf=pass"}, false},
		{sdk.HeaderField{Name: "ARC-Authentication-Results", Value: "i=1; mx.example.test; spf=pass"}, false},
	} {
		if got := c.Ours(tc.f); got != tc.ours {
			t.Errorf("Ours(%q: %q) = %v, want %v", tc.f.Name, tc.f.Value, got, tc.ours)
		}
	}
}
