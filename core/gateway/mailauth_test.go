package gateway_test

// The checks of inbound mail (the authentication block) through a whole
// gateway, with a real SMTP client on loopback and a DNS server there.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/mailauth/mailauthtest"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// authZone: pass.test lets 127.0.0.1 send, fail.test does not; both
// publish p=reject.
const authZone = `
pass.test.        300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
fail.test.        300 IN TXT "v=spf1 -all"
_dmarc.pass.test. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.fail.test. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.signed.test. 300 IN TXT "v=DMARC1; p=reject"
q.test.           300 IN TXT "v=spf1 -all"
_dmarc.q.test.    300 IN TXT "v=DMARC1; p=quarantine"
`

// startAuthGateway runs a gateway that checks mail from outside; relay is
// its relay.networks (the test client connects from 127.0.0.1).
func startAuthGateway(t *testing.T, zone, relay string) *gatewaytest.Gateway {
	t.Helper()
	return startAuthGatewayDNS(t, resolvertest.Start(t, authZone+zone), relay)
}

func startAuthGatewayDNS(t *testing.T, dns *resolvertest.Server, relay string) *gatewaytest.Gateway {
	t.Helper()
	return gatewaytest.Start(t, `
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
relay { networks = ["`+relay+`"] }
authentication {
  dmarc = "enforce"
}
lua "seen" { path = "`+writeScript(t, t.TempDir(), `
function on_data(ctx)
  local a = ctx.auth
  ctx.msg:add_header("X-Seen", a and (a.spf.result .. " " .. a.dmarc.result .. " " .. #a.dkim) or "unchecked")
end`)+`" }
delivery {
  resolver = "`+dns.Addr()+`"
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}
`)
}

