package queue_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// TestCommitUnreplicatedAtCloseQueuesNothing: Commit stores the
// message locally, then waits for the copy's acknowledgement; when that
// fails, unreplicated Deletes the message. If the spool is closed while
// Commit waits (the gateway's release closes the spool once the sessions'
// shutdown grace is over, and a session may still wait on NATS without
// quorum: up to the 5 s timeout, the default shutdown_timeout too), that
// Delete fails with ErrClosed: the log says "it stays queued here", Commit
// returns ErrNotReplicated (the client hears 451 and sends again), and the
// Draft's Abort then removes the spilled body file under the record that
// stayed. After the restart the spool holds a message the client was
// refused (delivered twice with the client's retry) whose body is gone.
// Right: on error nothing is queued, as Commit's doc says: the removal of
// an unreplicated message must not depend on the spool staying open (the
// commit loop must let it finish, or Close wait for commits in flight),
// and Abort must not remove a body a record still names.
func TestCommitUnreplicatedAtCloseQueuesNothing(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := clustertest.Connect(t, cluster.Options{
		Config:  config.Cluster{Node: "gw1", NATSURLs: []string{nc.URL(0)}, Replicas: 3},
		Timeout: 3 * time.Second,
	})
	rep, err := c.OpenReplica(context.Background(), "gw1", 3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := queue.Open(dir, queue.Options{Replica: rep, SpillThreshold: 1000})
	if err != nil {
		t.Fatal(err)
	}
	nc.Stop(1) // no quorum: node 0 takes the publishes and never acknowledges them
	nc.Stop(2)

	d, err := s.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(d, strings.NewReader(strings.Repeat("0123456789abcde\n", 500))); err != nil {
		t.Fatal(err)
	}
	env := &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "example.org"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "bob", Domain: "example.net"}}}}
	done := make(chan error, 1)
	go func() { done <- d.Commit(context.Background(), env, []byte("Received: by test\r\n")) }()
	// Close once the message is stored here, while Commit waits for the
	// acknowledgement (the client's retries of "no responders" take 500 ms).
	deadline := time.Now().Add(2 * time.Second)
	for s.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err = <-done
	d.Abort()
	if err == nil {
		t.Fatal("Commit = nil with no quorum: the case was not reached")
	}
	if !errors.Is(err, queue.ErrNotReplicated) {
		t.Errorf("Commit = %v; want ErrNotReplicated", err)
	}

	s, err = queue.Open(dir, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := s.Len(); n != 0 {
		_, berr := s.Body(d.ID())
		t.Errorf("Commit failed (the client was refused), yet after a restart %d message is queued (its body: %v); want none", n, berr)
	}
}
