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

// StoredUnder is how many messages the queue's stream holds on subjects
// matching filter (gws.> for the newer records).
func StoredUnder(t testing.TB, c *Conn, filter string) uint64 {
	t.Helper()
	st, err := c.js.Stream(context.Background(), QueueStream)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var n uint64
	for _, count := range info.State.Subjects {
		n += count
	}
	return n
}

// BudgetFree reports whether r's copies hold none of the memory budget.
func BudgetFree(r *Replica) bool {
	if !r.budget.TryAcquire(copyBudget) {
		return false
	}
	r.budget.Release(copyBudget)
	return true
}

// MessageBudget is what one copy may hold in flight.
const MessageBudget = messageBudget
