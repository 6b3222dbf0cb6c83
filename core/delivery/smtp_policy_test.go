package delivery_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/mtasts"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/core/tlsrpt"
	"github.com/mailgate/gateway/sdk"
)

// ignoreTLSPolicy leaves Result.TLSPolicy out of the comparisons of the
// tests about replies and sessions; the tests here and TestSMTPTLS check it.
var ignoreTLSPolicy = cmpopts.IgnoreFields(delivery.Result{}, "TLSPolicy")

// spkiSHA256 is the data of a "3 1 1" TLSA record for c.
func spkiSHA256(c tls.Certificate) string {
	sum := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// policyServer serves MTA-STS policies over HTTPS on 127.0.0.1 with a
// certificate of ca for every mta-sts.<domain> of policies (domain →
// policy text). It returns the port.
func policyServer(t testing.TB, ca *smtptest.CA, policies map[string]string) int {
	t.Helper()
	names := []string{"mta-sts.none.test"}
	for d := range policies {
		names = append(names, "mta-sts."+d)
	}
	cert := ca.Issue(t, names...)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := policies[strings.TrimPrefix(strings.Split(r.Host, ":")[0], "mta-sts.")]
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, p)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// reports records what the transport hands TLS-RPT.
type reports struct {
	mu   sync.Mutex
	got  []string // "success sts pol.test mx1.pol.test", "failure sts pol.test starttls-not-supported"
	fail []tlsrpt.Failure
}

func (r *reports) Success(ctx context.Context, p tlsrpt.Policy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, "success "+string(p.Type)+" "+p.Domain+" "+p.MXHost)
}

func (r *reports) Failure(ctx context.Context, p tlsrpt.Policy, f tlsrpt.Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, "failure "+string(p.Type)+" "+p.Domain+" "+f.ResultType)
	r.fail = append(r.fail, f)
}

func (r *reports) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// policyWorld is a DNS zone, an MTA-STS policy server and one SMTP sink
// per MX address, all on loopback, all on one port per kind.
type policyWorld struct {
	ca      *smtptest.CA
	res     *resolver.Resolver
	port    int // the sinks' SMTP port
	sinks   map[string]*testMTA
	reports *reports
	tr      *delivery.SMTP
}

// sinkSpec is one MX sink: its address, whether it offers STARTTLS, the
// names its certificate is for. (Our server offers REQUIRETLS under TLS.)
type sinkSpec struct {
	ip    string
	tls   bool
	names []string
}

const policyTXT = "v=STSv1; id=1"

// newPolicyWorld starts the sinks (the first one's port for all), the
// policy server for policies, and a resolver over zone (in which PORT
// stands for nothing; the sinks' IPs are fixed) with AD set for the names
// in secure.
func newPolicyWorld(t testing.TB, zone string, sinks []sinkSpec, policies map[string]string, secure []string) *policyWorld {
	t.Helper()
	w := &policyWorld{ca: smtptest.NewCA(t), sinks: map[string]*testMTA{}, reports: &reports{}}
	for _, s := range sinks {
		listen := s.ip + ":0"
		if w.port != 0 {
			listen = s.ip + ":" + strconv.Itoa(w.port)
		}
		var cert tls.Certificate
		if s.tls {
			cert = w.ca.Issue(t, s.names...)
		}
		m := startTestMTA(t, testMTAConfig{listen: listen, mod: func(o *smtp.Options) {
			if s.tls {
				o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			o.Listener.Name = s.ip
		}})
		if w.port == 0 {
			w.port = m.port
		}
		w.sinks[s.ip] = m
		if s.tls {
			zone = strings.ReplaceAll(zone, "SPKI("+s.ip+")", spkiSHA256(cert))
		}
	}
	r, dnsSrv := newTestResolver(t, zone)
	w.res = r
	for _, name := range secure {
		dnsSrv.SetAD(name, true)
	}
	httpsPort := policyServer(t, w.ca, policies)
	sts := mtasts.New(mtasts.Options{Resolver: r, RootCAs: w.ca.Pool, Port: httpsPort})
	w.tr = newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: w.port, MTASTS: sts, DANE: true,
		RootCAs: w.ca.Pool, Reports: w.reports})
	return w
}

