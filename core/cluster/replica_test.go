package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// spoolWithReplica opens a spool in a temporary folder whose replica is
// node's copy on c (bodies over 1,000 bytes spill to files).
func spoolWithReplica(t testing.TB, c *cluster.Conn, node string) *queue.Spool {
	t.Helper()
	s, _ := spoolAndReplica(t, c, node)
	return s
}

// spoolAndReplica is spoolWithReplica that also returns the replica.
func spoolAndReplica(t testing.TB, c *cluster.Conn, node string) (*queue.Spool, *cluster.Replica) {
	t.Helper()
	return spoolOnReplicas(t, c, node, 3)
}

// spoolOnReplicas opens a spool whose replica is node's copy on c, with
// replicas copies on the servers.
func spoolOnReplicas(t testing.TB, c *cluster.Conn, node string, replicas int) (*queue.Spool, *cluster.Replica) {
	t.Helper()
	rep, err := c.OpenReplica(context.Background(), node, replicas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rep.Close)
	s, err := queue.Open(t.TempDir(), queue.Options{Replica: rep, SpillThreshold: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rep
}

// commitMessage queues a message of size bytes of content to rcpt.
func commitMessage(t testing.TB, s *queue.Spool, rcpt string, size int) (string, error) {
	t.Helper()
	d, commit := draftMessage(t, s, rcpt, size)
	return d.ID(), commit()
}

// randomDraft is draftMessage with random content. The servers compress
// what they replicate to each other: a repeated line crosses their
// routes as almost nothing, random bytes (each message's own) at their
// size.
func randomDraft(t testing.TB, s *queue.Spool, rcpt string, size int) (*queue.Draft, func() error) {
	t.Helper()
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	return draftContent(t, s, rcpt, io.LimitReader(rand.NewChaCha8(seed), int64(size)))
}

// draftMessage writes a message of size bytes of content to rcpt, and
// returns its draft and what commits it (aborting it when that fails).
func draftMessage(t testing.TB, s *queue.Spool, rcpt string, size int) (*queue.Draft, func() error) {
	t.Helper()
	return draftContent(t, s, rcpt, io.LimitReader(strings.NewReader(strings.Repeat("0123456789abcde\n", size/16+1)), int64(size)))
}

// draftContent is draftMessage with content read from r.
func draftContent(t testing.TB, s *queue.Spool, rcpt string, r io.Reader) (*queue.Draft, func() error) {
	t.Helper()
	d, err := s.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(d, r); err != nil {
		t.Fatal(err)
	}
	local, domain, _ := strings.Cut(rcpt, "@")
	env := &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "example.org"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: local, Domain: domain}}}}
	return d, func() error {
		err := d.Commit(context.Background(), env, []byte("Received: by test\r\n"))
		if err != nil {
			d.Abort()
		}
		return err
	}
}

// addRecipient is an update that adds recipient local@domain, pending.
func addRecipient(local, domain string) func(*queue.Message) error {
	return func(m *queue.Message) error {
		m.Envelope.Recipients = append(m.Envelope.Recipients, envelope.Recipient{Address: envelope.Address{Local: local, Domain: domain}})
		m.Recipients = append(m.Recipients, queue.RecipientState{})
		return nil
	}
}

