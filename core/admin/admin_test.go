package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/admin/admintest"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
)

// t0 is when the test queue's first message arrived.
var t0 = time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for the spool and the Admin.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// fixture is an Admin over a real spool holding two messages:
//
//	a: alice@example.org → bob@example.net (deferred, 2 attempts), carol@example.com (pending); size 120
//	b: <> → dave@example.net (pending), held; size 64
type fixture struct {
	clock  *clock
	spool  *queue.Spool
	engine *admintest.Engine
	admin  *admin.Admin
	srv    *httptest.Server
	a, b   string // queue IDs
}

type fixtureOption func(*admin.Options)

func newFixture(t *testing.T, opts ...fixtureOption) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clock: &clock{t: t0}}
	spool, err := queue.Open(t.TempDir(), queue.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	f.spool = spool
	f.engine = &admintest.Engine{Spool: spool}

	f.a = commit(t, spool, &envelope.Envelope{
		Sender: envelope.Address{Local: "alice", Domain: "example.org"},
		Recipients: []envelope.Recipient{
			{Address: envelope.Address{Local: "bob", Domain: "example.net"}, Notify: envelope.NotifyFailure | envelope.NotifyDelay, ORCPT: "rfc822;bob@example.net"},
			{Address: envelope.Address{Local: "carol", Domain: "example.com"}},
		},
		Size:       100,
		Body:       envelope.Body8BitMIME,
		Ret:        envelope.RetHdrs,
		EnvID:      "QQ314159",
		ClientIP:   "192.0.2.7",
		ClientHELO: "mx.example.org",
		AuthUser:   "alice",
		TLS:        true,
		Received:   t0.Add(-time.Second),
	}, 120)
	err = spool.Update(ctx, f.a, func(m *queue.Message) error {
		m.Attempts = 2
		m.NextAttempt = t0.Add(10 * time.Minute)
		m.Recipients[0] = queue.RecipientState{
			Status:    queue.Deferred,
			LastReply: "451 4.7.1 Greylisted, try again later",
			Attempts:  2,
			Updated:   t0.Add(5 * time.Minute),
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	f.clock.Set(t0.Add(time.Minute))
	f.b = commit(t, spool, &envelope.Envelope{
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "dave", Domain: "example.net"}}},
		ClientIP:   "127.0.0.1",
		ClientHELO: "localhost",
	}, 64)
	if err := spool.Update(ctx, f.b, func(m *queue.Message) error { m.Held = true; return nil }); err != nil {
		t.Fatal(err)
	}

	opt := admin.Options{Queue: spool, Engine: f.engine, Now: f.clock.Now, Version: "1.2.3"}
	for _, o := range opts {
		o(&opt)
	}
	f.admin = admin.New(opt)
	f.srv = httptest.NewServer(f.admin.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// commit queues a message of size bytes.
func commit(t *testing.T, s *queue.Spool, env *envelope.Envelope, size int) string {
	t.Helper()
	ctx := context.Background()
	d, err := s.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	header := []byte("Received: test\r\n")
	if _, err := d.Write([]byte(strings.Repeat("x", size-len(header)))); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, env, header); err != nil {
		t.Fatal(err)
	}
	return d.ID()
}

// do sends a request and returns the status and body.
func (f *fixture) do(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// ids replaces the placeholders A and B in want with the fixture's IDs.
func (f *fixture) ids(want string) string {
	return strings.NewReplacer("{A}", f.a, "{B}", f.b).Replace(want)
}

const listJSON = `[
  {
    "id": "{A}",
    "sender": "alice@example.org",
    "recipients": [
      {
        "address": "bob@example.net",
        "status": "deferred",
        "last_reply": "451 4.7.1 Greylisted, try again later",
        "attempts": 2
      },
      {
        "address": "carol@example.com",
        "status": "pending",
        "last_reply": "",
        "attempts": 0
      }
    ],
    "created": "2026-03-03T12:00:00Z",
    "size": 120,
    "attempts": 2,
    "next_attempt": "2026-03-03T12:10:00Z",
    "held": false
  },
  {
    "id": "{B}",
    "sender": "",
    "recipients": [
      {
        "address": "dave@example.net",
        "status": "pending",
        "last_reply": "",
        "attempts": 0
      }
    ],
    "created": "2026-03-03T12:01:00Z",
    "size": 64,
    "attempts": 0,
    "held": true
  }
]
`

func TestList(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/v1/queue")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/queue: status %d, body %s", code, body)
	}
	if diff := cmp.Diff(f.ids(listJSON), body); diff != "" {
		t.Errorf("GET /v1/queue (-want +got):\n%s", diff)
	}
}

