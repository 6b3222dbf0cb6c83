package cluster_test

// Review 13's failing tests of the cluster (issue 13).

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/queue"
)

// TestClaimDoneAfterClearKeepsNoClaim: a node that comes back while its
// taker is still importing waits at most twice takeover_after
// (reconcile's anyway), then clears the claim and runs. The taker, still
// going, then marks the claim done: ClaimDone is a plain Put (nodes.go),
// which writes the claim again. The node runs on with a claim on it that
// nothing clears (its heartbeats do not fail, so dropTaken does not run),
// and when it dies later no node can claim its queue (TryClaim's Create
// fails): its mail is lost. ClaimDone must only update the claim it made.
func TestClaimDoneAfterClearKeepsNoClaim(t *testing.T) {
	url := startServer(t, server.Options{}).ClientURL()
	c, err := cluster.Connect(context.Background(), cluster.Options{Config: config.Cluster{Node: "gw2", NATSURLs: []string{url}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nodes, err := c.OpenNodes(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	claim := cluster.Claim{Node: "gw1", By: "gw2", At: time.Now()}
	if won, err := nodes.TryClaim(context.Background(), &claim); !won || err != nil {
		t.Fatalf("TryClaim = %v, %v", won, err)
	}
	if err := nodes.ClearClaim(context.Background(), "gw1"); err != nil { // gw1, back, gave up waiting
		t.Fatal(err)
	}
	doneErr := nodes.ClaimDone(context.Background(), claim) // the taker finishes late
	if _, claimed, err := nodes.ClaimOn(context.Background(), "gw1"); err != nil || claimed {
		t.Errorf("after gw1 cleared the claim, the taker's ClaimDone (%v) left a claim on gw1 (%v, %v); want none", doneErr, claimed, err)
	}
}

// TestReplicaLargeCopyInTime: the connection's timeout bounds the whole
// of Put (replica.go: ctx, cancel := r.c.opContext(ctx) before the loop
// that publishes every part, waiting for acknowledgements whenever the
// copy is over its 8 MiB budget), not each acknowledgement, so a message
// whose parts are each acknowledged in milliseconds is refused when all
// of them take longer than the timeout to go: with the default 5 s, a
// message of the default max_message_size (25 MB) on a loaded cluster
// (the race detector here failed TestReplicaBoundsMemory so), for ever
// (451 at each retry), and /healthz flips to 503 (noteWrite). Here the
// timeout is 250 ms and the message 25 MiB on one server: each of its
// 50 parts is acknowledged in about 20 ms, the whole takes ~0.9 s.
func TestReplicaLargeCopyInTime(t *testing.T) {
	url := startServer(t, server.Options{JetStreamMaxStore: 512 << 20}).ClientURL()
	c, err := cluster.Connect(context.Background(), cluster.Options{
		Config: config.Cluster{Node: "gw1", NATSURLs: []string{url}, Replicas: 1}, Timeout: 250 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rep, err := c.OpenReplica(context.Background(), "gw1", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	s, err := queue.Open(t.TempDir(), queue.Options{Replica: rep, SpillThreshold: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if _, err := commitMessage(t, s, "bob@example.net", 25<<20); err != nil {
		t.Errorf("a 25 MiB message, each part acknowledged well within the 250 ms timeout (50 parts of 512 KiB), was refused after %v: %v", time.Since(start), err)
	}
	t.Logf("the copy took %v", time.Since(start))
}

// TestReplicaLearnsHold: an operator holds a message (`gateway queue
// hold`: Spool.Update with Held), so that it is not delivered. The copy
// does not learn it (queue/replica.go, newlyFinal: only recipients made
// final or added go to the replica), so a takeover imports the message
// unheld and the taker delivers what the operator stopped.
func TestReplicaLearnsHold(t *testing.T) {
	url := startServer(t, server.Options{}).ClientURL()
	c, s := singleReplica(t, url)
	id, err := commitMessage(t, s, "bob@example.net", 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(context.Background(), id, func(m *queue.Message) error { m.Held = true; return nil }); err != nil {
		t.Fatal(err)
	}
	var held bool
	ok := waitFor(3*time.Second, func() bool {
		cp, found := copies(t, c, "gw1")[id]
		if !found {
			return false
		}
		m, err := queue.DecodeRecord(cp.Record)
		held = err == nil && m.Held
		return held
	})
	if !ok {
		t.Errorf("the copy of %s, held on its node, is not held (a takeover would deliver it)", id)
	}
}
