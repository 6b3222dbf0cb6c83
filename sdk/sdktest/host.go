package sdktest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// Host is a fake of the gateway's services for plugin tests: DNS answers
// from maps (a name not in a map is NXDOMAIN: no records, no error, like
// the gateway's resolver), an in-memory key-value store, and recorded log
// lines. Fill the maps before the plugin is configured; it is safe for
// concurrent use afterwards. The zero value is not usable: use NewHost.
type Host struct {
	MX  map[string][]sdk.MX // by domain
	IP  map[string][]string // by host name
	TXT map[string][]string // by name
	PTR map[string][]string // by IP
	Err map[string]error    // by name: every lookup of it fails with this error
	Now func() time.Time    // the clock for KV expiry; nil = time.Now

	mu   sync.Mutex
	kv   map[string]kvEntry
	logs []LogEntry
}

type kvEntry struct {
	value   string
	expires time.Time // zero = never
}

// LogEntry is one Host.Log call.
type LogEntry struct {
	Level   string
	Message string
	Fields  map[string]string
}

// NewHost returns an empty Host.
func NewHost() *Host {
	return &Host{
		MX:  map[string][]sdk.MX{},
		IP:  map[string][]string{},
		TXT: map[string][]string{},
		PTR: map[string][]string{},
		Err: map[string]error{},
		kv:  map[string]kvEntry{},
	}
}

var _ sdk.Host = (*Host)(nil)

func (h *Host) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func lookup[T any](ctx context.Context, h *Host, m map[string][]T, name string) ([]T, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.Err[name]; err != nil {
		return nil, err
	}
	return slices.Clone(m[name]), nil
}

func (h *Host) LookupMX(ctx context.Context, domain string) ([]sdk.MX, error) {
	return lookup(ctx, h, h.MX, domain)
}

func (h *Host) LookupIP(ctx context.Context, host string) ([]string, error) {
	return lookup(ctx, h, h.IP, host)
}

func (h *Host) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookup(ctx, h, h.TXT, name)
}

func (h *Host) LookupPTR(ctx context.Context, ip string) ([]string, error) {
	return lookup(ctx, h, h.PTR, ip)
}

// get returns the live entry for key; h.mu is held.
func (h *Host) get(key string) (kvEntry, bool) {
	e, ok := h.kv[key]
	if ok && !e.expires.IsZero() && !h.now().Before(e.expires) {
		delete(h.kv, key)
		return kvEntry{}, false
	}
	return e, ok
}

func (h *Host) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return h.now().Add(ttl)
}

func (h *Host) KVGet(ctx context.Context, key string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.get(key)
	return e.value, ok, nil
}

func (h *Host) KVSet(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kv[key] = kvEntry{value: value, expires: h.expiry(ttl)}
	return nil
}

// KVIncr adds delta to the integer at key (0 if unset). The ttl is set when
// the key is created and kept by later increments.
func (h *Host) KVIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.get(key)
	var n int64
	if ok {
		var err error
		if n, err = strconv.ParseInt(e.value, 10, 64); err != nil {
			return 0, fmt.Errorf("sdktest: kv %q holds %q, not an integer", key, e.value)
		}
	} else {
		e.expires = h.expiry(ttl)
	}
	n += delta
	e.value = strconv.FormatInt(n, 10)
	h.kv[key] = e
	return n, nil
}

func (h *Host) Log(_ context.Context, level, msg string, fields map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, LogEntry{Level: level, Message: msg, Fields: maps.Clone(fields)})
}

// Logs returns the Log calls so far, in order.
func (h *Host) Logs() []LogEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.logs)
}

// KV returns a copy of the live key-value pairs.
func (h *Host) KV() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for k := range h.kv {
		if e, ok := h.get(k); ok {
			out[k] = e.value
		}
	}
	return out
}
