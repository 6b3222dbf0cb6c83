package queue

// The durable key-value store of the host services (core/hostsvc; Lua's
// gw.durable, a plugin's Host.Durable): greylisting triplets and other
// small state that scripts and plugins keep across restarts. It lives in
// the spool's bbolt file, bucket "kv", and its writes go through the commit
// loop like every other write, so that they are durable when they return and
// share fsyncs with the messages being committed.
//
//	kv  key → 8-byte big-endian expiry (Unix ns; 0 = never) + value
//
// An entry whose expiry has passed reads as absent. Expired entries are
// replaced by the next write of the same key and removed in bulk by KVSweep,
// which the owner of the Spool should call now and then (an hourly ticker is
// plenty): the store keeps no index by expiry, so nothing else finds them.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Limits of the key-value store.
const (
	KVMaxKey   = 1024     // bytes in a key
	KVMaxValue = 64 << 10 // bytes in a value
	kvSweepMax = 10000    // entries removed per KVSweep transaction
)

var bucketKV = []byte("kv")

// Errors of KVIncr (wrapped): the key holds a value that is not a decimal
// integer, or the sum is past the int64 range.
var (
	ErrKVNotInteger = errors.New("queue: kv value is not an integer")
	ErrKVOverflow   = errors.New("queue: kv integer overflow")
)

// KVGet returns the value of key if it is set and not expired at now.
func (s *Spool) KVGet(key string, now time.Time) (value string, ok bool, err error) {
	if err := checkKVKey(key); err != nil {
		return "", false, fmt.Errorf("queue: kv get: %w", err)
	}
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV)
		if b == nil {
			return nil
		}
		exp, v, found := DecodeKV(b.Get([]byte(key)))
		if found && !KVExpired(exp, now) {
			value, ok = string(v), true
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("queue: kv get %q: %w", key, err)
	}
	return value, ok, nil
}

// KVKeys returns the keys that begin with prefix and are not expired at
// now, in byte order: a bounded range scan of one bbolt cursor, for owners
// of a key space (core/tlsrpt keeps one key per domain and day). An empty
// prefix is an error: nothing lists the whole store.
func (s *Spool) KVKeys(prefix string, now time.Time) ([]string, error) {
	if err := checkKVKey(prefix); err != nil {
		return nil, fmt.Errorf("queue: kv keys: prefix: %w", err)
	}
	var keys []string
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if exp, _, found := DecodeKV(v); found && !KVExpired(exp, now) {
				keys = append(keys, string(k))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: kv keys %q: %w", prefix, err)
	}
	return keys, nil
}

// KVSet stores value under key. A ttl of 0 keeps it until it is deleted or
// overwritten; a positive ttl makes it expire ttl after now (Options.Now).
// The write is durable when KVSet returns nil.
func (s *Spool) KVSet(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := checkKVKey(key); err != nil {
		return fmt.Errorf("queue: kv set: %w", err)
	}
	if len(value) > KVMaxValue {
		return fmt.Errorf("queue: kv set %q: value of %d bytes exceeds %d", key, len(value), KVMaxValue)
	}
	if ttl < 0 {
		return fmt.Errorf("queue: kv set %q: negative ttl %v", key, ttl)
	}
	return s.submit(ctx, &request{
		name: "kv set " + key,
		apply: func(tx *bolt.Tx) error {
			return kvPut(tx, key, EncodeKV(KVExpiry(s.now(), ttl), value))
		},
	})
}

