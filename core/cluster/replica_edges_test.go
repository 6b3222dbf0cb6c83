package cluster_test

// Edge cases of claims and copies that a review found (issue 13).

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
// taker is still importing may give up waiting and clear the claim; the
// taker's late ClaimDone must then write nothing (it changes only the
// claim it made), or the claim would stay on a node that runs on, and
// when that node died no node could claim its queue.
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

// TestReplicaLargeCopyInTime: the connection's timeout bounds each part's
// acknowledgement, not the whole copy: a 25 MiB message (50 parts, each
// acknowledged in about 20 ms) is copied with a 250 ms timeout. When the
// timeout bounded the whole copy, such a message was refused at every
// try on a loaded cluster.
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

// TestReplicaLearnsHold: a message the operator holds (Spool.Update with
// Held) is held in its copy too, so that a takeover does not deliver it.
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