// sendOutside delivers msg (LF line ends) from sender to bob@example.test and
// returns the server's reply to the end of the data.
func sendOutside(t *testing.T, g *gatewaytest.Gateway, sender, msg string) string {
	t.Helper()
	c := smtptest.Dial(t, g.Addr(t, "mx"))
	c.Run(`
		S: 220 mx.example.test ESMTP ready
		C: HELO client.outside.test
		S: 250 mx.example.test
		C: MAIL FROM:<` + sender + `>
		S: 250 2.1.0 Ok
		C: RCPT TO:<bob@example.test>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
	`)
	c.Send([]byte(mailauthtest.CRLF(msg) + ".\r\n"))
	reply, err := c.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// TestAuthenticationDKIMPass: a message dkimpy signed, from a client SPF
// does not allow, passes DMARC by DKIM; it arrives with a forged
// Authentication-Results of ours (removed) and another host's (kept), and
// is queued with our field on top, then the Received field, then what the
// data hook added from ctx.auth.
func TestAuthenticationDKIMPass(t *testing.T) {
	mailauthtest.NeedDkimpy(t)
	k := mailauthtest.RSA(t, "s1", "signed.test")
	g := startAuthGateway(t, k.Record, "127.0.0.2/32")
	signed := k.Sign(t, `From: Alice <alice@signed.test>
To: bob@example.test
Subject: report
Date: Sun, 06 Dec 2026 10:00:00 +0000

The figures.
`)
	forged := "Authentication-Results: MX.example.test; dmarc=pass header.from=bank.test\r\n" +
		"Authentication-Results: relay.other.test; spf=pass smtp.mailfrom=x@other.test\r\n"
	if got := sendOutside(t, g, "bounce@fail.test", forged+signed); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("reply %q", got)
	}
	msgs := g.Queued(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	data := string(msgs[0].Data)
	wantTop := "Authentication-Results: mx.example.test;\r\n" +
		"\tspf=fail smtp.mailfrom=bounce@fail.test;\r\n" +
		"\tdkim=pass header.b=" + mailauthtest.HeaderB(signed) + " header.d=signed.test header.s=s1;\r\n" +
		"\tdmarc=pass header.from=signed.test\r\n" +
		"Received: from client.outside.test ([127.0.0.1])\r\n"
	if !strings.HasPrefix(data, wantTop) {
		t.Errorf("queued message starts\n%s\nwant\n%s", data[:min(len(data), len(wantTop)+40)], wantTop)
	}
	if !strings.Contains(data, "\r\nX-Seen: fail pass 1\r\n") {
		t.Errorf("the data hook did not see ctx.auth:\n%s", data)
	}
	if strings.Contains(data, "bank.test") {
		t.Errorf("the forged Authentication-Results is still there:\n%s", data)
	}
	if !strings.Contains(data, "\r\n"+strings.TrimSuffix(forged[strings.Index(forged, "\r\n")+2:], "\r\n")+"\r\n") {
		t.Errorf("another host's Authentication-Results was removed:\n%s", data)
	}
	if !strings.HasSuffix(data, signed) {
		t.Errorf("the signed message was changed:\n%s", data)
	}
}

// TestAuthenticationDMARCReject: a From: the client may not send for,
// under p=reject and dmarc = "enforce", is refused and not queued.
func TestAuthenticationDMARCReject(t *testing.T) {
	g := startAuthGateway(t, "", "127.0.0.2/32")
	got := sendOutside(t, g, "x@pass.test", "From: ceo@fail.test\nSubject: pay this\n\nNow.\n")
	const want = "550 5.7.1 DMARC policy of fail.test rejects this message (From: not aligned with a passing SPF or DKIM)"
	if got != want {
		t.Errorf("reply\n%q\nwant\n%q", got, want)
	}
	if n := len(g.Queued(t)); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestAuthenticationSkipsRelayClients: a client in relay.networks is not
// checked: no Authentication-Results, ctx.auth nil, and no DMARC refusal;
// but one it brings with our authserv-id is removed all the same (a
// review found it kept): only our checks write those.
func TestAuthenticationSkipsRelayClients(t *testing.T) {
	g := startAuthGateway(t, "", "127.0.0.1/32")
	forged := "Authentication-Results: mx.example.test; dmarc=pass header.from=bank.test\n"
	if got := sendOutside(t, g, "x@pass.test", forged+"From: ceo@fail.test\n\nNow.\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("reply %q", got)
	}
	msgs := g.Queued(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	data := string(msgs[0].Data)
	if !strings.HasPrefix(data, "Received: ") || strings.Contains(data, "Authentication-Results") || !strings.Contains(data, "X-Seen: unchecked\r\n") {
		t.Errorf("a relay client's message was checked:\n%s", data)
	}
}

// TestAuthenticationQuarantineAndDefer: under dmarc = "enforce", a
// failure under p=quarantine is queued with X-Gateway-Quarantine, and a
// DMARC record DNS cannot give now defers the message with 451 4.7.5.
func TestAuthenticationQuarantineAndDefer(t *testing.T) {
	dns := resolvertest.Start(t, authZone)
	dns.SetFault("_dmarc.temp.test.", 16, resolvertest.ServFail) // TXT
	g := startAuthGatewayDNS(t, dns, "127.0.0.2/32")

	got := sendOutside(t, g, "x@pass.test", "From: x@temp.test\n\nhi\n")
	if want := "451 4.7.5 DMARC check of temp.test failed temporarily (DNS), try again later"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	if got := sendOutside(t, g, "x@q.test", "From: x@q.test\n\nhi\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("reply %q", got)
	}
	msgs := g.Queued(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	const wantTop = "Authentication-Results: mx.example.test;\r\n" +
		"\tspf=fail smtp.mailfrom=x@q.test;\r\n" +
		"\tdkim=none;\r\n" +
		"\tdmarc=fail header.from=q.test policy.dmarc=quarantine\r\n" +
		"X-Gateway-Quarantine: dmarc (policy of q.test)\r\n" +
		"Received: "
	if data := string(msgs[0].Data); !strings.HasPrefix(data, wantTop) {
		t.Errorf("queued message\n%s\nwant it to start\n%s", data, wantTop)
	}
}

// TestAuthenticationBDAT: a message sent in BDAT chunks is checked like
// one sent with DATA.
func TestAuthenticationBDAT(t *testing.T) {
	g := startAuthGateway(t, "", "127.0.0.2/32")
	msg := mailauthtest.CRLF("From: ceo@fail.test\nSubject: pay this\n\nNow.\n")
	c := smtptest.Dial(t, g.Addr(t, "mx"))
	c.Run(`
		S: 220 mx.example.test ESMTP ready
		C: EHLO client.outside.test
	`)
	for {
		line, err := c.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "250 ") {
			break
		}
	}
	c.Run(`
		C: MAIL FROM:<x@pass.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<bob@example.test>
		S: 250 2.1.5 Ok
	`)
	c.Send([]byte(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg)))
	got, err := c.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	const want = "550 5.7.1 DMARC policy of fail.test rejects this message (From: not aligned with a passing SPF or DKIM)"
	if got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
}
