package tlsrpt

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// collector is an HTTPS rua: it keeps what was POSTed and answers status.
type collector struct {
	status atomic.Int32
	mu     sync.Mutex
	posts  []post
}

type post struct {
	method, path, contentType string
	body                      []byte
}

func (c *collector) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	c.mu.Lock()
	c.posts = append(c.posts, post{req.Method, req.URL.Path, req.Header.Get("Content-Type"), body})
	c.mu.Unlock()
	if s := c.status.Load(); s != 0 {
		if s/100 == 3 {
			w.Header().Set("Location", "https://elsewhere.example/")
		}
		w.WriteHeader(int(s))
	}
}

func (c *collector) Posts() []post {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]post(nil), c.posts...)
}

// httpsWorld is a policy domain whose record names an HTTPS rua, served on
// loopback with a certificate from a test CA, and maybe a mailto one too.
type httpsWorld struct {
	r   *Reporter
	col *collector
	mb  *mailbox
	dns *resolvertest.Server
}

func newHTTPSWorld(t *testing.T, rua string, trusted bool) *httpsWorld {
	t.Helper()
	ca := smtptest.NewCA(t)
	col := &collector{}
	port := httpsServer(t, ca.Issue(t, "reports.example.test"), col)
	res, srv := newResolver(t, `
_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=`+rua+`"
reports.example.test.    300 IN A   127.0.0.1
`)
	roots := ca.Pool
	if !trusted {
		roots = smtptest.NewCA(t).Pool
	}
	mb := &mailbox{}
	r := New(Options{Organization: "Example Org", From: "tlsrpt@gateway.example.org",
		Resolver: res, RootCAs: roots, HTTPSPort: port, Mail: mb.Mail, Now: newClock(now).Now})
	return &httpsWorld{r: r, col: col, mb: mb, dns: srv}
}

func TestReportByHTTPS(t *testing.T) {
	w := newHTTPSWorld(t, "https://reports.example.test/v1/tlsrpt?k=1", true)
	countSome(w.r)
	if err := w.r.SendDay(context.Background(), day); err != nil {
		t.Fatalf("SendDay: %v", err)
	}
	posts := w.col.Posts()
	if len(posts) != 1 {
		t.Fatalf("%d POSTs; want 1", len(posts))
	}
	p := posts[0]
	if p.method != http.MethodPost || p.path != "/v1/tlsrpt" || p.contentType != "application/tlsrpt+gzip" {
		t.Errorf("got %s %s (%s); want POST /v1/tlsrpt (application/tlsrpt+gzip)", p.method, p.path, p.contentType)
	}
	checkReportJSON(t, p.body)
}

// TestHTTPSFailures: a report the rua does not take stays in the store
// for the next SendDay.
func TestHTTPSFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted bool
		status  int
		wantErr string
	}{
		{"untrusted certificate", false, 0, "certificate"},
		{"server error", true, http.StatusInternalServerError, "500"},
		{"redirect", true, http.StatusFound, "302"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newHTTPSWorld(t, "https://reports.example.test/", tc.trusted)
			w.col.status.Store(int32(tc.status))
			countSome(w.r)
			err := w.r.SendDay(context.Background(), day)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("SendDay = %v; want an error with %q", err, tc.wantErr)
			}
			if keys, _ := w.r.store.KVKeys(keyPrefix, w.r.now()); len(keys) != 1 {
				t.Errorf("store keys %q; want the day's one key kept", keys)
			}
		})
	}
}

// TestPartialDelivery: a report that reached the mailto rua but not the
// HTTPS one is sent again to the HTTPS one only.
func TestPartialDelivery(t *testing.T) {
	w := newHTTPSWorld(t, "mailto:r@example.test,https://reports.example.test/", true)
	w.col.status.Store(http.StatusServiceUnavailable)
	countSome(w.r)
	ctx := context.Background()
	if err := w.r.SendDay(ctx, day); err == nil {
		t.Fatal("SendDay with the HTTPS rua failing = nil; want an error")
	}
	w.col.status.Store(0)
	if err := w.r.SendDay(ctx, day); err != nil {
		t.Fatalf("second SendDay: %v", err)
	}
	if n := len(w.mb.Sent()); n != 1 {
		t.Errorf("%d mails; want 1", n)
	}
	posts := w.col.Posts()
	if len(posts) != 2 {
		t.Fatalf("%d POSTs; want 2 (one refused, one taken)", len(posts))
	}
	checkReportJSON(t, posts[1].body)
	if keys, _ := w.r.store.KVKeys(keyPrefix, w.r.now()); len(keys) != 0 {
		t.Errorf("store keys %q after delivery; want none", keys)
	}
}

