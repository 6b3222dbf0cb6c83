package delivery_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// TestRequireTLSDANEHostListedByMTASTS: RFC 8689 §4.2.1 asks two things
// of the next hop of a REQUIRETLS message: that its name be vouched for
// (a DNSSEC-validated MX answer, or an MTA-STS policy listing it), and
// that its certificate be verified (PKIX or DANE). Here pol.test's zone
// is not signed, but its MTA-STS policy in enforce mode lists
// mx1.pol.test, whose own zone is signed and publishes a matching DANE-EE
// record: both demands are met. On main DANE wins the plan (level
// "dane"), and requireTLSFailure then asks for a validated MX answer
// unless the level is "mta-sts", so the message bounces 5.7.30, a
// permanent failure for a hop that is as safe as REQUIRETLS asks (a
// domain hosted at a provider that signs its MX zone and publishes DANE,
// the domain itself unsigned but publishing MTA-STS, is common).
func TestRequireTLSDANEHostListedByMTASTS(t *testing.T) {
	zone := stsZone + `
_25._tcp.mx1.pol.test.  IN TLSA 3 1 1 SPKI(127.0.0.21)
`
	sinks := []sinkSpec{{ip: "127.0.0.21", tls: true, names: []string{"mx1.pol.test"}}}
	// The MX host and its TLSA records are signed; pol.test's MX answer is not.
	w := newPolicyWorld(t, zone, sinks, map[string]string{"pol.test": enforcePolicy}, []string{"mx1.pol.test", "_25._tcp.mx1.pol.test"})
	got := w.deliver(t, "bob@pol.test", func(j *delivery.Job) { j.Envelope.RequireTLS = true })
	if got.Class != delivery.Delivered || w.spooled("127.0.0.21") != 1 {
		t.Errorf("Deliver = %+v; want delivered: the MTA-STS policy lists the MX and DANE verifies its certificate", got)
	}
}

// noRequireTLSServer is an SMTP server on ln that offers STARTTLS (with
// cert) but never REQUIRETLS, and takes every message. It counts the
// connections it accepts and the QUITs it is sent.
type noRequireTLSServer struct {
	mu           sync.Mutex
	conns, quits int
	messages     int
}

func (s *noRequireTLSServer) counts() (conns, quits, messages int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, s.quits, s.messages
}

func (s *noRequireTLSServer) serve(t *testing.T, ln net.Listener, cert tls.Certificate) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		go s.session(conn, cert)
	}
}

func (s *noRequireTLSServer) session(conn net.Conn, cert tls.Certificate) {
	defer func() { conn.Close() }()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	say := func(lines ...string) bool {
		_, err := io.WriteString(conn, strings.Join(lines, "\r\n")+"\r\n")
		return err == nil
	}
	secure := false
	if !say("220 mx1.dane.test ESMTP") {
		return
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			if secure {
				say("250-mx1.dane.test", "250-8BITMIME", "250 PIPELINING")
			} else {
				say("250-mx1.dane.test", "250 STARTTLS")
			}
		case "STARTTLS":
			say("220 go ahead")
			tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}})
			if tc.Handshake() != nil {
				return
			}
			conn, br, secure = tc, bufio.NewReader(tc), true
		case "MAIL", "RCPT", "RSET", "NOOP":
			say("250 ok")
		case "DATA":
			say("354 go on")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			s.messages++
			s.mu.Unlock()
			say("250 queued")
		case "QUIT":
			s.mu.Lock()
			s.quits++
			s.mu.Unlock()
			say("221 bye")
			return
		default:
			say("502 no")
		}
	}
}

