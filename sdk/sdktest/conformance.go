package sdktest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// promptly bounds how long a call with a cancelled ctx may take.
const promptly = 2 * time.Second

// Conformance is the suite every shipped plugin runs in its tests, with a
// config block its schema accepts (nil for none). It starts p in-process
// and checks, each in its own subtest:
//
//   - info: a name, a version, protocol version sdk.ProtocolVersion, stages
//     that match the implemented hook interfaces (and the ones Info
//     declares, if it declares any), transports declared if and only if
//     sdk.Transport is implemented, and a well-formed schema
//     (sdk.Info.ValidateSchema);
//   - configure: cfg is accepted; an unknown field and a value of the
//     wrong type are refused with sdk.ConfigErrors naming the field;
//   - stages: every declared stage handles a minimal request without error
//     and returns a Decision that passes Decision.Validate(stage); every
//     other stage answers sdk.ErrNotHandled;
//   - deliver: each declared transport returns one result per recipient;
//     without transports, Deliver answers sdk.ErrNotHandled;
//   - cancelled: every call returns promptly with context.Canceled when its
//     ctx is already cancelled.
//
// The plugin is configured with cfg and a fresh Host before the stage and
// deliver checks.
func Conformance(t *testing.T, p sdk.Describer, cfg map[string]any) {
	t.Helper()
	r := Start(t, p)
	ctx := t.Context()

	info, err := r.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}

	t.Run("info", func(t *testing.T) {
		if info.Name == "" {
			t.Error("Info: no name")
		}
		if info.Version == "" {
			t.Error("Info: no version")
		}
		if !slices.Contains(info.ProtocolVersions, sdk.ProtocolVersion) {
			t.Errorf("Info: protocol versions %v, want %d among them", info.ProtocolVersions, sdk.ProtocolVersion)
		}
		if want := sdk.StagesOf(p); !slices.Equal(info.Stages, want) {
			t.Errorf("Info: stages %v over the wire, want %v from the hook interfaces", info.Stages, want)
		}
		if declared := p.Info().Stages; len(declared) > 0 && !sameSet(declared, sdk.StagesOf(p)) {
			t.Errorf("Info() declares stages %v, but the hook interfaces implemented are %v", declared, sdk.StagesOf(p))
		}
		_, isTransport := p.(sdk.Transport)
		switch {
		case isTransport && len(info.Transports) == 0:
			t.Error("implements sdk.Transport but Info declares no transports")
		case !isTransport && len(info.Transports) > 0:
			t.Errorf("Info declares transports %v but does not implement sdk.Transport", info.Transports)
		}
		if err := info.ValidateSchema(); err != nil {
			t.Errorf("schema: %v", err)
		}
		if errs := info.ValidateConfig(cfg); errs != nil {
			t.Errorf("the conformance config does not fit the schema: %v", errs)
		}
	})

	t.Run("configure", func(t *testing.T) {
		unknown := "conformance_unknown_setting"
		bad := clone(cfg)
		bad[unknown] = "x"
		expectConfigError(t, r.Configure(ctx, bad, NewHost()), unknown)

		for _, f := range info.Schema {
			bad := clone(cfg)
			bad[f.Name] = wrongValue(f.Type)
			expectConfigError(t, r.Configure(ctx, bad, NewHost()), f.Name)
		}
	})

	// Configured for real from here on.
	if err := r.Configure(ctx, clone(cfg), NewHost()); err != nil {
		t.Fatalf("Configure(%v): %v", cfg, err)
	}

	t.Run("stages", func(t *testing.T) {
		for _, stage := range sdk.Stages {
			d, _, err := r.Handle(ctx, MinimalRequest(stage))
			if !slices.Contains(info.Stages, stage) {
				if !errors.Is(err, sdk.ErrNotHandled) {
					t.Errorf("%s (not declared): got %v, want sdk.ErrNotHandled", stage, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: minimal request: %v", stage, err)
				continue
			}
			if stage.IsNotification() {
				if d != (sdk.Decision{}) {
					t.Errorf("%s: notification returned %+v, want the zero Decision", stage, d)
				}
				continue
			}
			if err := d.Validate(stage); err != nil {
				t.Errorf("%s: %v", stage, err)
			}
		}
	})

	t.Run("deliver", func(t *testing.T) {
		if len(info.Transports) == 0 {
			if _, err := r.Deliver(ctx, MinimalDelivery("none")); !errors.Is(err, sdk.ErrNotHandled) {
				t.Errorf("Deliver without transports: got %v, want sdk.ErrNotHandled", err)
			}
			return
		}
		for _, tr := range info.Transports {
			d := MinimalDelivery(tr)
			res, err := r.Deliver(ctx, d)
			if err != nil {
				t.Errorf("Deliver(%s): %v", tr, err)
				continue
			}
			if len(res) != len(d.Recipients) {
				t.Errorf("Deliver(%s): %d results for %d recipients", tr, len(res), len(d.Recipients))
			}
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		calls := map[string]func() error{
			"Info": func() error { _, err := r.Info(cctx); return err },
			"Configure": func() error {
				return r.Configure(cctx, clone(cfg), NewHost())
			},
			"Deliver": func() error { _, err := r.Deliver(cctx, MinimalDelivery("x")); return err },
		}
		for _, s := range info.Stages {
			calls["Handle "+string(s)] = func() error { _, _, err := r.Handle(cctx, MinimalRequest(s)); return err }
		}
		for _, name := range slices.Sorted(maps.Keys(calls)) {
			start := time.Now()
			err := calls[name]()
			if el := time.Since(start); el > promptly {
				t.Errorf("%s with a cancelled ctx took %v", name, el)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled ctx: got %v, want context.Canceled", name, err)
			}
		}
	})
}

func expectConfigError(t *testing.T, err error, field string) {
	t.Helper()
	var errs sdk.ConfigErrors
	if !errors.As(err, &errs) {
		t.Errorf("Configure with a bad %s: got %v, want sdk.ConfigErrors", field, err)
		return
	}
	for _, e := range errs {
		if e.Field == field {
			return
		}
	}
	t.Errorf("Configure with a bad %s: %v does not name it", field, errs)
}

// wrongValue returns a value that is not of type typ.
func wrongValue(typ string) any {
	if typ == sdk.TypeString {
		return true
	}
	return "not a " + typ
}

// MinimalRequest is the least a host sends at stage: a session (except at
// predelivery and the queue notifications), a transaction from mail on,
// the recipient at rcpt and after, the verb at command, a message at data
// and predelivery.
func MinimalRequest(stage sdk.Stage) *sdk.Request {
	rcpt := sdk.Recipient{Address: sdk.Address{Local: "rcpt", Domain: "example.org"}}
	r := &sdk.Request{
		Stage: stage,
		Session: &sdk.Session{
			ID: "conformance-1", Listener: "smtp", ClientIP: "192.0.2.1", Port: 25,
			HELO: "client.example.net", ESMTP: true,
		},
	}
	txn := &sdk.Txn{
		Sender:     sdk.Address{Local: "sender", Domain: "example.net"},
		Recipients: []sdk.Recipient{rcpt},
		Received:   time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	msg := &sdk.Message{
		Header: []sdk.HeaderField{{Name: "From", Value: "sender@example.net"}, {Name: "Subject", Value: "conformance"}},
		Body:   []byte("hello\r\n"),
		Size:   60,
	}
	switch stage {
	case sdk.StageConnect:
	case sdk.StageHelo:
	case sdk.StageAuth:
		r.Arg = "PLAIN"
	case sdk.StageMail:
		r.Txn = &sdk.Txn{Sender: txn.Sender, Received: txn.Received}
	case sdk.StageRcpt:
		r.Txn = &sdk.Txn{Sender: txn.Sender, Received: txn.Received}
		r.Rcpt = &rcpt
	case sdk.StageCommand:
		r.Txn = txn
		r.Command = "DATA"
	case sdk.StageData:
		r.Txn, r.Message = txn, msg
	case sdk.StagePredelivery, sdk.StageDelivered, sdk.StageDeferred, sdk.StageBounced:
		r.Session = nil
		r.Txn, r.Rcpt, r.Arg = txn, &rcpt, "example.org"
		if stage == sdk.StagePredelivery {
			r.Message = msg
		}
	case sdk.StageDisconnect:
	}
	return r
}

// MinimalDelivery is a two-recipient delivery for transport.
func MinimalDelivery(transport string) *sdk.Delivery {
	rcpts := []sdk.Recipient{
		{Address: sdk.Address{Local: "a", Domain: "example.org"}},
		{Address: sdk.Address{Local: "b", Domain: "example.org"}},
	}
	return &sdk.Delivery{
		ID:         "conformance-1",
		Txn:        sdk.Txn{Sender: sdk.Address{Local: "sender", Domain: "example.net"}, Recipients: rcpts},
		Recipients: rcpts,
		Domain:     "example.org",
		Transport:  transport,
		Content:    []byte("From: sender@example.net\r\nSubject: conformance\r\n\r\nhello\r\n"),
	}
}

func clone(cfg map[string]any) map[string]any {
	out := make(map[string]any, len(cfg)+1)
	for k, v := range cfg {
		out[k] = v
	}
	return out
}

func sameSet[T comparable](a, b []T) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}
