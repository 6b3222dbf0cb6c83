package delivery_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/mtasts"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// The TLS versions every resumption test runs at: TLS 1.2 resumes with a
// session ticket (RFC 5077), TLS 1.3 with a PSK (RFC 8446 §2.2).
var resumeVersions = []struct {
	name    string
	version uint16
}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}}

// handshakes records, for each TLS handshake a test server begins,
// whether it resumed a session. A handshake starts as a full one (hello);
// the server's VerifyConnection, which runs on full and resumed
// handshakes alike before the client's last flight (a resumed one's
// right after the server's hello), records what it became, so that a
// resumption the client then refuses shows too. (A full TLS 1.2
// handshake the client refuses ends before it.)
type handshakes struct {
	mu      sync.Mutex
	resumed []bool
}

func (h *handshakes) hello(*tls.ClientHelloInfo) (*tls.Config, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resumed = append(h.resumed, false)
	return nil, nil
}

func (h *handshakes) verify(cs tls.ConnectionState) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resumed[len(h.resumed)-1] = cs.DidResume
	return nil
}

func (h *handshakes) list() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.resumed...)
}

// resumeSink is a test server on listen ("" = 127.0.0.1:0) that offers
// STARTTLS at version only, with cert, and records its handshakes.
func resumeSink(t *testing.T, listen string, version uint16, cert tls.Certificate) (*testMTA, *handshakes) {
	t.Helper()
	h := &handshakes{}
	m := startTestMTA(t, testMTAConfig{listen: listen, mod: func(o *smtp.Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version,
			GetConfigForClient: h.hello, VerifyConnection: h.verify}
	}})
	return m, h
}

// resumeResolver serves zone without a cache in between, so that a
// changed zone is what the next job sees.
func resumeResolver(t *testing.T, zone string) (*resolver.Resolver, *resolvertest.Server) {
	t.Helper()
	srv := resolvertest.Start(t, zone)
	r, err := resolver.New(resolver.Options{Servers: []string{srv.Addr()}, Timeout: time.Second, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatalf("resolver.New: %v", err)
	}
	return r, srv
}

// routeZone names the test servers' hosts; all of them are 127.0.0.1.
const routeZone = `
test.        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
mx.test.     IN A 127.0.0.1
a.test.      IN A 127.0.0.1
b.test.      IN A 127.0.0.1
c.test.      IN A 127.0.0.1
`

// deliverVia sends one message to bob@example.test through host:port at
// level and fails the test unless it was delivered under that level.
func deliverVia(t *testing.T, tr *delivery.SMTP, host string, port int, level string) {
	t.Helper()
	job, _ := newTestJob(delivery.Route{Via: host + ":" + strconv.Itoa(port), TLS: level}, smtpTestBody, "bob@example.test")
	got := tr.Deliver(context.Background(), job)
	if len(got) != 1 || got[0].Class != delivery.Delivered || got[0].TLSPolicy != level {
		t.Fatalf("Deliver via %s under %s = %+v, want delivered", host, level, got)
	}
}

// TestSMTPTLSResumption: under every route level that uses TLS, the
// second new connection to a host resumes the session of the first
// instead of a full handshake (key exchange and certificate check).
func TestSMTPTLSResumption(t *testing.T) {
	for _, v := range resumeVersions {
		for _, level := range []string{delivery.TLSOpportunistic, delivery.TLSEncrypt, delivery.TLSVerify, delivery.TLSRequire} {
			t.Run(v.name+"/"+level, func(t *testing.T) {
				ca := smtptest.NewCA(t)
				m, hs := resumeSink(t, "", v.version, ca.Issue(t, "mx.test"))
				r, _ := resumeResolver(t, routeZone)
				tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, RootCAs: ca.Pool, MaxIdle: -1})
				for range 3 {
					deliverVia(t, tr, "mx.test", m.port, level)
				}
				if got, want := fmt.Sprint(hs.list()), "[false true true]"; got != want {
					t.Errorf("handshakes resumed = %s, want %s", got, want)
				}
				version := strings.Replace(v.name, "TLS ", "TLSv", 1)
				want := map[smtp.TLSHandshake]int64{{Result: "full", Version: version}: 1, {Result: "resumed", Version: version}: 2}
				if got := tr.TLSHandshakes(); !maps.Equal(got, want) {
					t.Errorf("TLSHandshakes = %v, want %v", got, want)
				}
			})
		}
	}
}

