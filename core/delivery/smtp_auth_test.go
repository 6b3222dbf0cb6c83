package delivery_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// passwords is an smtp.Authenticator with fixed users.
type passwords map[string]string

func (p passwords) Authenticate(_ context.Context, user, pass string) (bool, error) {
	want, ok := p[user]
	return ok && pass == want, nil
}

// TestSMTPAuth: a route's credentials log in to a smarthost, only over
// verified TLS unless the route says tls = "none"; every failure defers; a
// pooled session is reused only under the credentials it logged in with.
func TestSMTPAuth(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLSConfigs(t)
	trusting := delivery.SMTPOptions{TLSConfig: func(string) *tls.Config { return clientTLS.Clone() }}
	users := passwords{"gw": "s3cret"}
	// smarthost relays for clients that log in only.
	smarthost := func(tlsOn, insecure bool) func(*smtp.Options) {
		return func(o *smtp.Options) {
			o.Auth, o.Listener.AuthInsecure = users, insecure
			o.RelayNetworks, o.RelayAuthenticated = nil, true
			if tlsOn {
				o.TLS = serverTLS
			}
		}
	}
	login := &delivery.Credentials{Username: "gw", Password: "s3cret"}
	deliver := func(t *testing.T, tr *delivery.SMTP, rt delivery.Route) []delivery.Result {
		job, _ := newTestJob(rt, smtpTestBody, "bob@example.test")
		return tr.Deliver(context.Background(), job)
	}
	deferred := func(e2 uint16, text, remote string) []delivery.Result {
		return []delivery.Result{{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 7, e2}, Text: text, RemoteMTA: remote}}
	}

	t.Run("over verified STARTTLS", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: smarthost(true, false)})
		tr := newSMTPTransport(t, trusting)
		got := deliver(t, tr, delivery.Route{Via: m.addr, TLS: delivery.TLSRequire, Auth: login})
		if len(got) != 1 || got[0].Class != delivery.Delivered {
			t.Fatalf("Deliver = %+v, want delivered", got)
		}
		msgs := checkSpooled(t, m, []string{"bob@example.test"})
		if e := msgs[0].Envelope; e.AuthUser != "gw" || !e.TLS {
			t.Errorf("smarthost got the message as %q, TLS %v; want as gw over TLS", e.AuthUser, e.TLS)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: smarthost(true, false)})
		tr := newSMTPTransport(t, trusting)
		got := deliver(t, tr, delivery.Route{Via: m.addr, TLS: delivery.TLSRequire, Auth: &delivery.Credentials{Username: "gw", Password: "wrong"}})
		want := deferred(8, "authentication failed: 535 5.7.8 Authentication credentials invalid", "[127.0.0.1]")
		if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
		checkSpooled(t, m)
	})
	// Credentials kept: each case must end without AUTH sent.
	kept := []struct {
		name   string
		tlsOn  bool
		policy string
		opt    delivery.SMTPOptions
		e2     uint16
		text   string // after "127.0.0.1 [addr]"
	}{
		{"opportunistic", true, delivery.TLSOpportunistic, trusting, 10, " without a verified TLS session: the route's tls is opportunistic"},
		{"encrypt", true, delivery.TLSEncrypt, trusting, 10, " without a verified TLS session: the route's tls is encrypt"},
		{"require, no STARTTLS", false, delivery.TLSRequire, trusting, 5, " does not offer STARTTLS"},
		{"require, an untrusted certificate", true, delivery.TLSRequire, delivery.SMTPOptions{}, 5, ": smtp: TLS handshake: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
	}
	for _, tt := range kept {
		t.Run("credentials kept: "+tt.name, func(t *testing.T) {
			m := startTestMTA(t, testMTAConfig{mod: smarthost(tt.tlsOn, true)})
			tr := newSMTPTransport(t, tt.opt)
			got := deliver(t, tr, delivery.Route{Via: m.addr, TLS: tt.policy, Auth: login})
			where := "127.0.0.1 [" + m.addr + "]"
			text := "not sending credentials to " + where + tt.text
			if tt.e2 == 5 {
				text = "TLS required but not available: " + where + tt.text
			}
			want := deferred(tt.e2, text, "[127.0.0.1]")
			want[0].Local = true // our refusal to go on, not the smarthost's reply
			if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
				t.Errorf("Deliver (-want +got):\n%s", diff)
			}
			if n := m.count(sdk.StageAuth); n != 0 {
				t.Errorf("smarthost saw %d AUTH commands, want none", n)
			}
		})
	}
	t.Run(`tls = "none" sends them in clear text`, func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: smarthost(false, true)})
		tr := newSMTPTransport(t, delivery.SMTPOptions{})
		got := deliver(t, tr, delivery.Route{Via: m.addr, TLS: delivery.TLSNone, Auth: login})
		if len(got) != 1 || got[0].Class != delivery.Delivered {
			t.Fatalf("Deliver = %+v, want delivered", got)
		}
		if msgs := checkSpooled(t, m, []string{"bob@example.test"}); msgs[0].Envelope.AuthUser != "gw" {
			t.Errorf("smarthost got the message as %q, want gw", msgs[0].Envelope.AuthUser)
		}
	})
	t.Run("AUTH not offered", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: func(o *smtp.Options) { o.TLS = serverTLS }})
		tr := newSMTPTransport(t, trusting)
		got := deliver(t, tr, delivery.Route{Via: m.addr, TLS: delivery.TLSRequire, Auth: login})
		want := deferred(4, "127.0.0.1 ["+m.addr+"] does not offer AUTH", "[127.0.0.1]")
		want[0].Local = true // our refusal to go on, not the smarthost's reply
		if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
		checkSpooled(t, m)
	})
	t.Run("pool keeps sessions apart by credentials", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: func(o *smtp.Options) { o.Auth, o.TLS = users, serverTLS }})
		tr := newSMTPTransport(t, trusting)
		for _, auth := range []*delivery.Credentials{login, nil, login} {
			if got := deliver(t, tr, delivery.Route{Via: m.addr, TLS: delivery.TLSRequire, Auth: auth}); len(got) != 1 || got[0].Class != delivery.Delivered {
				t.Fatalf("Deliver (auth %v) = %+v, want delivered", auth != nil, got)
			}
		}
		if n := m.count(sdk.StageConnect); n != 2 {
			t.Errorf("smarthost saw %d connections, want 2 (one per login)", n)
		}
		if n := m.count(sdk.StageAuth); n != 1 {
			t.Errorf("smarthost saw %d AUTH commands, want 1", n)
		}
	})
}