// KVIncr adds delta to the integer stored under key and returns the new
// value. A key that is absent or expired counts as 0 and gets a fresh expiry
// of ttl (0 = never); an existing key keeps the expiry it has. A value that
// is not a decimal integer gives an error wrapping ErrKVNotInteger, and an
// increment past the int64 range one wrapping ErrKVOverflow; neither
// changes the value.
func (s *Spool) KVIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkKVKey(key); err != nil {
		return 0, fmt.Errorf("queue: kv incr: %w", err)
	}
	if ttl < 0 {
		return 0, fmt.Errorf("queue: kv incr %q: negative ttl %v", key, ttl)
	}
	var n int64
	err := s.submit(ctx, &request{
		name: "kv incr " + key,
		apply: func(tx *bolt.Tx) error {
			now := s.now()
			var cur int64
			exp := KVExpiry(now, ttl)
			if b := tx.Bucket(bucketKV); b != nil {
				if e, v, found := DecodeKV(b.Get([]byte(key))); found && !KVExpired(e, now) {
					var err error
					if cur, err = strconv.ParseInt(string(v), 10, 64); err != nil {
						return fmt.Errorf("queue: kv incr %q: %w", key, ErrKVNotInteger)
					}
					exp = e
				}
			}
			if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
				return fmt.Errorf("queue: kv incr %q: %d%+d: %w", key, cur, delta, ErrKVOverflow)
			}
			n = cur + delta
			return kvPut(tx, key, EncodeKV(exp, strconv.FormatInt(n, 10)))
		},
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// KVDelete removes key. Deleting an absent key is not an error.
func (s *Spool) KVDelete(ctx context.Context, key string) error {
	if err := checkKVKey(key); err != nil {
		return fmt.Errorf("queue: kv delete: %w", err)
	}
	return s.submit(ctx, &request{
		name: "kv delete " + key,
		apply: func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketKV)
			if b == nil || b.Get([]byte(key)) == nil {
				return nil
			}
			if err := b.Delete([]byte(key)); err != nil {
				return &writeError{fmt.Errorf("queue: kv delete %q: %w", key, err)}
			}
			return nil
		},
	})
}

// KVSweep removes the entries expired at now and returns how many it
// removed. It removes at most a few thousand per transaction, so as not to
// hold up the commit loop, and loops until none is left or ctx ends.
func (s *Spool) KVSweep(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		n, more, err := s.kvSweepOnce(ctx, now)
		total += n
		if err != nil || !more {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("queue: kv sweep: %w", err)
		}
	}
}

func (s *Spool) kvSweepOnce(ctx context.Context, now time.Time) (n int, more bool, err error) {
	err = s.submit(ctx, &request{
		name: "kv sweep",
		apply: func(tx *bolt.Tx) error {
			n, more = 0, false
			b := tx.Bucket(bucketKV)
			if b == nil {
				return nil
			}
			var keys [][]byte
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if exp, _, found := DecodeKV(v); found && !KVExpired(exp, now) {
					continue
				}
				if len(keys) == kvSweepMax {
					more = true
					break
				}
				keys = append(keys, append([]byte(nil), k...))
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return &writeError{fmt.Errorf("queue: kv sweep: %w", err)}
				}
			}
			n = len(keys)
			return nil
		},
	})
	return n, more, err
}

func kvPut(tx *bolt.Tx, key string, rec []byte) error {
	b, err := tx.CreateBucketIfNotExists(bucketKV)
	if err != nil {
		return &writeError{fmt.Errorf("queue: kv %q: %w", key, err)}
	}
	if err := b.Put([]byte(key), rec); err != nil {
		return &writeError{fmt.Errorf("queue: kv %q: %w", key, err)}
	}
	return nil
}

func checkKVKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if len(key) > KVMaxKey {
		return fmt.Errorf("key of %d bytes exceeds %d", len(key), KVMaxKey)
	}
	return nil
}

// KVExpiry is the stored expiry for a ttl from now: 0 (never) for ttl 0.
// The key-value record format (an 8-byte big-endian expiry, Unix ns, then
// the value) is shared with the cluster's buckets (core/cluster).
func KVExpiry(now time.Time, ttl time.Duration) uint64 {
	if ttl == 0 {
		return 0
	}
	ns := now.Add(ttl).UnixNano()
	if ns <= 0 {
		return 1 // before 1970: already expired, but not "never"
	}
	return uint64(ns)
}

// KVExpired reports whether a stored expiry has passed at now.
func KVExpired(exp uint64, now time.Time) bool {
	return exp != 0 && int64(exp) <= now.UnixNano()
}

// EncodeKV is the stored record of value expiring at exp.
func EncodeKV(exp uint64, value string) []byte {
	rec := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(rec, exp)
	copy(rec[8:], value)
	return rec
}

// DecodeKV splits a stored record. A record shorter than its expiry field
// (never written by this code) reads as absent. The value aliases rec.
func DecodeKV(rec []byte) (exp uint64, value []byte, ok bool) {
	if len(rec) < 8 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(rec), rec[8:], true
}
