package cluster_test

// Edge cases of claims and copies that a review found (issue 13).

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
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
	c := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "gw2", NATSURLs: []string{url}}})
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

// TestReplicaLargeCopyInTime: the connection's timeout bounds the
// servers' silence, not the whole copy: a 64 MiB message (128 parts) is
// copied over a link that passes 10 MiB a second, so that the copy takes
// 6.4 s at least, longer than the 5 s timeout (the default), whatever the
// machine's load, while each part waits for 8 MiB at most ahead of it
// (the copy's budget in flight: 0.8 s), which leaves over 4 s for the
// server's own delays. When the timeout bounded the whole copy, such a
// message was refused at every try on a loaded cluster. (With a 250 ms
// timeout and no link, a part's acknowledgement alone took longer under
// -race on a loaded machine.)
func TestReplicaLargeCopyInTime(t *testing.T) {
	const (
		size    = 64 << 20
		rate    = 10 << 20 // bytes a second
		timeout = 5 * time.Second
	)
	if cluster.MessageBudget*time.Second/rate > timeout/4 {
		t.Fatalf("a part may wait for %v behind its copy's budget; this test wants it well within the %v timeout", cluster.MessageBudget*time.Second/rate, timeout)
	}
	srv := startServer(t, server.Options{JetStreamMaxStore: 512 << 20})
	c := clustertest.Connect(t, cluster.Options{
		Config:  config.Cluster{Node: "gw1", NATSURLs: []string{clustertest.NewLink(t, srv.Addr().String(), rate).URL()}, Replicas: 1},
		Timeout: timeout,
	})
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
	if _, err := commitMessage(t, s, "bob@example.net", size); err != nil {
		t.Fatalf("a 64 MiB message, each part acknowledged within the %v timeout, was refused after %v: %v", timeout, time.Since(start), err)
	}
	took := time.Since(start)
	t.Logf("the copy took %v", took)
	if took <= timeout {
		t.Errorf("the copy took %v, within the %v timeout: the link did not hold it to 10 MiB a second, and the test shows nothing", took, timeout)
	}
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