// TestRequireTLSUnsupportedDrainsPool: since a server without REQUIRETLS
// became a hop failure, run hangs up the session (QUIT) instead of
// handing it back to the pool, though nothing was sent on it and it
// serves any other message as well as before. tryHost takes pooled
// connections to the host one after another, so one REQUIRETLS message to
// an MX that does not offer REQUIRETLS retires every pooled connection
// to that MX, then dials each of its addresses anew (a handshake each)
// only to hang up again; the next ordinary message must dial again. On
// main the third message here opens a third connection; the pooled one
// should have carried it.
func TestRequireTLSUnsupportedDrainsPool(t *testing.T) {
	ca := smtptest.NewCA(t)
	cert := ca.Issue(t, "mx1.dane.test")
	ln, err := net.Listen("tcp", "127.0.0.36:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &noRequireTLSServer{}
	go srv.serve(t, ln, cert)
	zone := `
test.                        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
dane.test.                   IN MX 10 mx1.dane.test.
mx1.dane.test.               IN A 127.0.0.36
_25._tcp.mx1.dane.test.      IN TLSA 3 1 1 ` + spkiSHA256(cert) + `
`
	r, dnsSrv := newTestResolver(t, zone)
	for _, n := range []string{"dane.test", "mx1.dane.test", "_25._tcp.mx1.dane.test"} {
		dnsSrv.SetAD(n, true)
	}
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: ln.Addr().(*net.TCPAddr).Port, DANE: true, MaxIdle: time.Minute})
	send := func(requireTLS bool) delivery.Result {
		job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@dane.test")
		job.Envelope.RequireTLS = requireTLS
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 {
			t.Fatalf("Deliver = %+v, want one result", got)
		}
		return got[0]
	}
	if got := send(false); got.Class != delivery.Delivered {
		t.Fatalf("first message: Deliver = %+v, want delivered", got)
	}
	if got := send(true); got.Class == delivery.Delivered {
		t.Fatalf("REQUIRETLS message: Deliver = %+v, want refused (the server offers no REQUIRETLS)", got)
	}
	connsBefore, _, _ := srv.counts()
	if got := send(false); got.Class != delivery.Delivered {
		t.Fatalf("third message: Deliver = %+v, want delivered", got)
	}
	conns, quits, _ := srv.counts()
	if conns != connsBefore {
		t.Errorf("the third message opened a new connection (%d in all, %d QUIT before the transport closed): the REQUIRETLS message retired the pooled ones, which were fit for it", conns, quits)
	}
}

// TestRequireTLSUnvalidatedMXBouncesDespiteTLSAFailure: a REQUIRETLS
// message to a domain whose MX answer is not DNSSEC-validated and which
// publishes no MTA-STS policy can go to none of its exchangers (RFC 8689
// §4.2.1): that is about the MX list, so it holds for every host and for
// good (550 5.7.30), whatever each host's TLSA records say. planFor looks
// the host's TLSA records up before it checks the MX list, so a TLSA
// look-up that fails for now (SERVFAIL, which an attacker who forges the
// unsigned MX answer can arrange by naming such a host) answers first with
// a temporary 4.7.5, and hostFailures lets that outweigh the other
// hosts' 5.7.30: the message waits in the queue for days and finally
// bounces with a DANE look-up failure as its reason. On main the result
// here is Temporary.
func TestRequireTLSUnvalidatedMXBouncesDespiteTLSAFailure(t *testing.T) {
	zone := `
test.                        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
plain.test.                  IN MX 10 mx1.plain.test.
plain.test.                  IN MX 20 mx2.plain.test.
mx1.plain.test.              IN A 127.0.0.37
_25._tcp.mx1.plain.test.     IN TLSA 3 1 1 0000000000000000000000000000000000000000000000000000000000000000
mx2.plain.test.              IN A 127.0.0.38
`
	// The MX hosts' own names are signed (mx1's TLSA look-up fails for
	// now); plain.test's MX answer is not, and it has no MTA-STS policy.
	r, dnsSrv := newTestResolver(t, zone)
	for _, n := range []string{"mx1.plain.test", "mx2.plain.test"} {
		dnsSrv.SetAD(n, true)
	}
	dnsSrv.SetFault("_25._tcp.mx1.plain.test.", dns.TypeTLSA, resolvertest.ServFail)
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: 1, DANE: true})
	job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@plain.test")
	job.Envelope.RequireTLS = true
	rs := tr.Deliver(context.Background(), job)
	if len(rs) != 1 {
		t.Fatalf("Deliver = %+v, want one result", rs)
	}
	got := rs[0]
	if got.Class != delivery.Permanent || got.Enhanced != (sdk.EnhancedCode{5, 7, 30}) {
		t.Errorf("Deliver = %+v; want 550 5.7.30: no MX of plain.test can be vouched for (no DNSSEC, no MTA-STS), whatever mx1's TLSA look-up does", got)
	}
}