// deliver sends one message to rcpt under the default route level and
// returns its one result.
func (w *policyWorld) deliver(t *testing.T, rcpt string, edit func(*delivery.Job)) delivery.Result {
	t.Helper()
	job, _ := newTestJob(delivery.Route{TLS: delivery.TLSOpportunistic}, smtpTestBody, rcpt)
	if edit != nil {
		edit(job)
	}
	got := w.tr.Deliver(context.Background(), job)
	if len(got) != 1 {
		t.Fatalf("Deliver = %+v, want one result", got)
	}
	return got[0]
}

func (w *policyWorld) spooled(ip string) int { return len(w.sinks[ip].spool.Messages()) }

const stsZone = `
test.                IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
pol.test.            IN MX 10 mx1.pol.test.
_mta-sts.pol.test.   IN TXT "` + policyTXT + `"
mta-sts.pol.test.    IN A 127.0.0.1
mx1.pol.test.        IN A 127.0.0.21
`

const enforcePolicy = "version: STSv1\nmode: enforce\nmx: mx1.pol.test\nmax_age: 86400\n"

// TestMTASTSEnforce: under an enforce policy the MX gets the mail only
// over TLS with a certificate valid for its name; anything else defers with
// 4.7.5 and nothing is sent in clear text.
func TestMTASTSEnforce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sink  sinkSpec
		class delivery.Class
		text  string
		rpt   string
	}{
		{"good certificate", sinkSpec{ip: "127.0.0.21", tls: true, names: []string{"mx1.pol.test"}}, delivery.Delivered, "", "success sts pol.test mx1.pol.test"},
		{"no STARTTLS", sinkSpec{ip: "127.0.0.21"}, delivery.Temporary,
			"TLS required by the domain's MTA-STS policy but not available: mx1.pol.test [127.0.0.21:PORT] does not offer STARTTLS",
			"failure sts pol.test starttls-not-supported"},
		{"wrong name", sinkSpec{ip: "127.0.0.21", tls: true, names: []string{"other.pol.test"}}, delivery.Temporary,
			"TLS required by the domain's MTA-STS policy but not available: mx1.pol.test [127.0.0.21:PORT]: smtp: TLS handshake: tls: failed to verify certificate: x509: certificate is valid for other.pol.test, not mx1.pol.test",
			"failure sts pol.test certificate-host-mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newPolicyWorld(t, stsZone, []sinkSpec{tc.sink}, map[string]string{"pol.test": enforcePolicy}, nil)
			got := w.deliver(t, "bob@pol.test", nil)
			if got.Class != tc.class || got.TLSPolicy != delivery.TLSMTASTS {
				t.Fatalf("Deliver = %+v, want %v under mta-sts", got, tc.class)
			}
			if tc.class == delivery.Temporary {
				want := strings.ReplaceAll(tc.text, "PORT", strconv.Itoa(w.port))
				if got.Code != 451 || got.Enhanced != (sdk.EnhancedCode{4, 7, 5}) || got.Text != want {
					t.Errorf("result %d %v %q\nwant 451 4.7.5 %q", got.Code, got.Enhanced, got.Text, want)
				}
				if n := w.spooled(tc.sink.ip); n != 0 {
					t.Errorf("sink got %d messages, want none", n)
				}
			}
			if r := w.reports.list(); len(r) != 1 || r[0] != tc.rpt {
				t.Errorf("reports = %q, want [%q]", r, tc.rpt)
			}
		})
	}
}

