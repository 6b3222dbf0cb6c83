package pluginhost

import (
	"context"
	"log/slog"

	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/sdk"
)

// host is the sdk.Host a plugin is served (over go-plugin's broker): its
// hostsvc.Scope, converted to sdk types. Limits, error texts and
// semantics are hostsvc's, the same as the Lua scripts get.
type host struct {
	sc *hostsvc.Scope
}

var _ sdk.Host = host{}

// LookupMX implements sdk.Host: MX records by preference (a null MX is
// host ".").
func (h host) LookupMX(ctx context.Context, domain string) ([]sdk.MX, error) {
	mxs, err := h.sc.LookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	out := make([]sdk.MX, len(mxs))
	for i, mx := range mxs {
		out[i] = sdk.MX{Host: mx.Host, Preference: mx.Preference}
	}
	return out, nil
}

// LookupIP implements sdk.Host: A then AAAA addresses.
func (h host) LookupIP(ctx context.Context, name string) ([]string, error) {
	return h.sc.LookupIP(ctx, name)
}

// LookupTXT implements sdk.Host.
func (h host) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return h.sc.LookupTXT(ctx, name)
}

// LookupPTR implements sdk.Host.
func (h host) LookupPTR(ctx context.Context, ip string) ([]string, error) {
	return h.sc.LookupPTR(ctx, ip)
}

// Durable implements sdk.Host: the spool's store.
func (h host) Durable() sdk.KV { return h.sc.KV(hostsvc.Durable) }

// Ephemeral implements sdk.Host: the in-memory store.
func (h host) Ephemeral() sdk.KV { return h.sc.KV(hostsvc.Ephemeral) }

// Log implements sdk.Host.
func (h host) Log(ctx context.Context, level, msg string, fields map[string]string) error {
	attrs := make([]slog.Attr, 0, len(fields))
	for k, v := range fields {
		attrs = append(attrs, slog.String(k, v))
	}
	return h.sc.Log(ctx, level, msg, attrs)
}