// TestSMTPTLSResumptionKeepsLevels: a session is resumed only under the
// level it was made under. One made without verifying the certificate
// ("opportunistic", "encrypt") never stands in for a verified one, and a
// verified one is not spent on a level that does not ask for it: the
// second connection is a full handshake, the third resumes the second's.
func TestSMTPTLSResumptionKeepsLevels(t *testing.T) {
	for _, v := range resumeVersions {
		for _, levels := range [][2]string{
			{delivery.TLSOpportunistic, delivery.TLSVerify},
			{delivery.TLSEncrypt, delivery.TLSVerify},
			{delivery.TLSOpportunistic, delivery.TLSEncrypt},
			{delivery.TLSVerify, delivery.TLSOpportunistic},
		} {
			t.Run(v.name+"/"+levels[0]+" then "+levels[1], func(t *testing.T) {
				ca := smtptest.NewCA(t)
				m, hs := resumeSink(t, "", v.version, ca.Issue(t, "mx.test"))
				r, _ := resumeResolver(t, routeZone)
				tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, RootCAs: ca.Pool, MaxIdle: -1})
				deliverVia(t, tr, "mx.test", m.port, levels[0])
				deliverVia(t, tr, "mx.test", m.port, levels[1])
				deliverVia(t, tr, "mx.test", m.port, levels[1])
				if got, want := fmt.Sprint(hs.list()), "[false false true]"; got != want {
					t.Errorf("handshakes resumed = %s, want %s", got, want)
				}
			})
		}
	}
}

// TestSMTPTLSResumptionVerifiedOnly pins what the levels' own caches
// stand in front of: even from one cache shared by every level,
// crypto/tls resumes under a level that verifies the certificate only a
// session whose chain was verified, never one made without verifying
// ("opportunistic"). (Under DANE it would resume any, and check the
// session's certificate against the records: dane's TestConfigResumed.)
func TestSMTPTLSResumptionVerifiedOnly(t *testing.T) {
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			ca := smtptest.NewCA(t)
			m, hs := resumeSink(t, "", v.version, ca.Issue(t, "mx.test"))
			r, _ := resumeResolver(t, routeZone)
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, RootCAs: ca.Pool, MaxIdle: -1})
			delivery.ShareTLSSessions(tr)
			for _, level := range []string{delivery.TLSOpportunistic, delivery.TLSVerify, delivery.TLSRequire} {
				deliverVia(t, tr, "mx.test", m.port, level)
			}
			// The third resumes the second's verified session.
			if got, want := fmt.Sprint(hs.list()), "[false false true]"; got != want {
				t.Errorf("handshakes resumed = %s, want %s", got, want)
			}
		})
	}
}

// TestSMTPTLSSessionsBounded: the transport keeps at most TLSSessions
// sessions a level, the least recently used going first.
func TestSMTPTLSSessionsBounded(t *testing.T) {
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			ca := smtptest.NewCA(t)
			m, hs := resumeSink(t, "", v.version, ca.Issue(t, "a.test", "b.test", "c.test"))
			r, _ := resumeResolver(t, routeZone)
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, MaxIdle: -1, TLSSessions: 2})
			for _, host := range []string{"a.test", "b.test", "c.test", "a.test", "c.test"} {
				deliverVia(t, tr, host, m.port, delivery.TLSOpportunistic)
			}
			// a.test's session went when c.test's came; then b.test's
			// when a.test's came back; c.test's stays.
			if got, want := fmt.Sprint(hs.list()), "[false false false false true]"; got != want {
				t.Errorf("handshakes resumed = %s, want %s", got, want)
			}
		})
	}
}

// TestSMTPTLSSessionsOff: a negative TLSSessions keeps none.
func TestSMTPTLSSessionsOff(t *testing.T) {
	ca := smtptest.NewCA(t)
	m, hs := resumeSink(t, "", tls.VersionTLS13, ca.Issue(t, "mx.test"))
	r, _ := resumeResolver(t, routeZone)
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, MaxIdle: -1, TLSSessions: -1})
	deliverVia(t, tr, "mx.test", m.port, delivery.TLSOpportunistic)
	deliverVia(t, tr, "mx.test", m.port, delivery.TLSOpportunistic)
	if got, want := fmt.Sprint(hs.list()), "[false false]"; got != want {
		t.Errorf("handshakes resumed = %s, want %s", got, want)
	}
}

// TestSMTPTLSResumptionOperatorConfig: a config from SMTPOptions.TLSConfig
// is the operator's, used as it comes: its connections resume only when
// it brings its own ClientSessionCache.
func TestSMTPTLSResumptionOperatorConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache tls.ClientSessionCache
		want  string
	}{
		{"without a cache", nil, "[false false]"},
		{"with its own cache", tls.NewLRUClientSessionCache(4), "[false true]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := smtptest.NewCA(t)
			m, hs := resumeSink(t, "", tls.VersionTLS13, ca.Issue(t, "mx.test"))
			r, _ := resumeResolver(t, routeZone)
			operator := func(host string) *tls.Config {
				return &tls.Config{ServerName: host, RootCAs: ca.Pool, ClientSessionCache: tc.cache}
			}
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, MaxIdle: -1, TLSConfig: operator})
			deliverVia(t, tr, "mx.test", m.port, delivery.TLSVerify)
			deliverVia(t, tr, "mx.test", m.port, delivery.TLSVerify)
			if got := fmt.Sprint(hs.list()); got != tc.want {
				t.Errorf("handshakes resumed = %s, want %s", got, tc.want)
			}
		})
	}
}