// TestMTASTSMXNotInPolicy: an MX the policy does not list is skipped under
// enforce (the listed one gets the mail) and used under testing; with no
// listed MX left, the mail waits.
func TestMTASTSMXNotInPolicy(t *testing.T) {
	zone := stsZone + `
pol.test.            IN MX 5 rogue.pol.test.
rogue.pol.test.      IN A 127.0.0.22
only.test.           IN MX 10 rogue.pol.test.
_mta-sts.only.test.  IN TXT "` + policyTXT + `"
mta-sts.only.test.   IN A 127.0.0.1
`
	sinks := []sinkSpec{
		{ip: "127.0.0.21", tls: true, names: []string{"mx1.pol.test"}},
		{ip: "127.0.0.22", tls: true, names: []string{"rogue.pol.test"}},
	}
	w := newPolicyWorld(t, zone, sinks, map[string]string{"pol.test": enforcePolicy, "only.test": enforcePolicy}, nil)
	if got := w.deliver(t, "bob@pol.test", nil); got.Class != delivery.Delivered || got.RemoteMTA != "mx1.pol.test" {
		t.Errorf("Deliver = %+v, want delivered by mx1.pol.test", got)
	}
	if w.spooled("127.0.0.22") != 0 {
		t.Errorf("the MX missing from the policy got the mail")
	}
	got := w.deliver(t, "bob@only.test", nil)
	want := "no exchanger of only.test is listed in its MTA-STS policy (mx: mx1.pol.test)"
	if got.Class != delivery.Temporary || got.Enhanced != (sdk.EnhancedCode{4, 7, 5}) || got.Text != want || got.TLSPolicy != delivery.TLSMTASTS {
		t.Errorf("Deliver = %+v, want 4.7.5 %q", got, want)
	}
}

// TestMTASTSTesting: a testing policy delivers what enforce would not, and
// reports the failure.
func TestMTASTSTesting(t *testing.T) {
	sinks := []sinkSpec{{ip: "127.0.0.21", tls: true, names: []string{"wrong.pol.test"}}}
	testing := strings.ReplaceAll(enforcePolicy, "enforce", "testing")
	w := newPolicyWorld(t, stsZone, sinks, map[string]string{"pol.test": testing}, nil)
	got := w.deliver(t, "bob@pol.test", nil)
	if got.Class != delivery.Delivered || got.TLSPolicy != delivery.TLSOpportunistic {
		t.Errorf("Deliver = %+v, want delivered (opportunistic)", got)
	}
	if msgs := checkSpooled(t, w.sinks["127.0.0.21"], []string{"bob@pol.test"}); !msgs[0].Envelope.TLS {
		t.Errorf("delivered without TLS")
	}
	want := []string{"failure sts pol.test certificate-host-mismatch"}
	if r := w.reports.list(); fmt.Sprint(r) != fmt.Sprint(want) {
		t.Errorf("reports = %q, want %q", r, want)
	}
}

// TestTLSRequiredNo: "TLS-Required: No" (RFC 8689 §5) delivers past an
// enforce policy the MX cannot meet.
func TestTLSRequiredNo(t *testing.T) {
	w := newPolicyWorld(t, stsZone, []sinkSpec{{ip: "127.0.0.21"}}, map[string]string{"pol.test": enforcePolicy}, nil)
	got := w.deliver(t, "bob@pol.test", func(j *delivery.Job) { j.Envelope.TLSOptional = true })
	if got.Class != delivery.Delivered || got.TLSPolicy != delivery.TLSOpportunistic {
		t.Errorf("Deliver = %+v, want delivered (opportunistic)", got)
	}
}

const daneZone = `
test.                        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
dane.test.                   IN MX 10 mx1.dane.test.
mx1.dane.test.               IN A 127.0.0.31
_25._tcp.mx1.dane.test.      IN TLSA 3 1 1 SPKI(127.0.0.31)
bad.test.                    IN MX 10 mx1.bad.test.
mx1.bad.test.                IN A 127.0.0.31
_25._tcp.mx1.bad.test.       IN TLSA 3 1 1 0000000000000000000000000000000000000000000000000000000000000000
`

