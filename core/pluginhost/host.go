package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/sdk"
)

// KV is the persistent key-value store behind sdk.Host's KV calls;
// *queue.Spool implements it.
type KV interface {
	KVGet(key string, now time.Time) (value string, ok bool, err error)
	KVSet(ctx context.Context, key, value string, ttl time.Duration) error
	KVIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
}

// Limits on what a plugin stores.
const (
	maxKeyLen   = 512
	maxValueLen = 64 << 10
)

// Host offers the gateway's services to plugins: DNS through the
// gateway's resolver, the spool's key-value store, and logging. Start
// gives each plugin its own view (Options.Host), in which keys are stored
// as "plugin.<name>/<key>" so that plugins (and Lua scripts, whose keys
// are "<script>/<key>") do not see each other's.
type Host struct {
	resolver *resolver.Resolver
	kv       KV
	log      *slog.Logger
	ns       string // "plugin.<name>/"; "" before forPlugin
}

var _ sdk.Host = (*Host)(nil)

// NewHost returns the host services over r and kv. Either may be nil: the
// calls that need it then fail. log receives the plugins' Log calls.
func NewHost(r *resolver.Resolver, kv KV, log *slog.Logger) sdk.Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Host{resolver: r, kv: kv, log: log}
}

// forPlugin returns h as plugin name sees it.
func (h *Host) forPlugin(name string) *Host {
	c := *h
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("hook", "plugin."+name)
	c.ns = "plugin." + name + "/"
	return &c
}

var (
	errNoResolver = errors.New("pluginhost: host: no resolver")
	errNoKV       = errors.New("pluginhost: host: no key-value store")
	errNoPlugin   = errors.New("pluginhost: host: not given to a plugin")
)

// LookupMX implements sdk.Host: MX records by preference (a null MX is
// host ".").
func (h *Host) LookupMX(ctx context.Context, domain string) ([]sdk.MX, error) {
	if h.resolver == nil {
		return nil, errNoResolver
	}
	mxs, err := h.resolver.MX(ctx, domain)
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
func (h *Host) LookupIP(ctx context.Context, host string) ([]string, error) {
	if h.resolver == nil {
		return nil, errNoResolver
	}
	ips, err := h.resolver.LookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out, nil
}

// LookupTXT implements sdk.Host.
func (h *Host) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if h.resolver == nil {
		return nil, errNoResolver
	}
	return h.resolver.TXT(ctx, name)
}

// LookupPTR implements sdk.Host.
func (h *Host) LookupPTR(ctx context.Context, ip string) ([]string, error) {
	if h.resolver == nil {
		return nil, errNoResolver
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, &resolver.Error{Name: ip, Type: "PTR", Err: resolver.ErrInvalidName}
	}
	return h.resolver.PTR(ctx, addr)
}

// key checks a plugin's key and namespaces it.
func (h *Host) key(key string) (string, error) {
	switch {
	case h.kv == nil:
		return "", errNoKV
	case h.ns == "":
		return "", errNoPlugin
	case key == "":
		return "", errors.New("pluginhost: host: empty key")
	case len(key) > maxKeyLen:
		return "", fmt.Errorf("pluginhost: host: key longer than %d bytes", maxKeyLen)
	}
	return h.ns + key, nil
}

// KVGet implements sdk.Host.
func (h *Host) KVGet(ctx context.Context, key string) (string, bool, error) {
	k, err := h.key(key)
	if err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	return h.kv.KVGet(k, time.Now())
}

// KVSet implements sdk.Host; ttl <= 0 keeps the value until replaced.
func (h *Host) KVSet(ctx context.Context, key, value string, ttl time.Duration) error {
	k, err := h.key(key)
	if err != nil {
		return err
	}
	if len(value) > maxValueLen {
		return fmt.Errorf("pluginhost: host: value longer than %d bytes", maxValueLen)
	}
	return h.kv.KVSet(ctx, k, value, ttl)
}

// KVIncr implements sdk.Host: it adds delta to the number stored at key
// (0 when absent or expired) and returns the result; ttl applies when
// the key is created.
func (h *Host) KVIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	k, err := h.key(key)
	if err != nil {
		return 0, err
	}
	return h.kv.KVIncr(ctx, k, delta, ttl)
}

// Log implements sdk.Host: level "debug", "info", "warn" or "error"
// (anything else is info).
func (h *Host) Log(ctx context.Context, level, msg string, fields map[string]string) {
	log := h.log
	if log == nil {
		return
	}
	var lvl slog.Level
	switch strings.ToLower(level) {
	case "debug", "trace":
		lvl = slog.LevelDebug
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	if !log.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]slog.Attr, 0, len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		attrs = append(attrs, slog.String(k, fields[k]))
	}
	log.LogAttrs(ctx, lvl, oneLine(msg), attrs...)
}
