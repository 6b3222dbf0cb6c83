package sdktest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// Host is a fake of the gateway's services for plugin tests: DNS answers
// from maps (a name not in a map is NXDOMAIN: no records, no error, like
// the gateway's resolver), two in-memory key-value stores (Durable and
// Ephemeral, each with the gateway's limits: keys of 1 to sdk.KVMaxKey
// bytes, values up to sdk.KVMaxValue, ttls from 0 to sdk.KVMaxTTL), and
// recorded log lines (a level other than debug, info, warn or error is an
// error, as in the gateway). Fill the maps before the plugin is
// configured; it is safe for concurrent use afterwards. The zero value is
// not usable: use NewHost.
type Host struct {
	MX  map[string][]sdk.MX // by domain
	IP  map[string][]string // by host name
	TXT map[string][]string // by name
	PTR map[string][]string // by IP
	Err map[string]error    // by name: every lookup of it fails with this error
	Now func() time.Time    // the clock for KV expiry; nil = time.Now

	mu        sync.Mutex
	durable   map[string]kvEntry
	ephemeral map[string]kvEntry
	logs      []LogEntry
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
		MX:        map[string][]sdk.MX{},
		IP:        map[string][]string{},
		TXT:       map[string][]string{},
		PTR:       map[string][]string{},
		Err:       map[string]error{},
		durable:   map[string]kvEntry{},
		ephemeral: map[string]kvEntry{},
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

// Durable implements sdk.Host.
func (h *Host) Durable() sdk.KV { return store{h, &h.durable} }

// Ephemeral implements sdk.Host.
func (h *Host) Ephemeral() sdk.KV { return store{h, &h.ephemeral} }

// store is one of the fake's key-value stores.
type store struct {
	h *Host
	m *map[string]kvEntry
}

// get returns the live entry for key; h.mu is held.
func (s store) get(key string) (kvEntry, bool) {
	e, ok := (*s.m)[key]
	if ok && !e.expires.IsZero() && !s.h.now().Before(e.expires) {
		delete(*s.m, key)
		return kvEntry{}, false
	}
	return e, ok
}

func (s store) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return s.h.now().Add(ttl)
}

// check applies the gateway's limits.
func check(ctx context.Context, key string, ttl time.Duration) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case key == "":
		return errors.New("sdktest: empty key")
	case len(key) > sdk.KVMaxKey:
		return fmt.Errorf("sdktest: key of %d bytes exceeds %d", len(key), sdk.KVMaxKey)
	case ttl < 0 || ttl > sdk.KVMaxTTL:
		return fmt.Errorf("sdktest: ttl %v is not from 0 to 100 years", ttl)
	}
	return nil
}

func (s store) Get(ctx context.Context, key string) (string, bool, error) {
	if err := check(ctx, key, 0); err != nil {
		return "", false, err
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	e, ok := s.get(key)
	return e.value, ok, nil
}

func (s store) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := check(ctx, key, ttl); err != nil {
		return err
	}
	if len(value) > sdk.KVMaxValue {
		return fmt.Errorf("sdktest: value of %d bytes exceeds %d", len(value), sdk.KVMaxValue)
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	(*s.m)[key] = kvEntry{value: value, expires: s.expiry(ttl)}
	return nil
}

// Incr adds delta to the integer at key (0 if unset). The ttl is set when
// the key is created and kept by later increments.
func (s store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := check(ctx, key, ttl); err != nil {
		return 0, err
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	e, ok := s.get(key)
	var n int64
	if ok {
		var err error
		if n, err = strconv.ParseInt(e.value, 10, 64); err != nil {
			return 0, fmt.Errorf("sdktest: kv %q holds %q, not an integer", key, e.value)
		}
	} else {
		e.expires = s.expiry(ttl)
	}
	if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
		return 0, fmt.Errorf("sdktest: kv %q: %d%+d overflows", key, n, delta)
	}
	n += delta
	e.value = strconv.FormatInt(n, 10)
	(*s.m)[key] = e
	return n, nil
}

func (s store) Delete(ctx context.Context, key string) error {
	if err := check(ctx, key, 0); err != nil {
		return err
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	delete(*s.m, key)
	return nil
}

// Log records the line; a level other than debug, info, warn or error is
// an error, and is not recorded.
func (h *Host) Log(_ context.Context, level, msg string, fields map[string]string) error {
	switch level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("sdktest: log level %q is not debug, info, warn or error", level)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, LogEntry{Level: level, Message: msg, Fields: maps.Clone(fields)})
	return nil
}

// Logs returns the Log calls so far, in order.
func (h *Host) Logs() []LogEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.logs)
}

// DurableKV returns a copy of the live pairs of the durable store.
func (h *Host) DurableKV() map[string]string { return h.snapshot(store{h, &h.durable}) }

// EphemeralKV returns a copy of the live pairs of the ephemeral store.
func (h *Host) EphemeralKV() map[string]string { return h.snapshot(store{h, &h.ephemeral}) }

func (h *Host) snapshot(s store) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for k := range *s.m {
		if e, ok := s.get(k); ok {
			out[k] = e.value
		}
	}
	return out
}