// TestDANE: with the AD bit, a matching DANE-EE record delivers (the
// certificate's CA is not trusted and need not be), a mismatch defers and
// never falls back to clear text; without the AD bit the records are
// ignored.
func TestDANE(t *testing.T) {
	sinks := []sinkSpec{{ip: "127.0.0.31", tls: true, names: []string{"unrelated.example"}}}
	t.Run("EE match", func(t *testing.T) {
		w := newPolicyWorld(t, daneZone, sinks, nil, []string{"mx1.dane.test", "_25._tcp.mx1.dane.test"})
		w.tr = newSMTPTransport(t, delivery.SMTPOptions{Resolver: w.res, Port: w.port, DANE: true, Reports: w.reports})
		got := w.deliver(t, "bob@dane.test", nil)
		if got.Class != delivery.Delivered || got.TLSPolicy != delivery.TLSDANE {
			t.Errorf("Deliver = %+v, want delivered under dane", got)
		}
		if r := w.reports.list(); len(r) != 1 || r[0] != "success tlsa dane.test " {
			t.Errorf("reports = %q", r)
		}
	})
	t.Run("EE mismatch", func(t *testing.T) {
		w := newPolicyWorld(t, daneZone, sinks, nil, []string{"mx1.bad.test", "_25._tcp.mx1.bad.test"})
		got := w.deliver(t, "bob@bad.test", nil)
		if got.Class != delivery.Temporary || got.Enhanced != (sdk.EnhancedCode{4, 7, 5}) || got.TLSPolicy != delivery.TLSDANE ||
			!strings.HasPrefix(got.Text, "TLS required by DANE (the exchanger's TLSA records) but not available: mx1.bad.test") {
			t.Errorf("Deliver = %+v, want 4.7.5 under dane", got)
		}
		if n := w.spooled("127.0.0.31"); n != 0 {
			t.Errorf("sink got %d messages, want none", n)
		}
	})
	t.Run("no AD bit", func(t *testing.T) {
		w := newPolicyWorld(t, daneZone, sinks, nil, nil)
		got := w.deliver(t, "bob@bad.test", nil)
		if got.Class != delivery.Delivered || got.TLSPolicy != delivery.TLSOpportunistic {
			t.Errorf("Deliver = %+v, want delivered (opportunistic)", got)
		}
	})
}

