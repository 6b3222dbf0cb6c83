package gateway_test

// The From: field DMARC judges, through a whole gateway: the one a lenient
// reader downstream sees, and no way around dmarc = "enforce" by leaving
// no author domain to judge or by naming too many.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// TestAuthenticationEmptyFieldName: a line with an empty field name
// (": x") does not end the header section, as it does not for Python's
// email package: the From: below it is judged and refused, and a forged
// Authentication-Results below it is removed.
func TestAuthenticationEmptyFieldName(t *testing.T) {
	g := startAuthGateway(t, "", "127.0.0.2/32")
	got := sendOutside(t, g, "x@pass.test", "Subject: pay this\n: x\nFrom: ceo@fail.test\n"+
		"Authentication-Results: mx.example.test; dmarc=pass header.from=fail.test\n\nNow.\n")
	const want = "550 5.7.1 DMARC policy of fail.test rejects this message (From: not aligned with a passing SPF or DKIM)"
	if got != want {
		t.Errorf("reply\n%q\nwant\n%q", got, want)
	}
	if n := len(g.Queued(t)); n != 0 {
		t.Fatalf("%d messages queued", n)
	}

	got = sendOutside(t, g, "x@pass.test", "Subject: hi\n: x\nFrom: a@pass.test\n"+
		"Authentication-Results: mx.example.test; dmarc=pass header.from=bank.test\n\nNow.\n")
	if !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("reply %q", got)
	}
	msgs := g.Queued(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	data := string(msgs[0].Data)
	const wantTop = "Authentication-Results: mx.example.test;\r\n" +
		"\tspf=pass smtp.mailfrom=x@pass.test;\r\n" +
		"\tdkim=none;\r\n" +
		"\tdmarc=pass header.from=pass.test\r\n" +
		"Received: "
	if !strings.HasPrefix(data, wantTop) {
		t.Errorf("queued message\n%s\nwant it to start\n%s", data, wantTop)
	}
	if strings.Contains(data, "bank.test") {
		t.Errorf("the forged Authentication-Results is still there:\n%s", data)
	}
	if !strings.Contains(data, "\r\nSubject: hi\r\n: x\r\nFrom: a@pass.test\r\n\r\nNow.\r\n") {
		t.Errorf("the header section was changed:\n%s", data)
	}
}

// TestAuthenticationNoAuthorDomain: under dmarc = "enforce", a message
// with no From: domain DMARC can judge is refused (RFC 7489 §6.6.1): an
// address only in an encoded word (readers show ceo@fail.test), no
// From: at all, and no address in From:.
func TestAuthenticationNoAuthorDomain(t *testing.T) {
	g := startAuthGateway(t, "", "127.0.0.2/32")
	for _, tc := range []struct{ header, want string }{
		{"From: =?utf-8?q?ceo=40fail.test?=\n", "550 5.7.1 DMARC cannot judge this message (From: has no address with a domain)"},
		{"", "550 5.7.1 DMARC cannot judge this message (no From: field)"},
		{"From: undisclosed-recipients:;\n", "550 5.7.1 DMARC cannot judge this message (From: has no address with a domain)"},
	} {
		if got := sendOutside(t, g, "x@pass.test", tc.header+"Subject: pay this\n\nNow.\n"); got != tc.want {
			t.Errorf("%q: reply\n%q\nwant\n%q", tc.header, got, tc.want)
		}
	}
	if n := len(g.Queued(t)); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestAuthenticationManyAuthorDomains: a From: with 500 addresses in 500
// domains costs no DMARC look-up and is refused under "enforce": listing
// many domains is no way around p=reject, nor a way to make the gateway
// send hundreds of queries.
func TestAuthenticationManyAuthorDomains(t *testing.T) {
	dns := resolvertest.Start(t, authZone)
	g := startAuthGatewayDNS(t, dns, "127.0.0.2/32")
	var from []string
	for i := range 500 {
		from = append(from, fmt.Sprintf("a@d%d.test", i))
	}
	from = append(from, "ceo@fail.test")
	before := dns.TotalQueries()
	got := sendOutside(t, g, "x@pass.test", "From: "+strings.Join(from, ", ")+"\nSubject: pay this\n\nNow.\n")
	const want = "550 5.7.1 DMARC cannot judge this message (From: has more than 5 author domains)"
	if got != want {
		t.Errorf("reply\n%q\nwant\n%q", got, want)
	}
	// SPF of pass.test: its TXT record, nothing for DMARC.
	if n := dns.TotalQueries() - before; n > 2 {
		t.Errorf("%d DNS queries, want at most 2", n)
	}
	if n := len(g.Queued(t)); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestAuthenticationHeaderEndedByALine: a header section ended by a line
// that is not a field (readers disagree on it: some read on) is queued
// with an empty line before that line, so that a forged
// Authentication-Results after it is body for every reader, not a field
// the checks never saw.
func TestAuthenticationHeaderEndedByALine(t *testing.T) {
	g := startAuthGateway(t, "", "127.0.0.2/32")
	msg := "From: a@pass.test\nSubject: x\nbogus line\nAuthentication-Results: mx.example.test; dmarc=pass header.from=bank.test\n\nbody\n"
	if got := sendOutside(t, g, "x@pass.test", msg); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("reply %q", got)
	}
	msgs := g.Queued(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	data := string(msgs[0].Data)
	head, body, _ := strings.Cut(data, "\r\n\r\n")
	if strings.Count(head, "Authentication-Results:") != 1 || strings.Contains(head, "bank.test") ||
		!strings.HasPrefix(body, "bogus line\r\nAuthentication-Results: mx.example.test; dmarc=pass") {
		t.Errorf("queued:\n%s", data)
	}
}
