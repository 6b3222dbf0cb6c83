package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorTranslation(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want error // sentinel the host side must match; nil = none
	}{
		{"not handled", fmt.Errorf("sdk: %q: %w", "rcpt", ErrNotHandled), ErrNotHandled},
		{"unavailable", fmt.Errorf("redis down: %w", ErrUnavailable), ErrUnavailable},
		{"protocol", ErrProtocol, ErrProtocol},
		{"internal", fmt.Errorf("sdk: panic in rcpt hook: boom: %w", ErrInternal), ErrInternal},
		{"deadline", fmt.Errorf("dnsbl: %w", context.DeadlineExceeded), context.DeadlineExceeded},
		{"canceled under a live ctx", context.Canceled, ErrUnavailable},
		{"plain", errors.New("dnsbl: lookup failed"), nil},
		{"third-party unavailable status", status.Error(codes.Unavailable, "upstream"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorFromStatus(context.Background(), "plugin rcpt", errorToStatus(tt.in))
			if got == nil {
				t.Fatal("got nil error")
			}
			for _, s := range []error{ErrNotHandled, ErrUnavailable, ErrProtocol, ErrInternal, context.DeadlineExceeded, context.Canceled} {
				if is := errors.Is(got, s); is != (s == tt.want) {
					t.Errorf("errors.Is(%q, %v) = %v", got, s, is)
				}
			}
			if !strings.HasPrefix(got.Error(), "sdk: plugin rcpt: ") {
				t.Errorf("message %q: want the sdk: plugin rcpt: prefix", got)
			}
			if tt.want == nil && !strings.Contains(got.Error(), tt.in.Error()) && tt.name == "plain" {
				t.Errorf("message %q lost the plugin's text %q", got, tt.in)
			}
		})
	}
	t.Run("config errors", func(t *testing.T) {
		got := errorFromStatus(context.Background(), "plugin configure", errorToStatus(ConfigErrors{{Field: "a", Message: "bad"}}))
		var errs ConfigErrors
		if !errors.As(got, &errs) {
			t.Errorf("got %v, want ConfigErrors", got)
		}
	})
	t.Run("done ctx wins", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		got := errorFromStatus(ctx, "plugin rcpt", status.Error(codes.Unavailable, "conn closed"))
		if !errors.Is(got, context.Canceled) || errors.Is(got, ErrUnavailable) {
			t.Errorf("got %v, want context.Canceled only", got)
		}
	})
	t.Run("gRPC codes without detail", func(t *testing.T) {
		for code, want := range map[codes.Code]error{
			codes.Unavailable:       ErrUnavailable,
			codes.Unimplemented:     ErrProtocol,
			codes.DeadlineExceeded:  context.DeadlineExceeded,
			codes.ResourceExhausted: ErrInternal,
		} {
			if got := errorFromStatus(context.Background(), "plugin x", status.Error(code, "m")); !errors.Is(got, want) {
				t.Errorf("%v: got %v, want %v", code, got, want)
			}
		}
		if got := errorFromStatus(context.Background(), "plugin x", errors.New("not a status")); !errors.Is(got, ErrUnavailable) {
			t.Errorf("non-status: got %v, want ErrUnavailable", got)
		}
	})
	if errorToStatus(nil) != nil || errorFromStatus(context.Background(), "x", nil) != nil {
		t.Error("nil must stay nil")
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name         string
		host, plugin []int
		want         int
	}{
		{"same", []int{1}, []int{1}, 1},
		{"highest common", []int{1, 2, 3}, []int{2, 1}, 2},
		{"host newer only", []int{2}, []int{1}, 0},
		{"plugin lists none", []int{1}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Negotiate(tt.host, tt.plugin)
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
			if (tt.want == 0) != errors.Is(err, ErrProtocol) {
				t.Errorf("error %v: want ErrProtocol iff no common version", err)
			}
		})
	}
}

func TestStartError(t *testing.T) {
	// The text go-plugin v1.8.0 returns from Client.Client (client.go,
	// checkProtoVersion); TestNegotiationRealProcess checks it end to end.
	mismatch := errors.New("incompatible API version with plugin. Plugin version: 1, Client versions: [2]")
	if err := StartError(mismatch); !errors.Is(err, ErrProtocol) {
		t.Errorf("mismatch: got %v, want ErrProtocol", err)
	}
	if err := StartError(errors.New("plugin exited before we could connect")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("exit: got %v, want ErrUnavailable", err)
	}
	if StartError(nil) != nil {
		t.Error("nil must stay nil")
	}
}
