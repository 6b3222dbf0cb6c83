package hook_test

import (
	"net/netip"
	"testing"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

func addr(local, domain string) envelope.Address {
	return envelope.Address{Local: local, Domain: domain}
}

func rcpts(as ...envelope.Address) []envelope.Recipient {
	out := make([]envelope.Recipient, len(as))
	for i, a := range as {
		out[i] = envelope.Recipient{Address: a}
	}
	return out
}

func TestNewMatch(t *testing.T) {
	yes, no := true, false
	session := func(ip, user string) *hook.Session {
		return &hook.Session{ClientIP: netip.MustParseAddr(ip), AuthUser: user}
	}
	env := &envelope.Envelope{
		Sender:     addr("a", "Mail.Example.ORG."),
		Recipients: rcpts(addr("x", "other.test"), addr("y", "Example.Test")),
	}
	rcpt := &envelope.Recipient{Address: addr("z", "sub.example.test")}
	tests := []struct {
		name  string
		match config.Match
		req   hook.Request
		want  bool
	}{
		{"zero match, any request", config.Match{}, hook.Request{Stage: sdk.StageConnect}, true},

		{"stage listed", config.Match{Stages: []sdk.Stage{sdk.StageRcpt, sdk.StageData}}, hook.Request{Stage: sdk.StageData}, true},
		{"stage not listed", config.Match{Stages: []sdk.Stage{sdk.StageRcpt}}, hook.Request{Stage: sdk.StageMail}, false},

		{"client in prefix", config.Match{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			hook.Request{Session: session("10.1.2.3", "")}, true},
		{"client outside", config.Match{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			hook.Request{Session: session("192.0.2.1", "")}, false},
		{"client 4-in-6", config.Match{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			hook.Request{Session: session("::ffff:10.0.0.1", "")}, true},
		{"client IPv6", config.Match{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}},
			hook.Request{Session: session("2001:db8::5", "")}, true},
		{"client without session: envelope", config.Match{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			hook.Request{Stage: sdk.StagePredelivery, Envelope: &envelope.Envelope{ClientIP: "10.9.9.9"}}, true},
		{"client unknown", config.Match{Clients: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
			hook.Request{}, false},

		{"sender exact, case and dot folded", config.Match{SenderDomains: []string{"mail.example.org"}},
			hook.Request{Envelope: env}, true},
		{"sender wildcard subdomain", config.Match{SenderDomains: []string{"*.example.org"}},
			hook.Request{Envelope: env}, true},
		{"sender wildcard deeper", config.Match{SenderDomains: []string{"*.example.org"}},
			hook.Request{Envelope: &envelope.Envelope{Sender: addr("a", "a.b.example.org")}}, true},
		{"sender wildcard not the apex", config.Match{SenderDomains: []string{"*.example.org"}},
			hook.Request{Envelope: &envelope.Envelope{Sender: addr("a", "example.org")}}, false},
		{"sender wildcard not a suffix of a label", config.Match{SenderDomains: []string{"*.example.org"}},
			hook.Request{Envelope: &envelope.Envelope{Sender: addr("a", "badexample.org")}}, false},
		{"sender exact is not a wildcard", config.Match{SenderDomains: []string{"example.org"}},
			hook.Request{Envelope: env}, false},
		{"sender null", config.Match{SenderDomains: []string{"example.org", "*.example.org"}},
			hook.Request{Envelope: &envelope.Envelope{}}, false},
		{"sender before MAIL", config.Match{SenderDomains: []string{"example.org"}},
			hook.Request{Stage: sdk.StageHelo}, false},

		{"recipient at rcpt: the one being decided", config.Match{RecipientDomains: []string{"*.example.test"}},
			hook.Request{Stage: sdk.StageRcpt, Envelope: env, Rcpt: rcpt}, true},
		{"recipient at rcpt: earlier ones do not count", config.Match{RecipientDomains: []string{"example.test"}},
			hook.Request{Stage: sdk.StageRcpt, Envelope: env, Rcpt: rcpt}, false},
		{"recipient at data: any", config.Match{RecipientDomains: []string{"example.test"}},
			hook.Request{Stage: sdk.StageData, Envelope: env}, true},
		{"recipient at data: none", config.Match{RecipientDomains: []string{"example.net"}},
			hook.Request{Stage: sdk.StageData, Envelope: env}, false},
		{"recipient at mail: no recipients yet", config.Match{RecipientDomains: []string{"example.test"}},
			hook.Request{Stage: sdk.StageMail, Envelope: &envelope.Envelope{Sender: addr("a", "b.test")}}, false},

		{"command verb listed", config.Match{Commands: []string{"RCPT"}}, hook.Request{Stage: sdk.StageCommand, Command: "RCPT"}, true},
		{"command verb not listed", config.Match{Commands: []string{"RCPT"}}, hook.Request{Stage: sdk.StageCommand, Command: "NOOP"}, false},
		{"command verbs leave other stages", config.Match{Commands: []string{"RCPT"}}, hook.Request{Stage: sdk.StageRcpt}, true},
		{"authenticated wanted, is", config.Match{Authenticated: &yes}, hook.Request{Session: session("127.0.0.1", "alice")}, true},
		{"authenticated wanted, is not", config.Match{Authenticated: &yes}, hook.Request{Session: session("127.0.0.1", "")}, false},
		{"unauthenticated wanted, is not", config.Match{Authenticated: &no}, hook.Request{Session: session("127.0.0.1", "")}, true},
		{"unauthenticated wanted, is", config.Match{Authenticated: &no}, hook.Request{Session: session("127.0.0.1", "alice")}, false},
		{"authenticated from envelope", config.Match{Authenticated: &yes},
			hook.Request{Stage: sdk.StagePredelivery, Envelope: &envelope.Envelope{AuthUser: "alice"}}, true},

		{"all conditions hold", config.Match{
			Stages:           []sdk.Stage{sdk.StageRcpt},
			Clients:          []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			SenderDomains:    []string{"*.example.org"},
			RecipientDomains: []string{"sub.example.test"},
			Authenticated:    &no,
		}, hook.Request{Stage: sdk.StageRcpt, Session: session("10.0.0.1", ""), Envelope: env, Rcpt: rcpt}, true},
		{"one condition fails", config.Match{
			Stages:           []sdk.Stage{sdk.StageRcpt},
			Clients:          []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			SenderDomains:    []string{"*.example.org"},
			RecipientDomains: []string{"sub.example.test"},
			Authenticated:    &yes,
		}, hook.Request{Stage: sdk.StageRcpt, Session: session("10.0.0.1", ""), Envelope: env, Rcpt: rcpt}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := hook.NewMatch(tt.match)
			if err != nil {
				t.Fatalf("NewMatch(%+v): %v", tt.match, err)
			}
			if got := m(&tt.req); got != tt.want {
				t.Errorf("match(%+v): got %v, want %v", tt.req, got, tt.want)
			}
		})
	}
}

func TestNewMatchErrors(t *testing.T) {
	tests := []struct {
		name  string
		match config.Match
	}{
		{"unknown stage", config.Match{Stages: []sdk.Stage{"queue"}}},
		{"empty sender domain", config.Match{SenderDomains: []string{""}}},
		{"wildcard without a domain", config.Match{RecipientDomains: []string{"*."}}},
		{"wildcard inside", config.Match{RecipientDomains: []string{"a.*.example"}}},
		{"bare wildcard", config.Match{SenderDomains: []string{"*"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := hook.NewMatch(tt.match); err == nil {
				t.Errorf("NewMatch(%+v): got no error", tt.match)
			}
		})
	}
}
