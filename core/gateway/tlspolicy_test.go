package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/core/tlsrpt"
)

// TestTransportSecurityEndToEnd runs the issue's delivery block in a whole
// gateway: pol.test publishes an MTA-STS policy in enforce mode (fetched
// over HTTPS from a server whose CA only tls_ca_file trusts) and a TLSRPT
// record. Mail to its MX with a good certificate is delivered under
// "mta-sts"; mail to plain.test, whose policy lists an MX without
// STARTTLS, waits with 4.7.5 and queue state "mta-sts". The day's TLS-RPT
// report then goes through our own queue to the rua mailbox, with one
// success and one starttls-not-supported failure.
func TestTransportSecurityEndToEnd(t *testing.T) {
	ca := smtptest.NewCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	mxSpool, rptSpool := &smtptest.MemorySpool{}, &smtptest.MemorySpool{}
	cert := ca.Issue(t, "mx1.pol.test")
	mxAddr := startSink(t, "127.0.0.41:0", mxSpool, &tls.Config{Certificates: []tls.Certificate{cert}})
	port := mxAddr.Port()
	startSink(t, "127.0.0.42:"+strconv.Itoa(int(port)), &smtptest.MemorySpool{}, nil) // no STARTTLS
	rptAddr := startSink(t, "127.0.0.1:0", rptSpool, nil)
	httpsPort := startPolicyHost(t, ca, map[string]string{
		"pol.test":   "version: STSv1\nmode: enforce\nmx: mx1.pol.test\nmax_age: 86400\n",
		"plain.test": "version: STSv1\nmode: enforce\nmx: mx1.plain.test\nmax_age: 86400\n",
	})
	dns := resolvertest.Start(t, `
test.                 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
pol.test.             IN MX 10 mx1.pol.test.
mx1.pol.test.         IN A 127.0.0.41
_mta-sts.pol.test.    IN TXT "v=STSv1; id=20261206"
mta-sts.pol.test.     IN A 127.0.0.1
_smtp._tls.pol.test.  IN TXT "v=TLSRPTv1; rua=mailto:reports@rua.test"
plain.test.           IN MX 10 mx1.plain.test.
mx1.plain.test.       IN A 127.0.0.42
_mta-sts.plain.test.  IN TXT "v=STSv1; id=1"
mta-sts.plain.test.   IN A 127.0.0.1
_smtp._tls.plain.test. IN TXT "v=TLSRPTv1; rua=mailto:reports@rua.test"
`)
	path := gatewaytest.WriteConfig(t, fmt.Sprintf(`
hostname = "gw.example.test"
listener "mx" { address = "127.0.0.1:0" }
relay { networks = ["127.0.0.0/8"] }
delivery {
  resolver    = %q
  port        = %d
  retry       = ["1h"]
  mta_sts     = true
  dane        = true
  tls_ca_file = %q
  tls_reports {
    from         = "tlsrpt@example.test"
    organization = "Example Org"
  }
  route "rua.test" {
    via = %q
    tls = "none"
  }
}
`, dns.Addr(), port, caFile, rptAddr.String()))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.StartOptions(t, cfg, gateway.Options{HTTPSPort: httpsPort})

	send(t, g, "bob@pol.test", "carol@plain.test")
	if !gatewaytest.Eventually(10*time.Second, func() bool { return len(mxSpool.Messages()) == 1 }) {
		t.Fatalf("pol.test's MX has %d messages, want 1", len(mxSpool.Messages()))
	}
	if msgs := mxSpool.Messages(); !msgs[0].Envelope.TLS {
		t.Errorf("pol.test got its message without TLS")
	}
	if !g.Log().Wait(10*time.Second, "tls_policy=mta-sts") {
		t.Errorf("no delivery log line with tls_policy=mta-sts")
	}
	waitDeferred(t, g, "carol@plain.test", "451 4.7.5 TLS required by the domain's MTA-STS policy but not available: mx1.plain.test [127.0.0.42:"+
		strconv.Itoa(int(port))+"] does not offer STARTTLS", "mta-sts")

	if err := g.SendTLSReportsForTest(context.Background(), time.Now()); err != nil {
		t.Fatalf("SendDay: %v", err)
	}
	if !gatewaytest.Eventually(10*time.Second, func() bool { return len(rptSpool.Messages()) == 2 }) {
		t.Fatalf("the rua mailbox has %d reports, want 2", len(rptSpool.Messages()))
	}
	reports := map[string]tlsrpt.Report{}
	for _, m := range rptSpool.Messages() {
		r := decodeReport(t, m.Data())
		reports[r.Policies[0].Policy.Domain] = r
	}
	checkReport(t, reports["pol.test"], tlsrpt.Summary{Successful: 1}, "")
	checkReport(t, reports["plain.test"], tlsrpt.Summary{Failed: 1}, "starttls-not-supported")
}

