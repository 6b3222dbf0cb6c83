package mtasts

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// world is what a Client meets on the network, all on loopback: a DNS
// server (resolvertest) with the domains' TXT records and policy hosts'
// addresses, and one HTTPS server standing for every policy host, its
// certificates issued per name by a CA made in the test.
type world struct {
	t     *testing.T
	dns   *resolvertest.Server
	res   *resolver.Resolver
	ca    *testCA
	roots *x509.CertPool
	port  int
	clock *clock

	mu    sync.Mutex
	txt   map[string][]string        // domain → TXT records at _mta-sts.<domain>
	noA   map[string]bool            // policy hosts without an address
	pages map[string]page            // policy host → what it serves
	certs map[string]tls.Certificate // policy host → certificate other than a good one
	hits  map[string]int             // policy host → requests
}

// page is a policy host's answer.
type page struct {
	status int    // 0 = 200
	ctype  string // "" = text/plain; charset=utf-8
	body   string
	header map[string]string
	gate   chan struct{} // if set, the answer waits for it to close
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{
		t:     t,
		ca:    newCA(t, "Test Root"),
		clock: &clock{now: time.Now().UTC().Truncate(time.Second)},
		txt:   make(map[string][]string),
		noA:   make(map[string]bool),
		pages: make(map[string]page),
		certs: make(map[string]tls.Certificate),
		hits:  make(map[string]int),
	}
	w.roots = x509.NewCertPool()
	w.roots.AddCert(w.ca.cert)
	w.dns = resolvertest.Start(t, w.zone())
	res, err := resolver.New(resolver.Options{Servers: []string{w.dns.Addr()}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.res = res

	srv := httptest.NewUnstartedServer(http.HandlerFunc(w.serveHTTP))
	srv.TLS = &tls.Config{GetCertificate: w.certificate}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point of some tests
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	w.port, _ = strconv.Atoi(port)
	return w
}

// client returns a Client of the world; opt's zero fields are filled in.
func (w *world) client(opt Options) *Client {
	if opt.Resolver == nil {
		opt.Resolver = w.res
	}
	if opt.RootCAs == nil {
		opt.RootCAs = w.roots
	}
	if opt.Port == 0 {
		opt.Port = w.port
	}
	if opt.Now == nil {
		opt.Now = w.clock.Now
	}
	return New(opt)
}

// publish sets domain's TXT records (none: the name does not exist) and
// the policy host's page.
func (w *world) publish(domain string, p page, txt ...string) {
	w.mu.Lock()
	w.txt[domain] = txt
	w.pages["mta-sts."+domain] = p
	w.mu.Unlock()
	w.dns.Replace(w.t, w.zone())
}

// setTXT changes domain's TXT records only.
func (w *world) setTXT(domain string, txt ...string) {
	w.mu.Lock()
	w.txt[domain] = txt
	w.mu.Unlock()
	w.dns.Replace(w.t, w.zone())
}

func (w *world) setPage(domain string, p page) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pages["mta-sts."+domain] = p
}

func (w *world) setCert(host string, c tls.Certificate) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.certs[host] = c
}

func (w *world) hitsOf(domain string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hits["mta-sts."+domain]
}

func (w *world) zone() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	b.WriteString("test. 300 IN SOA ns.test. admin.test. 1 3600 600 86400 60\n")
	for _, d := range slices.Sorted(maps.Keys(w.txt)) {
		for _, r := range w.txt[d] {
			fmt.Fprintf(&b, "_mta-sts.%s. 300 IN TXT %q\n", d, r)
		}
		if !w.noA["mta-sts."+d] {
			fmt.Fprintf(&b, "mta-sts.%s. 300 IN A 127.0.0.1\n", d)
		}
	}
	return b.String()
}

func (w *world) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	w.mu.Lock()
	c, ok := w.certs[hello.ServerName]
	w.mu.Unlock()
	if ok {
		return &c, nil
	}
	now := time.Now()
	c = w.ca.issue(w.t, hello.ServerName, now.Add(-time.Hour), now.Add(30*24*time.Hour))
	return &c, nil
}

func (w *world) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	w.hits[r.Host]++
	p, ok := w.pages[r.Host]
	w.mu.Unlock()
	if !ok || r.URL.Path != wellKnownPath {
		http.NotFound(rw, r)
		return
	}
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-r.Context().Done():
			// A stalled server answers nothing: returning would send an
			// empty 200 (no Content-Type), which a client that is still
			// waiting reads as a policy (TestPolicyTimeout failed so
			// once under load).
			panic(http.ErrAbortHandler)
		}
	}
	ct := p.ctype
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	rw.Header().Set("Content-Type", ct)
	for k, v := range p.header {
		rw.Header().Set(k, v)
	}
	if p.status != 0 {
		rw.WriteHeader(p.status)
	}
	_, _ = io.WriteString(rw, p.body)
}

// clock is the tests' settable Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testCA issues certificates for the tests' policy hosts.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("CA certificate: %v", err)
	}
	return &testCA{cert: cert, key: key}
}

// issue returns a server certificate for name valid from notBefore to notAfter.
func (ca *testCA) issue(t testing.TB, name string, notBefore, notAfter time.Time) tls.Certificate {
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Errorf("certificate for %s: %v", name, err) // also called on the server's goroutine
		return tls.Certificate{}
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func newKey(t testing.TB) crypto.Signer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Errorf("key: %v", err)
	}
	return key
}

// policyBody is a policy file of mode and max_age for mx.<domain>.
func policyBody(mode Mode, maxAge int, mx ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\r\nmode: %s\r\n", mode)
	for _, m := range mx {
		fmt.Fprintf(&b, "mx: %s\r\n", m)
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", maxAge)
	return b.String()
}

// mustPolicy calls c.Policy and fails the test on an error.
func mustPolicy(t *testing.T, c *Client, domain string) *Policy {
	t.Helper()
	p, err := c.Policy(context.Background(), domain)
	if err != nil {
		t.Fatalf("Policy(%q): %v", domain, err)
	}
	return p
}