// resumeDANEZone is mx1.dane.test with the TLSA records RECORDS.
const resumeDANEZone = `
test.                        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
dane.test.                   IN MX 10 mx1.dane.test.
mx1.dane.test.               IN A 127.0.0.31
`

// daneZoneWith is resumeDANEZone with a DANE-EE record (3 1 1) for each
// of spkis.
func daneZoneWith(spkis ...string) string {
	zone := resumeDANEZone
	for _, spki := range spkis {
		zone += "_25._tcp.mx1.dane.test. IN TLSA 3 1 1 " + spki + "\n"
	}
	return zone
}

// TestDANEResumption: a DANE connection resumes no session (not one a
// static route made to the same host without verifying anything, nor one
// of its own): each checks the certificate the next hop shows now against
// the records of now, through a key rollover (a record for the next key
// added, then the old one's removed), and one that no longer matches
// fails (4.7.5). A resumed session would carry the certificates of its
// first handshake (review10's TestDANEResumptionReissuedAnchor).
func TestDANEResumption(t *testing.T) {
	next := strings.Repeat("ab", 32) // the next key's record
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			cert := smtptest.NewCA(t).Issue(t, "unrelated.example")
			m, hs := resumeSink(t, "127.0.0.31:0", v.version, cert)
			r, dnsSrv := resumeResolver(t, daneZoneWith(spkiSHA256(cert)))
			for _, name := range []string{"mx1.dane.test", "_25._tcp.mx1.dane.test"} {
				dnsSrv.SetAD(name, true)
			}
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: m.port, DANE: true, MaxIdle: -1})
			deliverVia(t, tr, "mx1.dane.test", m.port, delivery.TLSOpportunistic)
			deliverDANE := func(step string) delivery.Result {
				t.Helper()
				job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@dane.test")
				got := tr.Deliver(context.Background(), job)[0]
				if got.TLSPolicy != delivery.TLSDANE {
					t.Fatalf("%s: Deliver = %+v, want it under dane", step, got)
				}
				return got
			}
			delivered := func(step string) {
				t.Helper()
				if got := deliverDANE(step); got.Class != delivery.Delivered {
					t.Fatalf("%s: Deliver = %+v, want delivered", step, got)
				}
			}
			delivered("first")
			delivered("second")
			dnsSrv.Replace(t, daneZoneWith(spkiSHA256(cert), next))
			delivered("rollover begun")
			delivered("rollover begun, again")
			dnsSrv.Replace(t, daneZoneWith(next))
			got := deliverDANE("rollover done")
			if got.Class != delivery.Temporary || got.Enhanced != (sdk.EnhancedCode{4, 7, 5}) || !strings.Contains(got.Text, "no TLSA record matches") {
				t.Errorf("DANE delivery after the old record went = %+v, want 4.7.5 (no TLSA record matches)", got)
			}
			if got, want := fmt.Sprint(hs.list()), "[false false false false false false]"; got != want {
				t.Errorf("handshakes resumed = %s, want %s", got, want)
			}
			if n := len(m.spool.Messages()); n != 5 {
				t.Errorf("sink got %d messages, want 5", n)
			}
		})
	}
}

// TestMTASTSTestingResumption: under an MTA-STS policy in testing mode no
// session is resumed, so each connection's certificate is checked and its
// outcome reported: a certificate for the wrong name is a failure each
// time, a right one a success each time (a resumed session would report
// the certificate of its first handshake: review10's
// TestMTASTSTestingResumptionStaleCertificate).
func TestMTASTSTestingResumption(t *testing.T) {
	testingPolicy := strings.ReplaceAll(enforcePolicy, "enforce", "testing")
	for _, v := range resumeVersions {
		for _, tc := range []struct{ name, certName, report string }{
			{"wrong name", "wrong.pol.test", "failure sts pol.test certificate-host-mismatch"},
			{"right name", "mx1.pol.test", "success sts pol.test mx1.pol.test"},
		} {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				ca := smtptest.NewCA(t)
				m, hs := resumeSink(t, "127.0.0.21:0", v.version, ca.Issue(t, tc.certName))
				r, _ := resumeResolver(t, stsZone)
				sts := mtasts.New(mtasts.Options{Resolver: r, RootCAs: ca.Pool,
					Port: policyServer(t, ca, map[string]string{"pol.test": testingPolicy})})
				rep := &reports{}
				tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: m.port, MTASTS: sts, RootCAs: ca.Pool,
					Reports: rep, MaxIdle: -1})
				for i := range 3 {
					job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@pol.test")
					if got := tr.Deliver(context.Background(), job)[0]; got.Class != delivery.Delivered {
						t.Fatalf("delivery %d = %+v, want delivered", i+1, got)
					}
				}
				if got, want := fmt.Sprint(hs.list()), "[false false false]"; got != want {
					t.Errorf("handshakes resumed = %s, want %s", got, want)
				}
				want := []string{tc.report, tc.report, tc.report}
				if got := rep.list(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("reports = %q, want %q", got, want)
				}
			})
		}
	}
}
