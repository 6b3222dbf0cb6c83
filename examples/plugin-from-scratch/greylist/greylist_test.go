package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/sdktest"
)

func rcpt(ip, sender, to string) *sdk.Request {
	split := func(a string) sdk.Address {
		for i := len(a) - 1; i >= 0; i-- {
			if a[i] == '@' {
				return sdk.Address{Local: a[:i], Domain: a[i+1:]}
			}
		}
		return sdk.Address{}
	}
	return &sdk.Request{
		Stage:   sdk.StageRcpt,
		Session: &sdk.Session{ID: "s1", ClientIP: ip},
		Txn:     &sdk.Txn{Sender: split(sender)},
		Rcpt:    &sdk.Recipient{Address: split(to)},
	}
}

// TestRcpt walks one triple through its life on a fake clock: deferred,
// deferred again too early, let through, then forgotten after ttl.
func TestRcpt(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	host := sdktest.NewHost()
	host.Now = func() time.Time { return clock }
	g := New()
	g.now = func() time.Time { return clock }
	if err := g.Configure(t.Context(), map[string]any{"delay": 300.0, "ttl": "1h"}, host); err != nil {
		t.Fatal(err)
	}
	req := rcpt("192.0.2.7", "carol@sender.test", "Alice@Example.test")
	greylisted := func(secs string, reason string) sdk.Decision {
		return sdk.DeferDecision(451, sdk.EnhancedCode{4, 7, 1}, "Greylisted, try again in "+secs+" seconds").WithReason(reason)
	}
	key := "triple/192.0.2.7/carol@sender.test/alice@example.test"
	steps := []struct {
		name    string
		advance time.Duration
		req     *sdk.Request
		want    sdk.Decision
	}{
		{"first attempt", 0, req, greylisted("300", "greylist: new triple "+key)},
		{"retry too early", 100 * time.Second, req, greylisted("200", "greylist: "+key+" retried after 1m40s")},
		{"other recipient", 0, rcpt("192.0.2.7", "carol@sender.test", "bob@example.test"),
			greylisted("300", "greylist: new triple triple/192.0.2.7/carol@sender.test/bob@example.test")},
		{"other client", 0, rcpt("192.0.2.8", "carol@sender.test", "alice@example.test"),
			greylisted("300", "greylist: new triple triple/192.0.2.8/carol@sender.test/alice@example.test")},
		{"null sender", 0, rcpt("192.0.2.7", "", "alice@example.test"),
			greylisted("300", "greylist: new triple triple/192.0.2.7/<>/alice@example.test")},
		{"retry after delay", 200 * time.Second, req, sdk.ContinueDecision()},
		{"again, within ttl", 50 * time.Minute, req, sdk.ContinueDecision()},
		{"forgotten after ttl", 61 * time.Minute, req, greylisted("300", "greylist: new triple "+key)},
	}
	for _, s := range steps {
		clock = clock.Add(s.advance)
		got, eff, err := g.Rcpt(t.Context(), s.req)
		if err != nil {
			t.Fatalf("%s: Rcpt: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: decision (-want +got):\n%s", s.name, diff)
		}
		if !eff.IsZero() {
			t.Errorf("%s: effects %+v, want none", s.name, eff)
		}
		if err := got.Validate(sdk.StageRcpt); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
	}
}

// TestHostFailure: without a working key-value store the plugin cannot
// decide, so it returns an error and the gateway applies on_error.
func TestHostFailure(t *testing.T) {
	g := New()
	if _, _, err := g.Rcpt(t.Context(), rcpt("192.0.2.7", "a@b.test", "c@d.test")); !errors.Is(err, errNoHost) {
		t.Errorf("Rcpt before Configure: %v, want errNoHost", err)
	}
	if err := g.Configure(t.Context(), map[string]any{}, failingHost{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Rcpt(t.Context(), rcpt("192.0.2.7", "a@b.test", "c@d.test")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Rcpt with a failing store: %v, want an error wrapping sdk.ErrUnavailable", err)
	}
}

// failingHost is a host whose durable store is down.
type failingHost struct{ sdk.Host }

func (failingHost) Durable() sdk.KV { return failingKV{} }

type failingKV struct{ sdk.KV }

func (failingKV) Get(ctx context.Context, key string) (string, bool, error) {
	return "", false, sdk.ErrUnavailable
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]any
		want []string // the fields in error, in order
	}{
		{"delay zero", map[string]any{"delay": 0.0}, []string{"delay"}},
		{"delay fractional", map[string]any{"delay": 1.5}, []string{"delay"}},
		{"delay too long", map[string]any{"delay": 100000.0}, []string{"delay"}},
		{"delay not a number", map[string]any{"delay": "60"}, []string{"delay"}},
		{"ttl not a duration", map[string]any{"ttl": "one day"}, []string{"ttl"}},
		{"ttl not longer than delay", map[string]any{"delay": 120.0, "ttl": "2m"}, []string{"ttl"}},
		{"both wrong", map[string]any{"delay": -1.0, "ttl": "x"}, []string{"delay", "ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New().Configure(t.Context(), tt.cfg, sdktest.NewHost())
			var errs sdk.ConfigErrors
			if !errors.As(err, &errs) {
				t.Fatalf("Configure = %v, want sdk.ConfigErrors", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fields in error (-want +got):\n%s\n%v", diff, err)
			}
		})
	}
}

// TestConformance runs the sdk's suite every plugin should pass: info,
// schema, config errors, every stage, cancellation, over real gRPC.
func TestConformance(t *testing.T) {
	sdktest.Conformance(t, New(), map[string]any{"delay": 60.0, "ttl": "24h"})
}

// TestThroughHost calls the plugin as the gateway does, across the plugin
// boundary, with the fake host's key-value store.
func TestThroughHost(t *testing.T) {
	r := sdktest.Start(t, New())
	host := sdktest.NewHost()
	if err := r.Configure(t.Context(), map[string]any{"delay": 1.0}, host); err != nil {
		t.Fatal(err)
	}
	req := rcpt("192.0.2.7", "carol@sender.test", "alice@example.test")
	d, _, err := r.Handle(t.Context(), req)
	if err != nil || d.Verdict != sdk.Defer || d.Message != "Greylisted, try again in 1 seconds" {
		t.Fatalf("first attempt: %+v, %v; want the 451", d, err)
	}
	if _, ok := host.DurableKV()["triple/192.0.2.7/carol@sender.test/alice@example.test"]; !ok {
		t.Errorf("the host's KV has %v; want the triple", host.DurableKV())
	}
	time.Sleep(1100 * time.Millisecond)
	if d, _, err := r.Handle(t.Context(), req); err != nil || d.Verdict != sdk.Continue {
		t.Errorf("retry after the delay: %+v, %v; want continue", d, err)
	}
}
