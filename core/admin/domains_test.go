package admin_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/queue"
)

// domainFixture is the fixture with a real delivery engine (not running)
// whose configuration holds example.com.
func domainFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixture(t, func(o *admin.Options) {
		eng, err := delivery.New(delivery.Options{
			Spool:    o.Queue.(*queue.Spool),
			Hostname: "mx.example.org",
			Config:   config.Delivery{HoldDomains: []string{"example.com"}},
			Now:      o.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		o.Engine = eng
	})
}

func TestDomainHolds(t *testing.T) {
	f := domainFixture(t)
	steps := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/v1/domains", 200, `[{"domain":"example.com","source":"hold_domains"}]`},
		{"POST", "/v1/domains/Example.NET./hold", 200, `{"domain":"example.net","action":"hold","count":0}`},
		{"POST", "/v1/domains/example.net/hold", 200, `{"domain":"example.net","action":"hold","count":0}`},
		{"GET", "/v1/domains", 200, `[{"domain":"example.com","source":"hold_domains"},` +
			`{"domain":"example.net","source":"operator","since":"2026-03-03T12:01:00Z"}]`},
		{"GET", "/v1/queue/{A}", 200, ""}, // checked below
		{"POST", "/v1/domains/bad_name.test/hold", 400, `{"error":"delivery: bad domain: \"bad_name.test\" is not a domain name or \"*.\" and a domain name: label \"bad_name\" has the character '_'; only letters, digits and hyphens are allowed"}`},
		{"POST", "/v1/domains/example.com/release", 404, `{"error":"delivery: domain is not held by the operator: example.com is held (hold_domains example.com); edit the configuration and reload, or deliver its mail once with ` + "`gateway queue retry -domain`" + `"}`},
		{"POST", "/v1/domains/other.test/release", 404, `{"error":"delivery: domain is not held: other.test"}`},
		// Message a's deferred bob@example.net is made due; b is held itself.
		{"POST", "/v1/domains/example.net/release", 200, `{"domain":"example.net","action":"release","count":1}`},
		{"GET", "/v1/domains", 200, `[{"domain":"example.com","source":"hold_domains"}]`},
		{"POST", "/v1/domains/example.net/frob", 404, `{"error":"not found"}`},
		{"GET", "/v1/domains/example.net/hold", 405, `{"error":"method GET not allowed"}`},
	}
	for _, s := range steps {
		code, body := f.do(t, s.method, f.ids(s.path))
		if code != s.code {
			t.Errorf("%s %s: status %d, body %s; want %d", s.method, s.path, code, body, s.code)
			continue
		}
		if s.body != "" {
			if diff := cmp.Diff(s.body, compact(t, body)); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", s.method, s.path, diff)
			}
			continue
		}
		var m admin.Message
		decode(t, body, &m)
		var held []string
		for _, r := range m.Recipients {
			held = append(held, r.Address+": "+r.Held)
		}
		want := []string{"bob@example.net: operator hold example.net", "carol@example.com: hold_domains example.com"}
		if diff := cmp.Diff(want, held); diff != "" {
			t.Errorf("holds shown on the recipients (-want +got):\n%s", diff)
		}
	}
	if m, now := get(t, f, f.a), f.clock.Now(); !m.NextAttempt.Equal(now) {
		t.Errorf("message a's next attempt %v after the release; want now (%v)", m.NextAttempt, now)
	}
}

func TestDomainHoldsNoEngine(t *testing.T) {
	f := newFixture(t, func(o *admin.Options) { o.Engine = nil })
	for _, p := range []struct{ method, path string }{
		{"GET", "/v1/domains"},
		{"POST", "/v1/domains/example.net/hold"},
		{"POST", "/v1/domains/example.net/release"},
	} {
		code, body := f.do(t, p.method, p.path)
		if want := errorJSON("no delivery engine"); code != 503 || body != want {
			t.Errorf("%s %s: %d %q, want 503 %q", p.method, p.path, code, body, want)
		}
	}
}
