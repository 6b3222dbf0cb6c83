package delivery

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/sdk"
)

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		schedule []time.Duration
		attempts int
		want     time.Duration
	}{
		{nil, 0, time.Minute},
		{nil, 1, 5 * time.Minute},
		{nil, 4, time.Hour},
		{nil, 40, time.Hour},
		{nil, -1, time.Minute},
		{[]time.Duration{time.Second, 2 * time.Second}, 1, 2 * time.Second},
		{[]time.Duration{time.Second, 2 * time.Second}, 9, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := RetryDelay(tt.schedule, tt.attempts); got != tt.want {
			t.Errorf("RetryDelay(%v, %d) = %v; want %v", tt.schedule, tt.attempts, got, tt.want)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	got := withDefaults(config.Delivery{})
	if got.MaxConnections != 100 || got.MaxConnectionsPerDomain != 20 || got.MaxLifetime != 5*24*time.Hour ||
		got.DelayWarning != 4*time.Hour || len(got.Retry) != 5 || got.TLS != "opportunistic" {
		t.Errorf("defaults of a zero Delivery: %+v", got)
	}
	// A loaded config (Retry set) keeps DelayWarning 0: never.
	if got := withDefaults(config.Delivery{Retry: []time.Duration{time.Minute}}); got.DelayWarning != 0 {
		t.Errorf("DelayWarning of a loaded config with 0 = %v; want 0 (never)", got.DelayWarning)
	}
	if got := withDefaults(config.Delivery{DelayWarning: -1}); got.DelayWarning != -1 {
		t.Errorf("negative DelayWarning became %v; want it kept (never)", got.DelayWarning)
	}
}

func TestSelectRoute(t *testing.T) {
	cfg := config.Delivery{
		TLS: "require",
		Routes: []config.Route{
			{Domain: "*", Via: "smart:25", Auth: &config.RouteAuth{Username: "gw", Password: "pw"}},
			{Domain: "example.net", Transport: "lmtp", Path: "/sock", TLS: "none"},
			{Domain: "example.net", Transport: "maildir"}, // shadowed
			{Domain: "kiosk.test", Transport: "maildir"},
		},
	}
	tests := []struct {
		cfg    config.Delivery
		domain string
		want   Route
	}{
		{cfg, "example.net", Route{Transport: "lmtp", Path: "/sock", TLS: "none"}},
		{cfg, "other.test", Route{Transport: "smtp", Via: "smart:25", TLS: "require", Auth: &Credentials{"gw", "pw"}}},
		{cfg, "Example.NET.", Route{Transport: "lmtp", Path: "/sock", TLS: "none"}},
		{cfg, "kiosk.test", Route{Transport: "maildir", TLS: "require"}},
		{cfg, "\u212Aiosk.test", Route{Transport: "smtp", Via: "smart:25", TLS: "require", Auth: &Credentials{"gw", "pw"}}}, // a Kelvin sign is not a "k"
		{withDefaults(config.Delivery{}), "other.test", Route{Transport: "smtp", TLS: "opportunistic"}},
	}
	for _, tt := range tests {
		if got := selectRoute(tt.cfg, tt.domain); !cmp.Equal(got, tt.want) {
			t.Errorf("selectRoute(%s) = %+v; want %+v", tt.domain, got, tt.want)
		}
	}
}

func TestFormatReply(t *testing.T) {
	tests := []struct {
		code int
		enh  sdk.EnhancedCode
		text string
		want string
	}{
		{451, sdk.EnhancedCode{4, 7, 1}, "try later", "451 4.7.1 try later"},
		{451, sdk.EnhancedCode{4, 7, 1}, "451 4.7.1 try later", "451 4.7.1 try later"},
		{550, sdk.EnhancedCode{5, 1, 1}, "5.1.1 no such user", "550 5.1.1 no such user"},
		{421, sdk.EnhancedCode{}, "busy", "421 busy"},
		{0, sdk.EnhancedCode{}, "dial tcp: connection refused", "dial tcp: connection refused"},
		{0, sdk.EnhancedCode{}, "two\r\nlines", "two lines"},
	}
	for _, tt := range tests {
		if got := formatReply(tt.code, tt.enh, tt.text); got != tt.want {
			t.Errorf("formatReply(%d, %s, %q) = %q; want %q", tt.code, tt.enh, tt.text, got, tt.want)
		}
	}
}

// TestReportAction: a DSN is counted under its gravest action, so a
// success report about relayed mail is not counted as delivered.
func TestReportAction(t *testing.T) {
	reports := func(actions ...dsn.Action) []dsn.RecipientReport {
		var rs []dsn.RecipientReport
		for _, a := range actions {
			rs = append(rs, dsn.RecipientReport{Action: a})
		}
		return rs
	}
	tests := []struct {
		in   []dsn.RecipientReport
		want dsn.Action
	}{
		{reports(dsn.ActionDelivered, dsn.ActionExpanded), dsn.ActionDelivered},
		{reports(dsn.ActionDelivered, dsn.ActionRelayed), dsn.ActionRelayed},
		{reports(dsn.ActionRelayed, dsn.ActionDelayed), dsn.ActionDelayed},
		{reports(dsn.ActionDelayed, dsn.ActionFailed, dsn.ActionRelayed), dsn.ActionFailed},
	}
	for _, tt := range tests {
		if got := reportAction(tt.in); got != tt.want {
			t.Errorf("reportAction(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