// startSink runs an SMTP server on addr that relays for loopback, with
// STARTTLS when cfg is set, and returns its address.
func startSink(t *testing.T, addr string, spool *smtptest.MemorySpool, cfg *tls.Config) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtp.NewServer(smtp.Options{Hostname: "sink.test", Spool: spool, TLS: cfg,
		RelayNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// startPolicyHost serves policies (domain → text) at
// https://mta-sts.<domain>/.well-known/mta-sts.txt on 127.0.0.1 with a
// certificate of ca, and returns its port.
func startPolicyHost(t *testing.T, ca *smtptest.CA, policies map[string]string) int {
	t.Helper()
	var names []string
	for d := range policies {
		names = append(names, "mta-sts."+d)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		p, ok := policies[strings.TrimPrefix(host, "mta-sts.")]
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, p)
	})}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, names...)}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// waitDeferred waits until rcpt's last attempt was deferred with reply
// under the TLS level policy.
func waitDeferred(t *testing.T, g *gatewaytest.Gateway, rcpt, reply, policy string) {
	t.Helper()
	var got queue.RecipientState
	ok := gatewaytest.Eventually(10*time.Second, func() bool {
		g.Spool().List(func(m *queue.Message) bool {
			for i, r := range m.Envelope.Recipients {
				if r.Address.String() == rcpt {
					got = m.Recipients[i]
				}
			}
			return true
		})
		return got.Status == queue.Deferred
	})
	if !ok || got.LastReply != reply || got.TLSPolicy != policy {
		t.Errorf("%s: %+v\nwant deferred with %q under %s", rcpt, got, reply, policy)
	}
}

// decodeReport reads the gzipped JSON report out of a TLS-RPT mail.
func decodeReport(t *testing.T, data []byte) tlsrpt.Report {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q, want multipart/report; report-type=tlsrpt", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no application/tlsrpt+gzip part: %v", err)
		}
		if p.Header.Get("Content-Type") == "" || !strings.HasPrefix(p.Header.Get("Content-Type"), "application/tlsrpt+gzip") {
			continue
		}
		var body io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
			body = base64.NewDecoder(base64.StdEncoding, p)
		}
		zr, err := gzip.NewReader(body)
		if err != nil {
			t.Fatal(err)
		}
		var r tlsrpt.Report
		if err := json.NewDecoder(zr).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
}

// checkReport checks a report's fixed fields, its one policy's summary
// and, if failure is set, its one failure detail's result type.
func checkReport(t *testing.T, r tlsrpt.Report, sum tlsrpt.Summary, failure string) {
	t.Helper()
	if r.OrganizationName != "Example Org" || r.ContactInfo != "tlsrpt@example.test" || len(r.Policies) != 1 {
		t.Fatalf("report %+v", r)
	}
	p := r.Policies[0]
	if p.Policy.Type != tlsrpt.TypeSTS || p.Summary != sum {
		t.Errorf("%s: policy %+v summary %+v, want sts, %+v", p.Policy.Domain, p.Policy, p.Summary, sum)
	}
	if failure != "" && (len(p.FailureDetails) != 1 || p.FailureDetails[0].ResultType != failure) {
		t.Errorf("%s: failure details %+v, want one %s", p.Policy.Domain, p.FailureDetails, failure)
	}
}
