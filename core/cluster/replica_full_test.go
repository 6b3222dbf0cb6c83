package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestReplicaFullStreamEmpties: the queue's stream has no
// limits and DiscardNew, so it fills up to the servers' (or the
// account's) JetStream storage; then Commit rightly fails (451). But a
// copy leaves the stream only by a new message, the rollup marker that
// Remove publishes, and a full stream refuses new messages: the marker
// too. So once full, delivering and deleting the whole local queue frees
// nothing, and the node answers 451 to all mail for ever, until an
// operator purges the stream by hand. Right: remove a copy by the stream
// API (a purge of its subject, or deleting its messages), which a full
// stream still accepts, and keep the marker only as a hint.
func TestReplicaFullStreamEmpties(t *testing.T) {
	_, sp := singleReplica(t, startServer(t, server.Options{JetStreamMaxStore: 8 << 20}).ClientURL())

	var ids []string
	for range 20 {
		id, err := commitMessage(t, sp, "bob@example.net", 1<<20)
		if err != nil {
			t.Logf("full after %d messages: %v", len(ids), err)
			break
		}
		ids = append(ids, id)
	}
	if len(ids) == 20 {
		t.Fatal("the stream never filled: the case was not reached")
	}
	for _, id := range ids { // all delivered
		if err := sp.Delete(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	ok := waitFor(5*time.Second, func() bool {
		id, err := commitMessage(t, sp, "bob@example.net", 1<<20)
		if err == nil {
			sp.Delete(context.Background(), id)
		}
		return err == nil
	})
	if !ok {
		t.Errorf("the whole queue (%d messages) delivered and deleted, yet a new message still fails: the copies never left the full stream", len(ids))
	}
}
