package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// StoredKeys is how many keys the bucket's servers hold with a value (not
// a removal marker), whether expired by the store's clock or not.
func StoredKeys(t testing.TB, s *Store) int {
	t.Helper()
	keys, err := s.kv.Keys(context.Background())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("keys: %v", err)
	}
	return len(keys)
}
