package mtasts

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

func TestPolicyModes(t *testing.T) {
	w := newWorld(t)
	w.publish("enforce.test", page{body: policyBody(ModeEnforce, 604800, "mx1.enforce.test", "*.mx.enforce.test")}, "v=STSv1; id=e1")
	w.publish("testing.test", page{body: policyBody(ModeTesting, 86400, "mx.testing.test")}, "v=STSv1; id=t1;")
	w.publish("none.test", page{body: "version: STSv1\nmode: none\nmax_age: 3600\n"}, "v=STSv1; id=n1")
	w.publish("xn--bcher-kva.test", page{body: policyBody(ModeEnforce, 60, "mx.xn--bcher-kva.test")}, "v=STSv1; id=i1")
	c := w.client(Options{})
	now := w.clock.Now()
	for _, tc := range []struct {
		domain string
		want   *Policy
	}{
		{"enforce.test", &Policy{Mode: ModeEnforce, MX: []string{"mx1.enforce.test", "*.mx.enforce.test"}, MaxAge: 604800 * time.Second, ID: "e1", Fetched: now}},
		{"Testing.Test.", &Policy{Mode: ModeTesting, MX: []string{"mx.testing.test"}, MaxAge: 86400 * time.Second, ID: "t1", Fetched: now}},
		{"none.test", &Policy{Mode: ModeNone, MaxAge: time.Hour, ID: "n1", Fetched: now}},
		{"bücher.test", &Policy{Mode: ModeEnforce, MX: []string{"mx.xn--bcher-kva.test"}, MaxAge: time.Minute, ID: "i1", Fetched: now}},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			got := mustPolicy(t, c, tc.domain)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Policy (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNoPolicy: a domain without exactly one well-formed v=STSv1 record
// has no policy, and its policy host is not asked.
func TestNoPolicy(t *testing.T) {
	w := newWorld(t)
	good := page{body: policyBody(ModeEnforce, 86400, "mx.x.test")}
	w.publish("nxdomain.test", good)
	w.publish("other.test", good, "v=spf1 -all", "google-site-verification=abc")
	w.publish("two.test", good, "v=STSv1; id=1", "v=STSv1; id=2")
	w.publish("bad.test", good, "v=STSv1; id=not-alnum")
	w.publish("noid.test", good, "v=STSv1;")
	c := w.client(Options{})
	for _, d := range []string{"nxdomain.test", "other.test", "two.test", "bad.test", "noid.test", "[192.0.2.1]", "", "a..b", "exa_mple.test"} {
		p, err := c.Policy(context.Background(), d)
		if p != nil || err != nil {
			t.Errorf("Policy(%q) = %v, %v; want nil, nil", d, p, err)
		}
		if n := w.hitsOf(d); n != 0 {
			t.Errorf("%s: %d requests to the policy host, want 0", d, n)
		}
	}
}

func TestPolicyFailures(t *testing.T) {
	w := newWorld(t)
	good := policyBody(ModeEnforce, 86400, "mx.x.test")
	wrongName := w.ca.issue(t, "www.wrongname.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	expired := w.ca.issue(t, "mta-sts.expired.test", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	otherCA := newCA(t, "Other Root").issue(t, "mta-sts.unknownca.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	w.setCert("mta-sts.wrongname.test", wrongName)
	w.setCert("mta-sts.expired.test", expired)
	w.setCert("mta-sts.unknownca.test", otherCA)
	w.publish("wrongname.test", page{body: good}, "v=STSv1; id=1")
	w.publish("expired.test", page{body: good}, "v=STSv1; id=1")
	w.publish("unknownca.test", page{body: good}, "v=STSv1; id=1")
	w.publish("badpolicy.test", page{body: "version: STSv1\nmode: enforce\nmax_age: 1\n"}, "v=STSv1; id=1")
	w.publish("html.test", page{body: good, ctype: "text/html"}, "v=STSv1; id=1")
	w.publish("noctype.test", page{body: good, ctype: "application/octet-stream"}, "v=STSv1; id=1")
	w.publish("big.test", page{body: good + strings.Repeat("x: y\n", maxPolicySize/5)}, "v=STSv1; id=1")
	w.publish("notfound.test", page{body: good, status: 404}, "v=STSv1; id=1")
	w.publish("redirect.test", page{status: 302, header: map[string]string{"Location": "https://mta-sts.target.test/.well-known/mta-sts.txt"}}, "v=STSv1; id=1")
	w.publish("target.test", page{body: good}, "v=STSv1; id=1")
	w.publish("servfail.test", page{body: good}, "v=STSv1; id=1")
	w.dns.SetFault("_mta-sts.servfail.test", dns.TypeTXT, resolvertest.ServFail)
	w.publish("noaddr.test", page{body: good}, "v=STSv1; id=1")
	w.mu.Lock()
	w.noA["mta-sts.noaddr.test"] = true
	w.mu.Unlock()
	w.setTXT("noaddr.test", "v=STSv1; id=1")

	c := w.client(Options{})
	for _, tc := range []struct {
		domain, failure string
		text            string // the error's text, or its start when it ends in "…"
	}{
		{"wrongname.test", "sts-webpki-invalid", "mtasts: policy host certificate not valid: mta-sts.wrongname.test: x509: certificate is valid for www.wrongname.test, not mta-sts.wrongname.test"},
		{"expired.test", "sts-webpki-invalid", "mtasts: policy host certificate not valid: mta-sts.expired.test: x509: certificate has expired or is not yet valid: …"},
		{"unknownca.test", "sts-webpki-invalid", "mtasts: policy host certificate not valid: mta-sts.unknownca.test: x509: certificate signed by unknown authority"},
		{"badpolicy.test", "sts-policy-invalid", "mtasts: invalid policy: mta-sts.badpolicy.test: no mx in mode enforce"},
		{"html.test", "sts-policy-invalid", `mtasts: invalid policy: mta-sts.html.test: Content-Type "text/html" is not text/plain`},
		{"noctype.test", "sts-policy-invalid", `mtasts: invalid policy: mta-sts.noctype.test: Content-Type "application/octet-stream" is not text/plain`},
		{"big.test", "sts-policy-invalid", "mtasts: invalid policy: mta-sts.big.test: larger than 65536 bytes"},
		{"notfound.test", "sts-policy-fetch-error", "mtasts: policy fetch failed: mta-sts.notfound.test: HTTP status 404"},
		{"redirect.test", "sts-policy-fetch-error", `mtasts: policy fetch failed: mta-sts.redirect.test: HTTP status 302, redirect to "https://mta-sts.target.test/.well-known/mta-sts.txt" not followed`},
		{"servfail.test", "sts-policy-fetch-error", "mtasts: policy fetch failed: resolver: TXT _mta-sts.servfail.test: temporary failure: SERVFAIL from " + w.dns.Addr()},
		{"noaddr.test", "sts-policy-fetch-error", "mtasts: policy fetch failed: mta-sts.noaddr.test: resolver: A mta-sts.noaddr.test: no such domain"},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			p, err := c.Policy(context.Background(), tc.domain)
			if err == nil {
				t.Fatalf("Policy = %v, want an error", p)
			}
			if p != nil {
				t.Errorf("Policy = %v with error %v, want nil", p, err)
			}
			if got := FailureType(err); got != tc.failure {
				t.Errorf("FailureType(%v) = %q, want %q", err, got, tc.failure)
			}
			if prefix, ok := strings.CutSuffix(tc.text, "…"); ok && !strings.HasPrefix(err.Error(), prefix) ||
				!ok && tc.text != "" && err.Error() != tc.text {
				t.Errorf("error\n %q, want\n %q", err, tc.text)
			}
		})
	}
	if n := w.hitsOf("target.test"); n != 0 {
		t.Errorf("the redirect was followed: %d requests to its target", n)
	}
}

// TestPolicySizeLimit: a policy of exactly 64 KiB is read; one byte more is not.
func TestPolicySizeLimit(t *testing.T) {
	w := newWorld(t)
	body := policyBody(ModeTesting, 60, "mx.x.test")
	pad := maxPolicySize - len(body) - len("x: \n")
	w.publish("edge.test", page{body: body + "x: " + strings.Repeat("y", pad) + "\n"}, "v=STSv1; id=1")
	w.publish("over.test", page{body: body + "x: " + strings.Repeat("y", pad+1) + "\n"}, "v=STSv1; id=1")
	c := w.client(Options{})
	if p := mustPolicy(t, c, "edge.test"); p == nil || p.Mode != ModeTesting {
		t.Errorf("policy of 64 KiB: %v", p)
	}
	if _, err := c.Policy(context.Background(), "over.test"); !errors.Is(err, ErrInvalid) {
		t.Errorf("policy of 64 KiB + 1: error %v, want ErrInvalid", err)
	}
}

func TestPolicyTimeout(t *testing.T) {
	w := newWorld(t)
	gate := make(chan struct{})
	defer close(gate)
	w.publish("slow.test", page{body: policyBody(ModeEnforce, 60, "mx.x.test"), gate: gate}, "v=STSv1; id=1")
	c := w.client(Options{Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.Policy(context.Background(), "slow.test")
	if FailureType(err) != "sts-policy-fetch-error" || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a fetch error for the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Policy took %v with a timeout of 200ms", d)
	}
}

func TestPolicyConnectionRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("closed.test", page{body: policyBody(ModeEnforce, 60, "mx.x.test")}, "v=STSv1; id=1")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c := w.client(Options{Port: port})
	if _, err := c.Policy(context.Background(), "closed.test"); FailureType(err) != "sts-policy-fetch-error" {
		t.Errorf("error %v, want a fetch error", err)
	}
}

// TestPolicyCache: the policy is fetched once per TXT id while unexpired,
// again when the id changes or max_age has passed, and a cached one stands
// in when the record goes or the look-up or the fetch fails.
func TestPolicyCache(t *testing.T) {
	w := newWorld(t)
	const d = "cache.test"
	w.publish(d, page{body: policyBody(ModeTesting, 3600, "mx1.cache.test")}, "v=STSv1; id=one")
	c := w.client(Options{})
	check := func(step, wantID string, wantMX string, wantHits int) {
		t.Helper()
		p := mustPolicy(t, c, d)
		if p == nil || p.ID != wantID || len(p.MX) != 1 || p.MX[0] != wantMX {
			t.Errorf("%s: policy %+v, want id %s and mx %s", step, p, wantID, wantMX)
		}
		if n := w.hitsOf(d); n != wantHits {
			t.Errorf("%s: %d fetches, want %d", step, n, wantHits)
		}
	}
	check("first", "one", "mx1.cache.test", 1)
	check("same id", "one", "mx1.cache.test", 1)

	w.setPage(d, page{body: policyBody(ModeEnforce, 3600, "mx2.cache.test")})
	check("same id, new file", "one", "mx1.cache.test", 1)
	w.setTXT(d, "v=STSv1; id=two")
	check("new id", "two", "mx2.cache.test", 2)
	check("new id again", "two", "mx2.cache.test", 2)

	w.clock.Advance(3600 * time.Second)
	w.setPage(d, page{body: policyBody(ModeEnforce, 3600, "mx3.cache.test")})
	check("expired", "two", "mx3.cache.test", 3)

	w.setTXT(d) // record withdrawn: the cached policy stays (§8.3)
	check("no record", "two", "mx3.cache.test", 3)

	w.setTXT(d, "v=STSv1; id=two")
	w.dns.SetFault("_mta-sts."+d, dns.TypeTXT, resolvertest.ServFail)
	check("TXT SERVFAIL", "two", "mx3.cache.test", 3)
	w.dns.SetFault("_mta-sts."+d, dns.TypeTXT, resolvertest.NoFault)

	w.setTXT(d, "v=STSv1; id=three")
	w.setPage(d, page{status: 500})
	check("fetch fails", "two", "mx3.cache.test", 4)

	w.clock.Advance(3600 * time.Second) // the cached one expires too
	if _, err := c.Policy(context.Background(), d); FailureType(err) != "sts-policy-fetch-error" {
		t.Errorf("expired cache, failing fetch: error %v, want a fetch error", err)
	}
}

// TestPolicyFailureRemembered: a failed fetch is not tried again for
// retryAfter, for the same id; a new id is fetched at once.
func TestPolicyFailureRemembered(t *testing.T) {
	w := newWorld(t)
	const d = "fail.test"
	w.publish(d, page{status: 503}, "v=STSv1; id=1")
	c := w.client(Options{})
	_, err1 := c.Policy(context.Background(), d)
	_, err2 := c.Policy(context.Background(), d)
	if FailureType(err1) != "sts-policy-fetch-error" || err2 == nil || err2.Error() != err1.Error() {
		t.Errorf("errors %v and %v, want the same fetch error", err1, err2)
	}
	if n := w.hitsOf(d); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	w.setTXT(d, "v=STSv1; id=2")
	_, _ = c.Policy(context.Background(), d)
	if n := w.hitsOf(d); n != 2 {
		t.Errorf("new id: %d fetches, want 2", n)
	}
	w.setPage(d, page{body: policyBody(ModeEnforce, 60, "mx.fail.test")})
	w.clock.Advance(retryAfter - time.Second)
	if _, err := c.Policy(context.Background(), d); err == nil {
		t.Error("fetched again before retryAfter")
	}
	w.clock.Advance(time.Second)
	if p := mustPolicy(t, c, d); p == nil || p.Mode != ModeEnforce {
		t.Errorf("after retryAfter: policy %v", p)
	}
	if n := w.hitsOf(d); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
}

// TestPolicyMaxAgeZero: a policy of max_age 0 applies to the call that
// fetched it and is neither cached nor stored.
func TestPolicyMaxAgeZero(t *testing.T) {
	w := newWorld(t)
	const d = "zero.test"
	w.publish(d, page{body: policyBody(ModeEnforce, 0, "mx.zero.test")}, "v=STSv1; id=1")
	store := newMapStore()
	c := w.client(Options{Store: store})
	for i := range 2 {
		if p := mustPolicy(t, c, d); p == nil || p.MaxAge != 0 {
			t.Errorf("call %d: policy %v", i, p)
		}
	}
	if n := w.hitsOf(d); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	if n := store.sets(); n != 0 {
		t.Errorf("%d Store writes, want 0", n)
	}
}

// TestPolicyConcurrent: callers for one domain share one fetch.
func TestPolicyConcurrent(t *testing.T) {
	w := newWorld(t)
	const d = "busy.test"
	gate := make(chan struct{})
	w.publish(d, page{body: policyBody(ModeEnforce, 600, "mx.busy.test"), gate: gate}, "v=STSv1; id=1")
	c := w.client(Options{})
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			p, err := c.Policy(context.Background(), d)
			if err == nil && (p == nil || p.MX[0] != "mx.busy.test") {
				err = errors.New("wrong policy")
			}
			errs <- err
		})
	}
	time.Sleep(200 * time.Millisecond) // let them all wait on the one fetch
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := w.hitsOf(d); got != 1 {
		t.Errorf("%d fetches for %d callers, want 1", got, n)
	}
}

// TestPolicyCallerGivesUp: a caller whose context ends gets an error at
// once; the shared fetch goes on for the others.
func TestPolicyCallerGivesUp(t *testing.T) {
	w := newWorld(t)
	const d = "patient.test"
	gate := make(chan struct{})
	w.publish(d, page{body: policyBody(ModeEnforce, 600, "mx.patient.test"), gate: gate}, "v=STSv1; id=1")
	c := w.client(Options{})
	result := make(chan error, 1)
	go func() {
		_, err := c.Policy(context.Background(), d)
		result <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Policy(ctx, d); !errors.Is(err, context.DeadlineExceeded) || FailureType(err) != "sts-policy-fetch-error" {
		t.Errorf("impatient caller: error %v", err)
	}
	close(gate)
	if err := <-result; err != nil {
		t.Errorf("patient caller: %v", err)
	}
}

func TestPolicyNoResolver(t *testing.T) {
	c := New(Options{})
	if _, err := c.Policy(context.Background(), "example.test"); FailureType(err) != "sts-policy-fetch-error" {
		t.Errorf("error %v, want a fetch error", err)
	}
}
