package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
)

// TestConnectUnreachable: no NATS server at the URL is an error that names
// it, within the dial timeout, not a hang.
func TestConnectUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	_, err = cluster.Connect(context.Background(), cluster.Options{Config: config.Cluster{Node: "n", NATSURLs: []string{url}}})
	if err == nil {
		t.Fatal("Connect to a closed port: no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Connect took %v to fail; want within the 2s dial timeout", d)
	}
	t.Logf("error: %v", err)
}

// TestConnectNoJetStream: a NATS server without JetStream is refused at
// connect, with the reason.
func TestConnectNoJetStream(t *testing.T) {
	url := clustertest.StartPlain(t)
	_, err := cluster.Connect(context.Background(), cluster.Options{Config: config.Cluster{Node: "n", NATSURLs: []string{url}}})
	if err == nil {
		t.Fatal("Connect to a server without JetStream: no error")
	}
	t.Logf("error: %v", err)
}

// TestStoreUnavailable: with the servers gone every call fails at once with
// ErrUnavailable; with a server up but no JetStream quorum, a call ends at
// its ctx's deadline or the timeout. Never a hang.
func TestStoreUnavailable(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := clustertest.Connect(t, cluster.Options{
		Config:  config.Cluster{Node: "n", NATSURLs: []string{nc.URL(0)}},
		Timeout: 2 * time.Second,
	})
	s := openStore(t, c)
	if _, err := s.KVIncr(context.Background(), "k", 1, 0); err != nil {
		t.Fatal(err)
	}

	// Two of three servers gone: node 0 still answers, without a quorum.
	nc.Stop(1)
	nc.Stop(2)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.KVIncr(ctx, "k", 1, 0)
	if err == nil {
		t.Fatal("KVIncr without a JetStream quorum: no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("KVIncr without a quorum took %v; want about its ctx's 500ms", d)
	}
	t.Logf("no quorum: %v", err)
	// A read may still be answered (by a leader that has not yet noticed
	// it lost its quorum) or not, but within the 2s timeout.
	start = time.Now()
	_, _, err = s.KVGet("k", time.Now())
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("KVGet without a quorum took %v; want the 2s timeout", d)
	}
	t.Logf("KVGet without a quorum: %v", err)

	// Every server gone: the connection is down and calls fail at once.
	nc.Stop(0)
	if !waitFor(5*time.Second, func() bool { return !c.Connected() }) {
		t.Fatal("still connected 5s after the last server stopped")
	}
	start = time.Now()
	_, err = s.KVIncr(context.Background(), "k", 1, 0)
	if !errors.Is(err, cluster.ErrUnavailable) {
		t.Errorf("KVIncr while disconnected = %v; want ErrUnavailable", err)
	}
	if _, _, err := s.KVGet("k", time.Now()); !errors.Is(err, cluster.ErrUnavailable) {
		t.Errorf("KVGet while disconnected = %v; want ErrUnavailable", err)
	}
	if err := s.KVSet(context.Background(), "k", "v", 0); !errors.Is(err, cluster.ErrUnavailable) {
		t.Errorf("KVSet while disconnected = %v; want ErrUnavailable", err)
	}
	if err := s.KVDelete(context.Background(), "k"); !errors.Is(err, cluster.ErrUnavailable) {
		t.Errorf("KVDelete while disconnected = %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("four calls while disconnected took %v; want at once", d)
	}
}

// waitFor polls cond every 10ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// TestConnectWaitsForMetaLeader: a JetStream server whose cluster has no
// meta leader takes the connection but not JetStream's requests: Connect
// waits for it up to FormTimeout, logs that it waits, and then says why
// it gives up.
func TestConnectWaitsForMetaLeader(t *testing.T) {
	url := clustertest.StartAlone(t)
	var logs strings.Builder
	var mu sync.Mutex
	start := time.Now()
	_, err := cluster.Connect(context.Background(), cluster.Options{
		Config:  config.Cluster{Node: "n", NATSURLs: []string{url}},
		Timeout: time.Second, FormTimeout: 3 * time.Second,
		Log: slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil)),
	})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "its API did not answer in 3s: its servers have no meta leader") {
		t.Fatalf("Connect = %v; want it to say that JetStream has no meta leader", err)
	}
	if took < 3*time.Second || took > 6*time.Second {
		t.Errorf("Connect gave up after %v; want after FormTimeout, 3s", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "JetStream does not answer yet") {
		t.Errorf("the log does not say that Connect waits:\n%s", logs.String())
	}
}

// TestHeartbeatFailuresAreTransient: a heartbeat JetStream cannot take
// for the moment (no quorum for its stream; every server gone), or a read
// of the claim while disconnected, is Transient, which a node starting (gateway's reconcile) tries again
// instead of giving up; a cancelled one is not.
func TestHeartbeatFailuresAreTransient(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := clustertest.Connect(t, cluster.Options{
		Config:  config.Cluster{Node: "n", NATSURLs: []string{nc.URL(0)}},
		Timeout: time.Second,
	})
	nodes, err := c.OpenNodes(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	st := cluster.NodeStatus{Node: "n"}
	if err := nodes.Beat(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := nodes.Beat(cancelled, st); err == nil || cluster.Transient(err) {
		t.Errorf("Beat with its ctx cancelled = %v; want an error that is not Transient", err)
	}

	nc.Stop(1)
	nc.Stop(2)
	if err := nodes.Beat(context.Background(), st); err == nil || !cluster.Transient(err) {
		t.Errorf("Beat without a quorum = %v; want a Transient error", err)
	}
	nc.Stop(0)
	if !waitFor(5*time.Second, func() bool { return !c.Connected() }) {
		t.Fatal("still connected 5s after the last server stopped")
	}
	if err := nodes.Beat(context.Background(), st); err == nil || !cluster.Transient(err) {
		t.Errorf("Beat while disconnected = %v; want a Transient error", err)
	}
	if _, _, err := nodes.ClaimOn(context.Background(), "n"); err == nil || !cluster.Transient(err) {
		t.Errorf("ClaimOn while disconnected = %v; want a Transient error", err)
	}
	if cluster.Transient(errors.New("nats: invalid subject")) {
		t.Error("Transient(an error of the request itself) = true")
	}
}
