package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/queue"
)

// startServer runs one JetStream server of opt (made a loopback one with
// small limits; a random port and a temporary store unless set) until
// the test ends, or until it is shut down before.
func startServer(t *testing.T, opt server.Options) *server.Server {
	t.Helper()
	opt.Host, opt.NoLog, opt.NoSigs, opt.JetStream = "127.0.0.1", true, true, true
	if opt.Port == 0 {
		opt.Port = server.RANDOM_PORT
	}
	if opt.StoreDir == "" {
		opt.StoreDir = t.TempDir()
	}
	if opt.JetStreamMaxStore == 0 {
		opt.JetStreamMaxStore = 256 << 20
	}
	opt.JetStreamMaxMemory = 64 << 20
	s, err := server.NewServer(&opt)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server does not take connections")
	}
	return s
}

// singleReplica connects node gw1 to the server at url and opens a spool
// whose replica is its copy, of one replica (bodies over 1,000 bytes
// spill to files).
func singleReplica(t *testing.T, url string) (*cluster.Conn, *queue.Spool) {
	t.Helper()
	c := clustertest.Connect(t, cluster.Options{
		Config: config.Cluster{Node: "gw1", NATSURLs: []string{url}, Replicas: 1},
	})
	s, _ := spoolOnReplicas(t, c, "gw1", 1)
	return c, s
}

// TestReplicaSmallMaxPayload: Put cuts a body into
// parts of a fixed 512 KiB, whatever the server's max_payload. On a NATS
// server with max_payload 64 KiB every message over about 64 KiB fails
// with ErrNotReplicated (nats: maximum payload exceeded), for ever: the
// node answers 451 to all its larger mail. Right: parts no larger than the connection's MaxPayload
// (less room for the headers), and a record too large for one message
// refused with a clear error at the least.
func TestReplicaSmallMaxPayload(t *testing.T) {
	c, s := singleReplica(t, startServer(t, server.Options{MaxPayload: 64 << 10}).ClientURL())
	for _, size := range []int{10 << 10, 100 << 10, 1 << 20} {
		id, err := commitMessage(t, s, "bob@example.net", size)
		if err != nil {
			t.Errorf("a %d-byte message on a server with max_payload 64 KiB: Commit = %v; want it queued and copied", size, err)
			continue
		}
		if cp, ok := copies(t, c, "gw1")[id]; !ok || len(cp.Body) < size {
			t.Errorf("a %d-byte message: no complete copy on the stream", size)
		}
	}
}

