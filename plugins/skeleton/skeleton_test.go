package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// configured returns a Skeleton configured with m, failing the test if
// Configure does.
func configured(t *testing.T, m map[string]any) *Skeleton {
	t.Helper()
	p := New()
	if err := p.Configure(context.Background(), m, nil); err != nil {
		t.Fatalf("Configure(%v) = %v", m, err)
	}
	return p
}

func rcpt(local, domain string) *sdk.Request {
	return &sdk.Request{
		Stage:   sdk.StageRcpt,
		Session: &sdk.Session{ID: "s1", ClientIP: "192.0.2.1"},
		Txn:     &sdk.Txn{Sender: sdk.Address{Local: "sender", Domain: "example.org"}},
		Rcpt:    &sdk.Recipient{Address: sdk.Address{Local: local, Domain: domain}},
	}
}

func TestRcpt(t *testing.T) {
	cfg := map[string]any{
		"reject":  []string{"blocked@example.test", "Shouty@Example.TEST"},
		"message": "No mail for this address",
	}
	tests := []struct {
		name string
		cfg  map[string]any
		req  *sdk.Request
		want sdk.Decision
	}{
		{"listed", cfg, rcpt("blocked", "example.test"),
			sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "No mail for this address").
				WithReason("skeleton: blocked@example.test is in reject")},
		{"listed, other case", cfg, rcpt("SHOUTY", "example.test"),
			sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "No mail for this address").
				WithReason("skeleton: shouty@example.test is in reject")},
		{"not listed", cfg, rcpt("alice", "example.test"), sdk.ContinueDecision()},
		{"default message", map[string]any{"reject": []any{"x@example.test"}}, rcpt("x", "example.test"),
			sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, defaultMessage).
				WithReason("skeleton: x@example.test is in reject")},
		{"empty config", map[string]any{}, rcpt("x", "example.test"), sdk.ContinueDecision()},
		{"no recipient", cfg, &sdk.Request{Stage: sdk.StageRcpt}, sdk.ContinueDecision()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := configured(t, tt.cfg)
			got, eff, err := p.Rcpt(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Rcpt: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Rcpt decision (-want +got):\n%s", diff)
			}
			if !eff.IsZero() {
				t.Errorf("Rcpt effects = %+v, want none", eff)
			}
			if err := got.Validate(sdk.StageRcpt); err != nil {
				t.Errorf("decision does not validate: %v", err)
			}
		})
	}
}

// TestUnconfigured: before Configure the plugin refuses nobody.
func TestUnconfigured(t *testing.T) {
	got, _, err := New().Rcpt(context.Background(), rcpt("blocked", "example.test"))
	if err != nil || got != sdk.ContinueDecision() {
		t.Errorf("Rcpt before Configure = %+v, %v; want continue, nil", got, err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]any
		want []string // the fields in error, in order
	}{
		{"unknown setting", map[string]any{"rejects": []string{"a@b"}}, []string{"rejects"}},
		{"reject not a list", map[string]any{"reject": "a@b"}, []string{"reject"}},
		{"reject list of numbers", map[string]any{"reject": []any{1.0}}, []string{"reject"}},
		{"reject not an address", map[string]any{"reject": []string{"a@b", "nobody", "@b", "a@"}},
			[]string{"reject", "reject", "reject"}},
		{"message not a string", map[string]any{"message": 5.0}, []string{"message"}},
		{"message empty", map[string]any{"message": ""}, []string{"message"}},
		{"message with CRLF", map[string]any{"message": "a\r\nb"}, []string{"message"}},
		{"everything wrong", map[string]any{"message": true, "reject": 1.0, "zzz": 1.0},
			[]string{"message", "reject", "zzz"}},
	}
	// Through the plugin boundary, as the host configures: the sdk refuses
	// unknown settings, wrong types and missing required settings (sorted
	// by field) before parseConfig runs; the rest are the plugin's checks.
	r := sdktest.Start(t, New())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Configure(t.Context(), tt.cfg, nil)
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

// TestSchemaGolden keeps testdata/schema.json equal to Info().Schema; the
// README test in plugins/ reads it.
func TestSchemaGolden(t *testing.T) {
	got, err := json.MarshalIndent(New().Info().Schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "schema.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s is stale; go test -update rewrites it (-file +schema):\n%s", path, diff)
	}
}

// TestConformance runs the sdk's suite for every plugin: info, schema,
// config errors, every stage, cancellation, over the real gRPC path.
func TestConformance(t *testing.T) {
	sdktest.Conformance(t, New(), map[string]any{
		"reject":  []string{"blocked@example.test"},
		"message": "No mail for this address",
	})
}

// TestThroughHost calls the plugin the way the gateway does, across the
// plugin boundary.
func TestThroughHost(t *testing.T) {
	ctx := t.Context()
	r := sdktest.Start(t, New())
	if err := r.Configure(ctx, map[string]any{"reject": []string{"blocked@example.test"}}, sdktest.NewHost()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		rcpt string
		want sdk.Decision
	}{
		{"blocked", sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, defaultMessage).
			WithReason("skeleton: blocked@example.test is in reject")},
		{"alice", sdk.ContinueDecision()},
	} {
		got, _, err := r.Handle(ctx, rcpt(tt.rcpt, "example.test"))
		if err != nil {
			t.Fatalf("Handle(rcpt %s): %v", tt.rcpt, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("rcpt %s: decision (-want +got):\n%s", tt.rcpt, diff)
		}
	}
	err := r.Configure(ctx, map[string]any{"reject": []string{"nobody"}}, sdktest.NewHost())
	var errs sdk.ConfigErrors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Field != "reject" {
		t.Errorf("Configure with a bad address = %v, want one sdk.ConfigError for reject", err)
	}
}