// copies reads node's complete copies, by ID.
func copies(t *testing.T, c *cluster.Conn, node string) map[string]cluster.Copy {
	t.Helper()
	out := map[string]cluster.Copy{}
	err := c.Copies(context.Background(), node, func(cp cluster.Copy) bool {
		out[cp.ID] = cp
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplicaCopiesTheQueue: every message a node queues has its copy on
// the stream (a 2 MiB one in parts) with the record and body the spool
// has, apart from other nodes' copies; one that leaves the spool leaves
// the stream.
func TestReplicaCopiesTheQueue(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := connect(t, nc, nil, 0, 1, 2)
	node := "gw1.example.org/ü"
	s := spoolWithReplica(t, c, node)
	other := spoolWithReplica(t, c, "gw2")

	small, err := commitMessage(t, s, "bob@example.net", 300)
	if err != nil {
		t.Fatal(err)
	}
	large, err := commitMessage(t, s, "carol@example.net", 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := commitMessage(t, other, "dave@example.net", 10); err != nil {
		t.Fatal(err)
	}
	got := copies(t, c, node)
	if len(got) != 2 {
		t.Fatalf("%d copies of %s; want 2", len(got), node)
	}
	for _, id := range []string{small, large} {
		rc, err := s.Body(id)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got[id].Body, body) {
			t.Errorf("%s: the copy's body is %d bytes; want the spool's %d", id, len(got[id].Body), len(body))
		}
		if !bytes.Contains(got[id].Record, []byte(`"id":"`+id+`"`)) {
			t.Errorf("%s: the copy's record is %s", id, got[id].Record)
		}
	}
	if n := len(copies(t, c, "gw2")); n != 1 {
		t.Errorf("%d copies of gw2; want 1", n)
	}

	if err := s.Delete(context.Background(), small); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(copies(t, c, node)) != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := copies(t, c, node); len(got) != 1 || got[large].ID != large {
		t.Errorf("after the small one's removal: copies %v; want only %s", keys(got), large)
	}
	if live, err := c.LiveIDs(context.Background(), node); err != nil || len(live) != 1 || !live[large] {
		t.Errorf("LiveIDs = %v, %v; want only %s", live, err, large)
	}
}

// TestReplicaUnreachableQueuesNothing: with no NATS server to take the
// copy, Commit fails with queue.ErrNotReplicated, at once, and nothing is
// queued.
func TestReplicaUnreachableQueuesNothing(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := connect(t, nc, nil, 0)
	s := spoolWithReplica(t, c, "gw1")
	nc.StopAll()
	if !waitFor(5*time.Second, func() bool { return !c.Connected() }) {
		t.Fatal("still connected after every server stopped")
	}
	start := time.Now()
	_, err := commitMessage(t, s, "bob@example.net", 300)
	if !errors.Is(err, queue.ErrNotReplicated) {
		t.Fatalf("Commit = %v; want ErrNotReplicated", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Commit took %v to fail; want at once", d)
	}
	if s.Len() != 0 {
		t.Errorf("%d messages queued; want none", s.Len())
	}
}

func keys(m map[string]cluster.Copy) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReplicaLearnsFinalStates: when a recipient of a queued message is
// delivered, the copy's record says so (the newest of its updates, one
// kept on the stream), so a takeover would not deliver to it again; the
// message's removal removes the update too.
func TestReplicaLearnsFinalStates(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := connect(t, nc, nil, 0)
	s := spoolWithReplica(t, c, "gw1")
	id, err := commitMessage(t, s, "bob@example.net", 300)
	if err != nil {
		t.Fatal(err)
	}
	addCarol := addRecipient("carol", "example.net")
	bobDelivered := func(m *queue.Message) error {
		m.Recipients[0] = queue.RecipientState{Status: queue.Delivered, LastReply: "250 2.0.0 taken", Attempts: 1}
		return nil
	}
	for _, fn := range []func(*queue.Message) error{addCarol, bobDelivered} {
		if err := s.Update(context.Background(), id, fn); err != nil {
			t.Fatal(err)
		}
	}
	want, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	var got *queue.Message
	ok := waitFor(5*time.Second, func() bool {
		cp, found := copies(t, c, "gw1")[id]
		got, err = queue.DecodeRecord(cp.Record)
		return found && err == nil && len(got.Recipients) == 2 && got.Recipients[0].Status == queue.Delivered
	})
	if !ok {
		t.Fatalf("the copy's record says %+v; want bob delivered and carol pending (%+v)", got, want.Recipients)
	}
	if got.Recipients[1].Status != queue.Pending || got.Envelope.Recipients[1].Address.Local != "carol" {
		t.Errorf("the copy's carol: %+v, %+v; want her pending", got.Envelope.Recipients[1], got.Recipients[1])
	}
	if n := cluster.StoredUnder(t, c, "gws.>"); n != 1 {
		t.Errorf("%d updates kept on the stream; want 1 (the newest)", n)
	}

	if err := s.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return cluster.StoredUnder(t, c, ">") == 0 }) {
		t.Errorf("after the removal, the stream holds %d messages of gw1 (%d updates); want none",
			cluster.StoredUnder(t, c, ">"), cluster.StoredUnder(t, c, "gws.>"))
	}
}

// TestReplicaBoundsMemory: copies over one copy's budget in flight (20
// MiB, 8 MiB each at most) arrive whole, several at once, and give the
// whole budget back. What it checks is the budget, not the time the
// servers take: each part's acknowledgement waits behind the other
// copies' (24 MiB in flight, on three servers), which took over the
// default 5 s under -race on a loaded machine, so it is allowed a minute
// (TestReplicaLargeCopyInTime is the test of the timeout).
func TestReplicaBoundsMemory(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := connectWith(t, nc, cluster.Options{Timeout: time.Minute}, 0)
	s, rep := spoolAndReplica(t, c, "gw1")
	const size = 20 << 20
	if cluster.MessageBudget >= size {
		t.Fatalf("the budget per copy is %d; this test wants it under %d", cluster.MessageBudget, size)
	}
	ids := make([]string, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range ids {
		// Written here (draftMessage may fail the test), committed at once.
		d, commit := draftMessage(t, s, "bob@example.net", size)
		ids[i] = d.ID()
		wg.Go(func() { errs[i] = commit() })
	}
	wg.Wait()
	got := copies(t, c, "gw1")
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("commit %d: %v", i, errs[i])
		}
		if n := len(got[id].Body); n != size+len("Received: by test\r\n") {
			t.Errorf("%s: the copy's body is %d bytes; want %d", id, n, size+len("Received: by test\r\n"))
		}
	}
	if !cluster.BudgetFree(rep) {
		t.Error("the copies, all acknowledged, still hold memory of the budget")
	}
}