// TestNoReportWanted: a domain without a record loses its counts; a DNS
// failure keeps them.
func TestNoReportWanted(t *testing.T) {
	w := newHTTPSWorld(t, "https://reports.example.test/", true)
	ctx := context.Background()
	w.r.Success(ctx, Policy{Domain: "norecord.test", Type: TypeNoPolicy})
	w.r.Success(ctx, Policy{Domain: "example.test", Type: TypeNoPolicy})
	w.dns.SetFault("_smtp._tls.example.test.", dns.TypeTXT, resolvertest.ServFail)
	if err := w.r.SendDay(ctx, day); err == nil {
		t.Fatal("SendDay with SERVFAIL = nil; want an error")
	}
	keys, _ := w.r.store.KVKeys(keyPrefix, w.r.now())
	if want := keyPrefix + "2026-12-05:example.test"; len(keys) != 1 || keys[0] != want {
		t.Errorf("store keys %q; want [%s]", keys, want)
	}
	w.dns.SetFault("_smtp._tls.example.test.", dns.TypeTXT, resolvertest.NoFault)
	if err := w.r.SendDay(ctx, day); err != nil {
		t.Fatalf("SendDay: %v", err)
	}
	if n := len(w.col.Posts()); n != 1 {
		t.Errorf("%d POSTs; want 1", n)
	}
}

// TestMailFailureKeeps: a Mail that fails keeps the report for later.
func TestMailFailureKeeps(t *testing.T) {
	r, mb := mailReporter(t, "v=TLSRPTv1; rua=mailto:r@example.test")
	mb.SetFail(errors.New("queue full"))
	countSome(r)
	ctx := context.Background()
	if err := r.SendDay(ctx, day); err == nil || !strings.Contains(err.Error(), "queue full") {
		t.Fatalf("SendDay = %v; want the Mail error", err)
	}
	mb.SetFail(nil)
	if err := r.SendDay(ctx, day); err != nil {
		t.Fatalf("SendDay: %v", err)
	}
	sent := mb.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d mails; want 1", len(sent))
	}
}

// TestCountsSurviveRestart: counts written by Run's end are read by a new
// Reporter over the same spool, reopened.
func TestCountsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	c := newClock(now)
	open := func() *queue.Spool {
		s, err := queue.Open(dir, queue.Options{Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	spool := open()
	first := New(Options{Store: spool, Now: c.Now})
	first.sendDelay = time.Hour
	countSome(first) // before Run: Run must write them
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); first.Run(ctx) }()
	countSome(first) // while Run runs
	cancel()
	<-done
	if err := spool.Close(); err != nil {
		t.Fatal(err)
	}

	spool = open()
	t.Cleanup(func() { spool.Close() })
	res, _ := newResolver(t, `_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:r@example.test"`)
	mb := &mailbox{}
	second := New(Options{Organization: "Example Org", From: "tlsrpt@gateway.example.org",
		Resolver: res, Mail: mb.Mail, Store: spool, Now: c.Now})
	countSome(second)
	if err := second.SendDay(context.Background(), day); err != nil {
		t.Fatalf("SendDay: %v", err)
	}
	sent := mb.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d mails; want 1", len(sent))
	}
	rep := decodeMailedReport(t, sent[0].msg)
	// Three rounds of countSome: 9 successes and 9 failures under STS.
	if s := rep.Policies[0].Summary; s.Successful != 9 || s.Failed != 9 {
		t.Errorf("after a restart the STS summary is %+v; want 9 and 9", s)
	}
	if n := rep.Policies[0].FailureDetails[0].Sessions; n != 6 {
		t.Errorf("certificate-expired sessions %d; want 6", n)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestRunSchedule: Run sends a day once its send delay after midnight has
// passed, not before, and retries an undelivered report after r.retry.
func TestRunSchedule(t *testing.T) {
	res, _ := newResolver(t, `_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:r@example.test"`)
	mb := &mailbox{fail: errors.New("queue full")}
	c := newClock(now)
	r := New(Options{Organization: "Example Org", From: "tlsrpt@gateway.example.org",
		Resolver: res, Mail: mb.Mail, Now: c.Now})
	r.sendDelay, r.tick, r.retry = 90*time.Minute, time.Millisecond, 10*time.Minute
	countSome(r)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	stored := func() int { keys, _ := r.store.KVKeys(keyPrefix, c.Now()); return len(keys) }
	waitFor(t, "the counts to be written", func() bool { return stored() == 1 })
	c.Set(day.Add(24*time.Hour + 89*time.Minute)) // not yet due
	time.Sleep(50 * time.Millisecond)
	if n := mb.Tries(); n != 0 {
		t.Fatalf("%d mails tried before the day's send time; want 0", n)
	}
	c.Set(day.Add(24*time.Hour + 90*time.Minute)) // due: Mail fails
	waitFor(t, "a first try", func() bool { return mb.Tries() == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := mb.Tries(); n != 1 || stored() != 1 {
		t.Fatalf("%d tries, %d keys before the retry time; want 1 and the key kept", n, stored())
	}
	mb.SetFail(nil)
	c.Set(day.Add(24*time.Hour + 100*time.Minute)) // the retry
	waitFor(t, "the retried report", func() bool { return len(mb.Sent()) == 1 && stored() == 0 })
}