// TestRequireTLS: a REQUIRETLS message goes only over verified TLS to a
// next hop that offers REQUIRETLS (RFC 8689 §4.1); else it bounces with
// 5.7.30.
func TestRequireTLS(t *testing.T) {
	requireTLS := func(j *delivery.Job) { j.Envelope.RequireTLS = true }
	for _, tc := range []struct {
		name, want string
		secure     []string
	}{
		{"no policy", "the MX answer for dane.test is not DNSSEC-validated and no MTA-STS policy of the domain lists the host", nil},
		{"signed MX, no DANE", "no DANE, no MTA-STS policy in enforce mode, and the TLS level is opportunistic", []string{"dane.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newPolicyWorld(t, daneZone, []sinkSpec{{ip: "127.0.0.31", tls: true, names: []string{"mx1.dane.test"}}}, nil, tc.secure)
			got := w.deliver(t, "bob@dane.test", requireTLS)
			want := "REQUIRETLS: mx1.dane.test cannot be reached over verified TLS (" + tc.want + ")"
			if got.Class != delivery.Permanent || got.Enhanced != (sdk.EnhancedCode{5, 7, 30}) || got.Text != want {
				t.Errorf("Deliver = %+v, want 5.7.30 %q", got, want)
			}
		})
	}
	t.Run("next hop without REQUIRETLS", func(t *testing.T) {
		// A server that offers STARTTLS, then no REQUIRETLS under TLS:
		// the client must not send MAIL (our own server always offers it).
		ca := smtptest.NewCA(t)
		cert := ca.Issue(t, "mx1.dane.test")
		ln, err := net.Listen("tcp", "127.0.0.31:0")
		if err != nil {
			t.Fatal(err)
		}
		zone := strings.ReplaceAll(daneZone, "SPKI(127.0.0.31)", spkiSHA256(cert))
		r, dnsSrv := newTestResolver(t, zone)
		for _, name := range []string{"dane.test", "mx1.dane.test", "_25._tcp.mx1.dane.test"} {
			dnsSrv.SetAD(name, true)
		}
		done := scriptedTLSServer(t, ln, &tls.Config{Certificates: []tls.Certificate{cert}}, `
			S: 220 old.test ESMTP
			C: EHLO gw.test
			S: 250-old.test
			S: 250 STARTTLS
			C: STARTTLS
			S: 220 go ahead
			S: <tls>
			C: EHLO gw.test
			S: 250-old.test
			S: 250 8BITMIME
			C: QUIT
			S: 221 bye`)
		tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: ln.Addr().(*net.TCPAddr).Port, DANE: true, MaxIdle: -1})
		job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@dane.test")
		requireTLS(job)
		got := tr.Deliver(context.Background(), job)
		want := "REQUIRETLS: mx1.dane.test [127.0.0.31:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) +
			"] does not offer REQUIRETLS, so the message cannot be handed on with its demand for TLS"
		if len(got) != 1 || got[0].Class != delivery.Permanent || got[0].Enhanced != (sdk.EnhancedCode{5, 7, 30}) || got[0].Text != want {
			t.Errorf("Deliver = %+v, want 5.7.30 %q", got, want)
		}
		<-done
	})
	t.Run("DANE and REQUIRETLS", func(t *testing.T) {
		w := newPolicyWorld(t, daneZone, []sinkSpec{{ip: "127.0.0.31", tls: true, names: []string{"mx1.dane.test"}}}, nil, []string{"dane.test", "mx1.dane.test", "_25._tcp.mx1.dane.test"})
		got := w.deliver(t, "bob@dane.test", requireTLS)
		if got.Class != delivery.Delivered || got.TLSPolicy != delivery.TLSDANE {
			t.Errorf("Deliver = %+v, want delivered under dane", got)
		}
		if msgs := checkSpooled(t, w.sinks["127.0.0.31"], []string{"bob@dane.test"}); !msgs[0].Envelope.RequireTLS {
			t.Errorf("the next hop did not get REQUIRETLS")
		}
	})
}

// BenchmarkSMTPPolicy delivers one message per iteration to a TLS sink
// over pooled connections (a handshake per 100 messages), with no policy,
// under an MTA-STS policy in enforce mode and under DANE: what deciding
// the level costs per delivery (the look-ups come from the resolver's
// cache, the policy from the client's).
func BenchmarkSMTPPolicy(b *testing.B) {
	zone := stsZone + `
_25._tcp.mx1.pol.test.  IN TLSA 3 1 1 SPKI(127.0.0.21)
plain.test.             IN MX 10 mx1.pol.test.
`
	for _, bc := range []struct {
		name, rcpt, level string
		secure            []string
	}{
		{"opportunistic", "bob@plain.test", delivery.TLSOpportunistic, nil},
		{"mta-sts", "bob@pol.test", delivery.TLSMTASTS, nil},
		{"dane", "bob@pol.test", delivery.TLSDANE, []string{"mx1.pol.test", "_25._tcp.mx1.pol.test"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sinks := []sinkSpec{{ip: "127.0.0.21", tls: true, names: []string{"mx1.pol.test"}}}
			w := newPolicyWorld(b, zone, sinks, map[string]string{"pol.test": enforcePolicy}, bc.secure)
			for b.Loop() {
				job, _ := newTestJob(delivery.Route{TLS: delivery.TLSOpportunistic}, smtpTestBody, bc.rcpt)
				if got := w.tr.Deliver(context.Background(), job); got[0].Class != delivery.Delivered || got[0].TLSPolicy != bc.level {
					b.Fatalf("Deliver = %+v, want delivered under %s", got, bc.level)
				}
			}
		})
	}
}
