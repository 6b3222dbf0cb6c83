package gateway_test

// Edge cases of the cluster's takeover that a review found (issue 13),
// each of which lost mail.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/queue"
)

// TestClusterReplicatesMailQueuedBeforeTheBlock: a node that queued mail
// before its cluster block was added (single node, then scaled out) copies
// those messages to the stream when it starts with the block, so that a
// takeover takes them too; before, they had no copy, and a node back after
// a takeover deleted them as taken: they were lost.
func TestClusterReplicatesMailQueuedBeforeTheBlock(t *testing.T) {
	nc := clustertest.Start(t, 3)
	path, cfg := loadConfig(t, singleConfig())
	queueTwoAndStop(t, cfg)

	// The operator adds the cluster block; gw1 runs on it, queues one
	// message more (replicated), and stops.
	if err := os.WriteFile(path, []byte(takeoverConfig("gw1", nc.URLs())), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	gw1, stop := runStoppable(t, cfg)
	if n := gw1.Spool().Len(); n != 2 {
		t.Fatalf("gw1 on the cluster has %d messages; want its 2 from before", n)
	}
	if err := sendOne(t, gw1.Addr("mx").String()); err != nil {
		t.Fatal(err)
	}
	stop()

	// gw2 takes gw1's queue over: all of it.
	gw2 := gatewaytest.Start(t, takeoverConfig("gw2", nc.URLs()))
	if !gatewaytest.Eventually(15*time.Second, func() bool { return gw2.Log().Wait(0, "took over the queue of a silent node") }) {
		t.Fatalf("gw2 did not take gw1's queue over in 15 s")
	}
	if n := len(gw2.Queued(t)); n != 3 {
		t.Fatalf("gw2 took %d messages over; want gw1's 3 (2 of them queued before the cluster block)", n)
	}

	back := gatewaytest.StartFile(t, path)
	if n := len(back.Queued(t)); n != 0 {
		t.Errorf("gw1 back has %d messages; want none (gw2 took all 3)", n)
	}
}

// TestClusterTakeoverPassesABadCopy: a copy that the taker cannot import
// (here a record of a newer version, as a node upgraded first writes
// during a rolling upgrade) is logged and left on the stream, and the
// takeover goes on with the others. It used to stop there for good, its
// claim never done, so that no node took the rest.
func TestClusterTakeoverPassesABadCopy(t *testing.T) {
	nc := clustertest.Start(t, 3)
	dead := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "gw1", NATSURLs: nc.URLs()}})
	rep, err := dead.OpenReplica(context.Background(), "gw1", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	s, err := queue.Open(t.TempDir(), queue.Options{Replica: rep})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 127 good copies (2 stream messages each: body, record), a message
	// of a part this version does not know, then the bad copy: the last
	// of the takeover's first batch of 256; then 5 good copies more.
	const before, after = 127, 5
	for range before {
		commitOne(t, s)
	}
	js, raw := rawStream(t, nc)
	defer raw.Close()
	subject := "gwq." + base64.RawURLEncoding.EncodeToString([]byte("gw1")) + "."
	publishRaw(t, js, subject+"future", nats.Header{"Gw-Part": {"future"}}, []byte("x"))
	publishRaw(t, js, subject+"newer", nats.Header{"Gw-Part": {"record"}, "Gw-Size": {"0"}}, newerRecord(t))
	for range after {
		commitOne(t, s)
	}
	nodes, err := dead.OpenNodes(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.Beat(context.Background(), cluster.NodeStatus{Node: "gw1", Heartbeat: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}

	gw2 := gatewaytest.Start(t, takeoverConfig("gw2", nc.URLs()))
	ok := gatewaytest.Eventually(30*time.Second, func() bool { return len(gw2.Queued(t)) == before+after })
	if !ok {
		t.Errorf("gw2 queued %d of dead gw1's %d good messages in 30 s: the takeover stopped at the bad copy and was never tried again",
			len(gw2.Queued(t)), before+after)
	}
}

// TestClusterStalledNodeClearsClaim: a node whose heartbeat the others see
// older than takeover_after although its own heartbeats never fail (a
// process or VM paused past takeover_after, its NATS connection up; or
// its clock behind) is taken over; it reads the claim on itself after a
// heartbeat, drops what was taken and clears the claim, so that when it
// dies later its queue is taken over again and the mail it accepted
// after the first takeover is not lost.
func TestClusterStalledNodeClearsClaim(t *testing.T) {
	nc := clustertest.Start(t, 3)
	cfg, err := config.Load(gatewaytest.WriteConfig(t, takeoverConfig("gw1", nc.URLs())))
	if err != nil {
		t.Fatal(err)
	}
	gw1, stop := runStoppable(t, cfg)
	gw2 := gatewaytest.Start(t, takeoverConfig("gw2", nc.URLs()))
	for range 2 {
		if err := sendOne(t, gw1.Addr("mx").String()); err != nil {
			t.Fatal(err)
		}
	}

	// What gw2 sees of a paused gw1: its heartbeat an hour old, while gw1
	// itself writes its heartbeats without a failure.
	stale := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "stale", NATSURLs: nc.URLs()}})
	nodes, err := stale.OpenNodes(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	took := gatewaytest.Eventually(20*time.Second, func() bool {
		nodes.Beat(context.Background(), cluster.NodeStatus{Node: "gw1", Heartbeat: time.Now().Add(-time.Hour)})
		return len(gw2.Queued(t)) == 2
	})
	if !took {
		t.Fatalf("gw2 did not take gw1's 2 messages over in 20 s")
	}

	// gw1 runs on (its next heartbeats succeed), queues one message more,
	// and then dies for good.
	time.Sleep(3 * time.Second)
	if err := sendOne(t, gw1.Addr("mx").String()); err != nil {
		t.Fatal(err)
	}
	stop()
	if !gatewaytest.Eventually(20*time.Second, func() bool { return len(gw2.Queued(t)) == 3 }) {
		_, claimed, _ := nodes.ClaimOn(context.Background(), "gw1")
		t.Errorf("gw2 queued %d messages 20 s after gw1 died; want 3 (the message gw1 accepted after the takeover is lost; claim on gw1 still there: %v)",
			len(gw2.Queued(t)), claimed)
	}
}

