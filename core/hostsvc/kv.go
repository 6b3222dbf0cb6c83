package hostsvc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// Kind is which key-value store a call uses.
type Kind uint8

const (
	// Durable is the spool's store: it survives restarts, and every write
	// is a disk commit before it returns.
	Durable Kind = iota
	// Ephemeral is the in-memory store: lost on restart, bounded, never a
	// disk write.
	Ephemeral

	kinds = 2
)

func (k Kind) String() string {
	if k == Ephemeral {
		return "ephemeral"
	}
	return "durable"
}

// Store is a key-value store behind one Kind; *queue.Spool and *Memory
// implement it. The services check keys, values and ttls before they call
// it. KVIncr reports a value that is not an integer with an error wrapping
// ErrNotInteger or queue.ErrKVNotInteger, and an int64 overflow with one
// wrapping ErrOverflow or queue.ErrKVOverflow.
type Store interface {
	KVGet(key string, now time.Time) (value string, ok bool, err error)
	KVSet(ctx context.Context, key, value string, ttl time.Duration) error
	KVIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	KVDelete(ctx context.Context, key string) error
}

var (
	_ Store = (*queue.Spool)(nil)
	_ Store = (*Memory)(nil)
)

// Errors a caller may branch on (errors.Is).
var (
	ErrNoResolver = errors.New("hostsvc: no resolver")
	ErrNoStore    = errors.New("no key-value store")
	ErrNotInteger = errors.New("not an integer")
	ErrOverflow   = errors.New("integer overflow")
)

// KV is one handler's view of the store of one kind: keys are checked
// (1 to sdk.KVMaxKey bytes), values bounded (sdk.KVMaxValue bytes), ttls
// from 0 (no expiry) to sdk.KVMaxTTL, and every key is stored under the
// handler's prefix.
type KV struct {
	sc   *Scope
	kind Kind
}

// KV returns the handler's view of the store of kind k.
func (sc *Scope) KV(k Kind) KV { return KV{sc: sc, kind: k} }

// Get returns the value of key if it is set and not expired.
func (kv KV) Get(ctx context.Context, key string) (string, bool, error) {
	st, k, err := kv.key(key)
	if err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	v, ok, err := st.KVGet(k, time.Now())
	if err != nil {
		return "", false, kv.storeError(key, err)
	}
	return v, ok, nil
}

// Set stores value under key, expiring ttl from now (0 = never).
func (kv KV) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	st, k, err := kv.key(key)
	if err != nil {
		return err
	}
	if len(value) > sdk.KVMaxValue {
		return fmt.Errorf("hostsvc: value of %d bytes exceeds %d", len(value), sdk.KVMaxValue)
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	return kv.storeError(key, st.KVSet(ctx, k, value, ttl))
}

// Incr adds delta to the integer stored under key and returns the result.
// An absent or expired key counts as 0 and expires ttl from now (0 =
// never); an existing key keeps its expiry. A value that is not a decimal
// integer, or a result past the int64 range, is an error and changes
// nothing.
func (kv KV) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	st, k, err := kv.key(key)
	if err != nil {
		return 0, err
	}
	if err := checkTTL(ttl); err != nil {
		return 0, err
	}
	n, err := st.KVIncr(ctx, k, delta, ttl)
	if err != nil {
		return 0, kv.storeError(key, err)
	}
	return n, nil
}

// Delete removes key; an absent key is not an error.
func (kv KV) Delete(ctx context.Context, key string) error {
	st, k, err := kv.key(key)
	if err != nil {
		return err
	}
	return kv.storeError(key, st.KVDelete(ctx, k))
}

// key checks a handler's key and returns the store and the stored key.
func (kv KV) key(key string) (Store, string, error) {
	st := kv.sc.svc.stores[kv.kind]
	switch {
	case st == nil:
		return nil, "", fmt.Errorf("hostsvc: %s: %w", kv.kind, ErrNoStore)
	case key == "":
		return nil, "", errors.New("hostsvc: empty key")
	case len(key) > sdk.KVMaxKey:
		return nil, "", fmt.Errorf("hostsvc: key of %d bytes exceeds %d", len(key), sdk.KVMaxKey)
	}
	return st, kv.sc.prefix + key, nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < 0 || ttl > sdk.KVMaxTTL {
		return fmt.Errorf("hostsvc: ttl %v is not from 0 to 100 years", ttl)
	}
	return nil
}

// storeError words a store's error the same way for every store: the
// handler's key, not the stored one, and no store-specific text for the
// errors a handler can cause.
func (kv KV) storeError(key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, ErrNotInteger), errors.Is(err, queue.ErrKVNotInteger):
		return fmt.Errorf("hostsvc: %q: %w", key, ErrNotInteger)
	case errors.Is(err, ErrOverflow), errors.Is(err, queue.ErrKVOverflow):
		return fmt.Errorf("hostsvc: %q: %w", key, ErrOverflow)
	}
	return fmt.Errorf("hostsvc: %s store: %w", kv.kind, err)
}
