package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/queue"
)

// TestReview7ReplicaFullStreamNeverEmpties: the queue's stream has no
// limits and DiscardNew, so it fills up to the servers' (or the
// account's) JetStream storage; then Commit rightly fails (451). But a
// copy leaves the stream only by a new message, the rollup marker that
// Remove publishes, and a full stream refuses new messages: the marker
// too. So once full, delivering and deleting the whole local queue frees
// nothing, and the node answers 451 to all mail for ever, until an
// operator purges the stream by hand. Right: remove a copy by the stream
// API (a purge of its subject, or deleting its messages), which a full
// stream still accepts, and keep the marker only as a hint.
func TestReview7ReplicaFullStreamNeverEmpties(t *testing.T) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 8 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server does not take connections")
	}
	c, err := cluster.Connect(context.Background(), cluster.Options{
		Config: config.Cluster{Node: "gw1", NATSURLs: []string{s.ClientURL()}, Replicas: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	rep, err := c.OpenReplica(context.Background(), "gw1", 1)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := queue.Open(t.TempDir(), queue.Options{Replica: rep, SpillThreshold: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })

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