// commitOne queues a small message to b@example.test in s.
func commitOne(t *testing.T, s *queue.Spool) {
	t.Helper()
	d, err := s.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write([]byte("Subject: x\r\n\r\nHello.\r\n")); err != nil {
		t.Fatal(err)
	}
	env := &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "client.test"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "b", Domain: "example.test"}}}}
	if err := d.Commit(context.Background(), env, []byte("Received: by test\r\n")); err != nil {
		t.Fatal(err)
	}
}

// newerRecord is a record of a version this gateway does not know.
func newerRecord(t *testing.T) []byte {
	t.Helper()
	m := queue.Message{ID: "newer", Created: time.Now(), Size: 0,
		Envelope: envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "client.test"},
			Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "b", Domain: "example.test"}}}},
		Recipients: []queue.RecipientState{{}}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// The record's version is its "v" (queue's record); the rest reads
	// as Message's fields.
	return append([]byte(`{"v":99,`), b[1:]...)
}

// rawStream is a plain JetStream client on nc, for messages the
// gateway's code would not publish.
func rawStream(t *testing.T, nc *clustertest.Cluster) (jetstream.JetStream, *nats.Conn) {
	t.Helper()
	conn, err := nats.Connect(strings.Join(nc.URLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	return js, conn
}

func publishRaw(t *testing.T, js jetstream.JetStream, subject string, h nats.Header, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: data}); err != nil {
		t.Fatal(err)
	}
}

// TestClusterKeepsUncopiedMail: a node's first start with a cluster block
// marks the messages queued before it, then copies them. If that start
// stops part-way and a takeover of the node's queue ends before the next
// start, the next start keeps and copies the messages still marked (they
// had no copy for anyone to take) and drops the others, which were taken.
// Before, it dropped both, as if taken: the uncopied one was lost.
func TestClusterKeepsUncopiedMail(t *testing.T) {
	nc := clustertest.Start(t, 3)
	path, cfg := loadConfig(t, singleConfig())
	ids := queueTwoAndStop(t, cfg)

	// What a first start on the cluster leaves when it stops after marking
	// both and copying the second, which a taker then took (its copy is
	// gone): the first marked, the second not.
	s, err := queue.Open(filepath.Join(cfg.DataDir, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KVSet(context.Background(), gateway.UncopiedPrefix+ids[0], "", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	taker, nodes, claim := claimGW1(t, nc.URLs())
	if err := nodes.ClaimDone(context.Background(), claim); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(takeoverConfig("gw1", nc.URLs())), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.Load(path); err != nil {
		t.Fatal(err)
	}
	gw1, _ := runStoppable(t, cfg)
	var left []string
	gw1.Spool().List(func(m *queue.Message) bool { left = append(left, m.ID); return true })
	if !slices.Equal(left, ids[:1]) {
		t.Fatalf("gw1 back has %q; want only the uncopied %q (the other was taken)", left, ids[0])
	}
	live, err := taker.LiveIDs(context.Background(), "gw1")
	if err != nil {
		t.Fatal(err)
	}
	if !live[ids[0]] {
		t.Errorf("the uncopied message %s has no copy on the stream after the start", ids[0])
	}
	if marks, err := gw1.Spool().KVKeys(gateway.UncopiedPrefix, time.Now()); err != nil || len(marks) != 0 {
		t.Errorf("marks left after the copies: %q, %v", marks, err)
	}
}