// TestReplicaPartsStayInOrder: Put relies on "the record
// is published last, on the same connection, so that it is never there
// without the body before it". But nats.go's PublishMsgAsync retries a
// publish that met "no responders" (DefaultPubRetryAttempts, 250 ms
// later, each retry from its own time.AfterFunc goroutine), so after a
// moment without the stream's interest (a stream being re-created, a
// server that has not yet learnt the stream's assignment) the parts and
// the record reach the stream in any order. Commit still gets every
// PubAck and returns nil (the client hears 250), yet Copies finds the
// record before (some of) its body: the sizes differ and the copy is not
// returned, or, with the sizes equal, a body of swapped parts is. A
// takeover loses the message or delivers it corrupt. Right: parts that
// say where they go (an offset or index, the record a count/digest) and
// assemble checking them, or publishes that the client never retries
// (jetstream.WithRetryAttempts(0)) with the ordering checked by
// Nats-Expected-Last-Subject-Sequence.
func TestReplicaPartsStayInOrder(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := connect(t, nc, nil, 0, 1, 2)
	s := spoolWithReplica(t, c, "gw1")

	admin, err := nats.Connect(nc.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	committed := 0
	for round := 0; round < 5 && committed < 3; round++ {
		if err := js.DeleteStream(context.Background(), cluster.QueueStream); err != nil {
			t.Fatal(err)
		}
		// No responders on gwq.> from any node before the commits start.
		if !waitFor(5*time.Second, func() bool {
			_, err := admin.Request("gwq.probe", nil, time.Second)
			return errors.Is(err, nats.ErrNoResponders)
		}) {
			t.Fatal("the stream's subjects still answer after its deletion")
		}
		var wg sync.WaitGroup
		ids, errs := make([]string, 3), make([]error, 3)
		for i := range ids {
			// Written here (draftMessage may fail the test), committed at once.
			d, commit := draftMessage(t, s, "bob@example.net", 2<<20)
			ids[i] = d.ID()
			wg.Go(func() { errs[i] = commit() })
		}
		time.Sleep(50 * time.Millisecond)
		// Back before the client's first retry, 250 ms after the publishes.
		if rep, err := c.OpenReplica(context.Background(), "gw1", 3); err == nil {
			rep.Close()
		} else {
			t.Fatal(err)
		}
		wg.Wait()
		got := copies(t, c, "gw1")
		for i, id := range ids {
			if errs[i] != nil {
				// Refused: with ErrNotReplicated, and nothing queued.
				if !errors.Is(errs[i], queue.ErrNotReplicated) {
					t.Errorf("round %d: %s refused with %v; want ErrNotReplicated", round, id, errs[i])
				}
				if _, err := s.Get(id); !errors.Is(err, queue.ErrNotFound) {
					t.Errorf("round %d: %s was refused, yet Get = %v; want ErrNotFound", round, id, err)
				}
				continue
			}
			committed++
			rc, err := s.Body(id)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(rc)
			rc.Close()
			cp, ok := got[id]
			switch {
			case !ok:
				t.Errorf("round %d: Commit of %s returned nil (a 250), but Copies has no complete copy of it", round, id)
			case !bytes.Equal(cp.Body, body):
				t.Errorf("round %d: the copy of %s is complete (%d bytes, the spool has %d) but its body differs from the spool's: parts out of order", round, id, len(cp.Body), len(body))
			}
		}
	}
	// Without the client's retries a part the stream did not answer
	// fails its Commit (451) instead of arriving late: committed may be
	// 0, and each one that did commit has its exact copy.
	t.Logf("%d commits succeeded; the others were refused", committed)
}

// TestReplicaKeepsTheLargerReplicas: OpenReplica calls
// CreateOrUpdateStream with its own node's replicas, and the stream is
// every node's. So the last node to start decides how many copies all
// the nodes' queues have: one node configured (or left by mistake) with
// replicas = 1 silently turns the other nodes' R3 copies, which their
// 250s were promised on, into R1, and a single NATS server's loss then
// loses acknowledged mail of every node. Right: never lower the replicas
// of an existing stream from a node's start (refuse to start, or keep the
// larger and warn); raising is harmless.
func TestReplicaKeepsTheLargerReplicas(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := connect(t, nc, nil, 0, 1, 2)
	if rep, err := c.OpenReplica(context.Background(), "gw1", 3); err == nil {
		t.Cleanup(rep.Close)
	} else {
		t.Fatal(err)
	}
	other := connect(t, nc, nil, 1)
	rep2, err := other.OpenReplica(context.Background(), "gw2", 1)
	if err == nil {
		t.Cleanup(rep2.Close)
	}

	admin, cerr := nats.Connect(nc.URL(0))
	if cerr != nil {
		t.Fatal(cerr)
	}
	t.Cleanup(admin.Close)
	js, cerr := jetstream.New(admin)
	if cerr != nil {
		t.Fatal(cerr)
	}
	st, cerr := js.Stream(context.Background(), cluster.QueueStream)
	if cerr != nil {
		t.Fatal(cerr)
	}
	if r := st.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("after gw2 opened its replica with replicas 1 (err %v): the queue's stream has %d replicas; want gw1's 3 kept", err, r)
	}
}

// TestReplicaRemoveRetriedAfterReconnect: Remove publishes
// its rollup marker once, without waiting, and a failure is only logged.
// While the connection is reconnecting (the NATS server it was on
// restarts: routine maintenance), every message delivered and deleted
// keeps its complete copy on the stream for ever: the stream has no
// limits, nothing retries the removal, and no step reconciles it. After a
// takeover of this node all of those messages, possibly days old, are
// delivered again. Right: removals that failed are kept and retried once
// the connection is back (or swept by reconciling the spool with the
// stream), so that a copy outlives its message only briefly.
func TestReplicaRemoveRetriedAfterReconnect(t *testing.T) {
	opt := server.Options{Port: freeTCPPort(t), StoreDir: t.TempDir()}
	srv := startServer(t, opt)
	c, s := singleReplica(t, srv.ClientURL())
	id, err := commitMessage(t, s, "bob@example.net", 300)
	if err != nil {
		t.Fatal(err)
	}

	srv.Shutdown() // a restart of the NATS server
	srv.WaitForShutdown()
	if !waitFor(5*time.Second, func() bool { return !c.Connected() }) {
		t.Fatal("still connected after the server stopped")
	}
	if err := s.Delete(context.Background(), id); err != nil { // delivered meanwhile
		t.Fatal(err)
	}
	startServer(t, opt)
	if !waitFor(10*time.Second, c.Connected) {
		t.Fatal("not reconnected to the restarted server")
	}
	waitFor(5*time.Second, func() bool { _, ok := copies(t, c, "gw1")[id]; return !ok })
	if _, ok := copies(t, c, "gw1")[id]; ok {
		t.Errorf("%s was deleted while NATS restarted; 5 s after the reconnection its complete copy is still on the stream (and stays: a takeover delivers it again)", id)
	}
}

// freeTCPPort is a port on 127.0.0.1 that was free a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