func TestListFilters(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		query    string
		wantCode int
		wantIDs  []string // in order; nil with an error code
		wantErr  string
	}{
		{"limit 1", "?limit=1", 200, []string{f.a}, ""},
		{"limit above length", "?limit=5", 200, []string{f.a, f.b}, ""},
		{"domain both", "?domain=example.net", 200, []string{f.a, f.b}, ""},
		{"domain folded", "?domain=Example.COM.", 200, []string{f.a}, ""},
		{"domain none", "?domain=example.invalid", 200, []string{}, ""},
		{"domain and limit", "?domain=example.net&limit=1", 200, []string{f.a}, ""},
		{"limit zero", "?limit=0", 400, nil, `limit must be a positive integer, not "0"`},
		{"limit text", "?limit=ten", 400, nil, `limit must be a positive integer, not "ten"`},
		{"domain empty", "?domain=", 400, nil, "domain must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.do(t, "GET", "/v1/queue"+tt.query)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %s", code, tt.wantCode, body)
			}
			if tt.wantIDs == nil {
				if want := errorJSON(tt.wantErr); body != want {
					t.Errorf("body %q, want %q", body, want)
				}
				return
			}
			var got []admin.Message
			decode(t, body, &got)
			gotIDs := []string{}
			for _, m := range got {
				gotIDs = append(gotIDs, m.ID)
			}
			if diff := cmp.Diff(tt.wantIDs, gotIDs); diff != "" {
				t.Errorf("IDs (-want +got):\n%s", diff)
			}
		})
	}
}

const showJSON = `{
  "id": "{A}",
  "sender": "alice@example.org",
  "recipients": [
    {
      "address": "bob@example.net",
      "status": "deferred",
      "last_reply": "451 4.7.1 Greylisted, try again later",
      "attempts": 2,
      "updated": "2026-03-03T12:05:00Z",
      "notify": [
        "FAILURE",
        "DELAY"
      ],
      "orcpt": "rfc822;bob@example.net"
    },
    {
      "address": "carol@example.com",
      "status": "pending",
      "last_reply": "",
      "attempts": 0
    }
  ],
  "created": "2026-03-03T12:00:00Z",
  "size": 120,
  "attempts": 2,
  "next_attempt": "2026-03-03T12:10:00Z",
  "held": false,
  "envelope": {
    "ret": "HDRS",
    "envid": "QQ314159",
    "body": "8BITMIME",
    "smtputf8": false,
    "declared_size": 100,
    "client_ip": "192.0.2.7",
    "client_helo": "mx.example.org",
    "auth_user": "alice",
    "tls": true,
    "received": "2026-03-03T11:59:59Z"
  }
}
`

func TestShow(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/v1/queue/"+f.a)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/queue/%s: status %d, body %s", f.a, code, body)
	}
	if diff := cmp.Diff(f.ids(showJSON), body); diff != "" {
		t.Errorf("GET /v1/queue/%s (-want +got):\n%s", f.a, diff)
	}

	code, body = f.do(t, "GET", "/v1/queue/0000000000000000")
	if want := errorJSON("message 0000000000000000 not found"); code != 404 || body != want {
		t.Errorf("unknown ID: status %d, body %q; want 404, %q", code, body, want)
	}
	code, body = f.do(t, "GET", "/v1/queue/not-an-id")
	if code != 404 {
		t.Errorf("malformed ID: status %d, body %q; want 404", code, body)
	}
}

func TestOperations(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		path      string // {A} and {B} stand for the fixture's IDs
		busy      string // "A": message a is being delivered
		wantCode  int
		wantBody  string
		wantCalls []string
		check     func(t *testing.T, f *fixture) // the spool afterwards
	}{
		{
			name: "retry", method: "POST", path: "/v1/queue/{A}/retry",
			wantCode: 200, wantBody: `{"id": "{A}", "action": "retry"}`, wantCalls: []string{"retry {A}"},
			check: func(t *testing.T, f *fixture) {
				if m := get(t, f, f.a); !m.NextAttempt.IsZero() {
					t.Errorf("after retry: NextAttempt %v, want zero (due now)", m.NextAttempt)
				}
			},
		},
		{
			name: "hold", method: "POST", path: "/v1/queue/{A}/hold",
			wantCode: 200, wantBody: `{"id": "{A}", "action": "hold"}`, wantCalls: []string{"hold {A}"},
			check: func(t *testing.T, f *fixture) {
				if m := get(t, f, f.a); !m.Held {
					t.Error("after hold: Held false")
				}
			},
		},
		{
			name: "release", method: "POST", path: "/v1/queue/{B}/release",
			wantCode: 200, wantBody: `{"id": "{B}", "action": "release"}`, wantCalls: []string{"release {B}"},
			check: func(t *testing.T, f *fixture) {
				if m := get(t, f, f.b); m.Held {
					t.Error("after release: Held true")
				}
			},
		},
		{
			name: "bounce", method: "POST", path: "/v1/queue/{A}/bounce",
			wantCode: 200, wantBody: `{"id": "{A}", "action": "bounce"}`, wantCalls: []string{"bounce {A}"},
			check: func(t *testing.T, f *fixture) { gone(t, f, f.a) },
		},
		{
			name: "remove", method: "DELETE", path: "/v1/queue/{B}",
			wantCode: 200, wantBody: `{"id": "{B}", "action": "remove"}`, wantCalls: []string{"remove {B}"},
			check: func(t *testing.T, f *fixture) { gone(t, f, f.b) },
		},
		{
			name: "retry domain", method: "POST", path: "/v1/queue/retry?domain=Example.NET",
			wantCode: 200, wantBody: `{"count": 1}`, wantCalls: []string{"retry-domain example.net"},
		},
		{
			name: "retry all", method: "POST", path: "/v1/queue/retry?all=1",
			wantCode: 200, wantBody: `{"count": 1}`, wantCalls: []string{"retry-all"},
		},
		{
			name: "retry neither", method: "POST", path: "/v1/queue/retry",
			wantCode: 400, wantBody: `{"error": "give domain=D or all=1"}`,
		},
		{
			name: "retry all=0", method: "POST", path: "/v1/queue/retry?all=0",
			wantCode: 400, wantBody: `{"error": "give domain=D or all=1"}`,
		},
		{
			name: "retry both", method: "POST", path: "/v1/queue/retry?all=1&domain=example.net",
			wantCode: 400, wantBody: `{"error": "give domain or all=1, not both"}`,
		},
		{
			name: "retry all=yes", method: "POST", path: "/v1/queue/retry?all=yes",
			wantCode: 400, wantBody: `{"error": "all must be 1 or 0, not \"yes\""}`,
		},
		{
			name: "unknown ID", method: "POST", path: "/v1/queue/0000000000000000/hold",
			wantCode: 404, wantBody: `{"error": "message 0000000000000000 not found"}`,
			wantCalls: []string{"hold 0000000000000000"},
		},
		{
			name: "remove unknown ID", method: "DELETE", path: "/v1/queue/0000000000000000",
			wantCode: 404, wantBody: `{"error": "message 0000000000000000 not found"}`,
			wantCalls: []string{"remove 0000000000000000"},
		},
		{
			name: "busy", method: "POST", path: "/v1/queue/{A}/bounce", busy: "A",
			wantCode: 409, wantBody: `{"error": "message {A} is being delivered; try again when the attempt is over"}`,
			wantCalls: []string{"bounce {A}"},
			check:     func(t *testing.T, f *fixture) { get(t, f, f.a) },
		},
		{
			name: "unknown operation", method: "POST", path: "/v1/queue/{A}/frobnicate",
			wantCode: 404, wantBody: `{"error": "not found"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.busy == "A" {
				f.engine.Busy = map[string]bool{f.a: true}
			}
			code, body := f.do(t, tt.method, f.ids(tt.path))
			if code != tt.wantCode {
				t.Errorf("status %d, want %d", code, tt.wantCode)
			}
			if diff := cmp.Diff(compact(t, f.ids(tt.wantBody)), compact(t, body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			var wantCalls []string
			for _, c := range tt.wantCalls {
				wantCalls = append(wantCalls, f.ids(c))
			}
			if diff := cmp.Diff(wantCalls, f.engine.Calls()); diff != "" {
				t.Errorf("engine calls (-want +got):\n%s", diff)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func get(t *testing.T, f *fixture, id string) *queue.Message {
	t.Helper()
	m, err := f.spool.Get(id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return m
}

func gone(t *testing.T, f *fixture, id string) {
	t.Helper()
	if _, err := f.spool.Get(id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get(%s) = %v, want ErrNotFound", id, err)
	}
}

func TestMethodsAndPaths(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		method, path string
		wantCode     int
		wantAllow    string
		wantErr      string
	}{
		{"GET", "/healthz", 200, "", ""},
		{"HEAD", "/healthz", 200, "", ""},
		{"POST", "/healthz", 405, "GET", "method POST not allowed"},
		{"POST", "/v1/queue", 405, "GET", "method POST not allowed"},
		{"GET", "/v1/queue/retry", 405, "POST", "method GET not allowed"},
		{"PUT", "/v1/queue/{A}", 405, "DELETE, GET", "method PUT not allowed"},
		{"GET", "/v1/queue/{A}/hold", 405, "POST", "method GET not allowed"},
		{"GET", "/v1/reload", 405, "POST", "method GET not allowed"},
		{"POST", "/metrics", 405, "GET", "method POST not allowed"},
		{"GET", "/", 404, "", "not found"},
		{"GET", "/v2/queue", 404, "", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, f.srv.URL+f.ids(tt.path), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow %q, want %q", got, tt.wantAllow)
			}
			if tt.wantErr != "" {
				if want := errorJSON(tt.wantErr); string(b) != want {
					t.Errorf("body %q, want %q", b, want)
				}
			}
			if got := resp.Header.Get("Content-Type"); tt.path != "/metrics" && got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
		})
	}
	if calls := f.engine.Calls(); len(calls) != 0 {
		t.Errorf("engine calls %q, want none", calls)
	}
}

func TestHealthz(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/healthz")
	if want := "{\n  \"status\": \"ok\"\n}\n"; code != 200 || body != want {
		t.Errorf("GET /healthz: %d %q, want 200 %q", code, body, want)
	}
}

func TestReload(t *testing.T) {
	t.Run("not configured", func(t *testing.T) {
		f := newFixture(t)
		code, body := f.do(t, "POST", "/v1/reload")
		if want := errorJSON("reload is not supported"); code != 501 || body != want {
			t.Errorf("status %d body %q, want 501 %q", code, body, want)
		}
	})
	t.Run("ok", func(t *testing.T) {
		calls := 0
		f := newFixture(t, func(o *admin.Options) {
			o.Reload = func(ctx context.Context) error { calls++; return nil }
		})
		code, body := f.do(t, "POST", "/v1/reload")
		if want := "{\n  \"status\": \"reloaded\"\n}\n"; code != 200 || body != want {
			t.Errorf("status %d body %q, want 200 %q", code, body, want)
		}
		if calls != 1 {
			t.Errorf("Reload called %d times, want 1", calls)
		}
	})
	t.Run("failing", func(t *testing.T) {
		f := newFixture(t, func(o *admin.Options) {
			o.Reload = func(ctx context.Context) error { return errors.New("config: gateway.hcl:3: bad") }
		})
		code, body := f.do(t, "POST", "/v1/reload")
		if want := errorJSON("config: gateway.hcl:3: bad"); code != 500 || body != want {
			t.Errorf("status %d body %q, want 500 %q", code, body, want)
		}
	})
}

func TestNoEngine(t *testing.T) {
	f := newFixture(t, func(o *admin.Options) { o.Engine = nil })
	for _, p := range []struct{ method, path string }{
		{"POST", "/v1/queue/{A}/retry"},
		{"DELETE", "/v1/queue/{A}"},
		{"POST", "/v1/queue/retry?all=1"},
	} {
		code, body := f.do(t, p.method, f.ids(p.path))
		if want := errorJSON("no delivery engine"); code != 503 || body != want {
			t.Errorf("%s %s: %d %q, want 503 %q", p.method, p.path, code, body, want)
		}
	}
	if code, _ := f.do(t, "GET", "/v1/queue"); code != 200 {
		t.Errorf("GET /v1/queue without engine: %d, want 200", code)
	}
	if code, _ := f.do(t, "GET", "/metrics"); code != 200 {
		t.Errorf("GET /metrics without engine: %d, want 200", code)
	}
}

func TestBrowserProtection(t *testing.T) {
	f := newFixture(t)

	// DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/queue", nil)
	req.Host = "evil.example:8025"
	code, body := send(t, req)
	if want := errorJSON(`host "evil.example:8025" refused: use a loopback address`); code != 403 || body != want {
		t.Errorf("foreign Host: %d %q, want 403 %q", code, body, want)
	}
	for _, host := range []string{"localhost:8025", "127.0.0.1:8025", "[::1]:8025", "LOCALHOST"} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/healthz", nil)
		req.Host = host
		if code, body := send(t, req); code != 200 {
			t.Errorf("Host %s: %d %q, want 200", host, code, body)
		}
	}

	// CSRF: a cross-site form post.
	req, _ = http.NewRequest("POST", f.srv.URL+"/v1/queue/retry?all=1", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	code, body = send(t, req)
	if want := errorJSON("cross-origin request refused"); code != 403 || body != want {
		t.Errorf("cross-site POST: %d %q, want 403 %q", code, body, want)
	}
	if calls := f.engine.Calls(); len(calls) != 0 {
		t.Errorf("engine calls %q, want none", calls)
	}
}

func TestServe(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- f.admin.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz: %d, want 200", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("GET after shutdown succeeded; want the listener closed")
	}
}

// fakeListener has an address and nothing else.
type fakeListener struct {
	addr   net.Addr
	closed bool
}

func (l *fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l *fakeListener) Close() error              { l.closed = true; return nil }
func (l *fakeListener) Addr() net.Addr            { return l.addr }

func TestServeRefusesNonLoopback(t *testing.T) {
	f := newFixture(t)
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8025},
		&net.TCPAddr{IP: net.IPv4zero, Port: 8025},
		&net.TCPAddr{IP: net.IPv6unspecified, Port: 8025},
		&net.UnixAddr{Name: "/run/gateway.sock", Net: "unix"},
	} {
		ln := &fakeListener{addr: addr}
		err := f.admin.Serve(context.Background(), ln)
		if !errors.Is(err, admin.ErrNotLoopback) {
			t.Errorf("Serve on %s = %v, want ErrNotLoopback", addr, err)
		}
		if !ln.closed {
			t.Errorf("Serve on %s left the listener open", addr)
		}
	}
}

func TestMetrics(t *testing.T) {
	servers := []admin.ServerStats{
		admin.ServerStatsFunc(func() smtp.ServerStats {
			return smtp.ServerStats{SessionsActive: 2, SessionsTotal: 40, MessagesAccepted: 30, MessagesRejected: 3,
				Refusals:      map[smtp.Refusal]int64{{Command: "rcpt", Code: 550, Enhanced: "5.7.1"}: 7},
				TLSHandshakes: map[smtp.TLSHandshake]int64{{Result: "resumed", Version: "TLSv1.3"}: 5, {Result: "failed"}: 1}}
		}),
		admin.ServerStatsFunc(func() smtp.ServerStats {
			return smtp.ServerStats{SessionsActive: 1, SessionsTotal: 2, MessagesAccepted: 1, MessagesRejected: 0,
				Refusals:      map[smtp.Refusal]int64{{Command: "rcpt", Code: 550, Enhanced: "5.7.1"}: 2, {Command: "connect", Code: 421}: 1},
				TLSHandshakes: map[smtp.TLSHandshake]int64{{Result: "resumed", Version: "TLSv1.3"}: 2, {Result: "full", Version: "TLSv1.0"}: 1}}
		}),
	}
	out := outboundTLS{{Result: "full", Version: "TLSv1.2"}: 3, {Result: "resumed", Version: "TLSv1.2"}: 4}
	f := newFixture(t, func(o *admin.Options) { o.Servers, o.Out = servers, out })
	f.engine.Stat = delivery.Stats{InFlight: 4, Delivered: 17, Deferred: 5, Failed: 2, DSNs: 2}
	obs := f.admin.Observer()
	obs.Attempted("example.net", delivery.Delivered, "dane", 30*time.Millisecond)
	obs.Attempted("example.net", delivery.Delivered, "dane", 200*time.Millisecond)
	obs.Attempted("example.com", delivery.Temporary, "mta-sts", 2*time.Second)
	obs.Bounced(dsn.ActionFailed)
	f.clock.Set(t0.Add(90 * time.Second))

	code, body := f.do(t, "GET", "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		"gateway_messages_accepted_total 31",
		"gateway_messages_rejected_total 3",
		"gateway_smtp_sessions_active 3",
		"gateway_smtp_sessions_total 42",
		`gateway_smtp_refusals_total{code="550",command="rcpt",enhanced="5.7.1"} 9`,
		`gateway_smtp_refusals_total{code="421",command="connect",enhanced=""} 1`,
		`gateway_smtp_tls_handshakes_total{result="resumed",version="TLSv1.3"} 7`,
		`gateway_smtp_tls_handshakes_total{result="full",version="TLSv1.0"} 1`,
		`gateway_smtp_tls_handshakes_total{result="failed",version=""} 1`,
		`gateway_smtp_tls_handshakes_total{result="full",version="TLSv1.3"} 0`,
		`gateway_delivery_tls_handshakes_total{result="full",version="TLSv1.2"} 3`,
		`gateway_delivery_tls_handshakes_total{result="resumed",version="TLSv1.2"} 4`,
		`gateway_delivery_tls_handshakes_total{result="failed",version=""} 0`,
		"gateway_queue_messages 2",
		"gateway_queue_oldest_seconds 90",
		"gateway_spool_commits_total 2",
		"gateway_spool_fsyncs_total 4", // two commits and two updates, each its own batch
		"# TYPE gateway_spool_file_bytes gauge",
		`gateway_deliveries_total{result="delivered"} 17`,
		`gateway_deliveries_total{result="deferred"} 5`,
		`gateway_deliveries_total{result="failed"} 2`,
		"gateway_delivery_in_flight 4",
		`gateway_delivery_attempts_total{class="delivered",tls_policy="dane"} 2`,
		`gateway_delivery_attempts_total{class="temporary",tls_policy="mta-sts"} 1`,
		`gateway_delivery_attempts_total{class="permanent",tls_policy=""} 0`,
		`gateway_delivery_duration_seconds_bucket{le="0.05"} 1`,
		`gateway_delivery_duration_seconds_bucket{le="0.25"} 2`,
		`gateway_delivery_duration_seconds_bucket{le="2.5"} 3`,
		"gateway_delivery_duration_seconds_count 3",
		"gateway_delivery_duration_seconds_sum 2.23",
		`gateway_dsn_total{action="failed"} 1`,
		`gateway_dsn_total{action="delayed"} 0`,
		`gateway_build_info{goversion="`,
		`version="1.2.3"} 1`,
		"# TYPE gateway_messages_accepted_total counter",
		"# TYPE gateway_smtp_sessions_active gauge",
		"# TYPE gateway_delivery_duration_seconds histogram",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// outboundTLS is an admin.OutboundTLS with fixed counts.
type outboundTLS map[smtp.TLSHandshake]int64

func (o outboundTLS) TLSHandshakes() map[smtp.TLSHandshake]int64 { return maps.Clone(o) }

func TestMetricsEmptyQueue(t *testing.T) {
	spool, err := queue.Open(t.TempDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	a := admin.New(admin.Options{Queue: spool})
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{"gateway_queue_messages 0", "gateway_queue_oldest_seconds 0", "gateway_smtp_sessions_total 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "gateway_deliveries_total") {
		t.Error("/metrics has gateway_deliveries_total without an engine")
	}
}

// TestRegistryPerAdmin: two Admins in one process do not share metrics
// (no global registry).
func TestRegistryPerAdmin(t *testing.T) {
	f1, f2 := newFixture(t), newFixture(t)
	f1.admin.Observer().Bounced(dsn.ActionDelayed)
	_, body := f2.do(t, "GET", "/metrics")
	if !strings.Contains(body, `gateway_dsn_total{action="delayed"} 0`) {
		t.Errorf("second Admin sees the first one's DSN")
	}
	_, body = f1.do(t, "GET", "/metrics")
	if !strings.Contains(body, `gateway_dsn_total{action="delayed"} 1`) {
		t.Errorf("first Admin lost its DSN")
	}
}

func errorJSON(msg string) string {
	return fmt.Sprintf("{\n  \"error\": %q\n}\n", msg)
}

func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
}

// compact removes insignificant space from a JSON document.
func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compacting %q: %v", s, err)
	}
	return b.String()
}
