package gateway_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
)

// onLog is a slog.Handler that runs do (once) when a record with the
// message msg is logged, before passing it on: a test's hook on a step of
// the gateway's start.
type onLog struct {
	slog.Handler
	msg  string
	once *sync.Once
	do   func()
}

func (h onLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(h.do)
	}
	return h.Handler.Handle(ctx, r)
}

func (h onLog) WithAttrs(as []slog.Attr) slog.Handler {
	return onLog{Handler: h.Handler.WithAttrs(as), msg: h.msg, once: h.once, do: h.do}
}

func (h onLog) WithGroup(name string) slog.Handler {
	return onLog{Handler: h.Handler.WithGroup(name), msg: h.msg, once: h.once, do: h.do}
}

// TestClusterLateClaimIsWaitedFor: a node whose start cannot reach
// JetStream for a while (its only NATS server is down; reconcile tries
// again every second) is silent meanwhile, and another node claims its
// queue and starts taking it over. When the node reaches JetStream again
// and sees the takeover under way, it waits for it up to twice
// takeover_after from then, as for a claim seen at once and as a running
// node's heartbeats do; it waited only until twice takeover_after from
// its start, which the retries had mostly used up, and started a few
// seconds later keeping what the taker went on importing (review14b).
func TestClusterLateClaimIsWaitedFor(t *testing.T) {
	const takeoverAfter = 10 * time.Second
	nc := clustertest.Start(t, 3)
	hcl := clusterConfig("gw1", nc.URLs()[:1], `admin { address = "127.0.0.1:0" }`, `takeover_after = "10s"`)
	path, cfg := loadConfig(t, hcl)
	queueTwoAndStop(t, cfg) // a restart: gw1 comes back at once

	taker := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "taker", NATSURLs: nc.URLs()[1:]}})
	nodes, err := taker.OpenNodes(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}

	// gw1 starts again; its only server stops right before reconcile.
	logs := &gatewaytest.Log{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of gw1 back:\n%s", logs.String())
		}
	})
	cfg, err = config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := onLog{Handler: slog.NewTextHandler(logs, nil), msg: "queue replicated on NATS JetStream",
		once: &sync.Once{}, do: func() { nc.Stop(0) }}
	started := make(chan *gateway.Gateway, 1)
	go func() {
		g, err := gateway.New(context.Background(), cfg, gateway.Options{Resolver: []string{"127.0.0.1:9"}, Log: slog.New(h)})
		if err != nil {
			t.Logf("gw1 back: %v", err)
		}
		started <- g
	}()
	var back *gateway.Gateway
	t.Cleanup(func() {
		if back == nil {
			back = <-started
		}
		if back != nil {
			back.Close()
		}
	})
	if !logs.Wait(20*time.Second, "JetStream did not answer at start") {
		t.Fatal("gw1 back does not say that JetStream did not answer")
	}

	// gw1 is silent for longer than takeover_after: the taker claims its
	// queue, and takes it over (it has imported nothing yet).
	silent := gatewaytest.Eventually(30*time.Second, func() bool {
		list, err := nodes.List(context.Background())
		if err != nil {
			return false
		}
		for _, n := range list {
			if n.Node == "gw1" {
				return time.Since(n.Heartbeat) > takeoverAfter
			}
		}
		return false
	})
	if !silent {
		t.Fatal("gw1's heartbeat not older than takeover_after")
	}
	claim := cluster.Claim{Node: "gw1", By: "taker", At: time.Now()}
	var won bool
	if !gatewaytest.Eventually(10*time.Second, func() bool { won, err = nodes.TryClaim(context.Background(), &claim); return err == nil }) || !won {
		t.Fatalf("TryClaim = %v, %v", won, err)
	}

	// gw1's server is back a few seconds later, while the takeover goes on.
	time.Sleep(3 * time.Second)
	nc.Restart(0)
	var seen time.Time
	for deadline := time.Now().Add(20 * time.Second); seen.IsZero(); time.Sleep(50 * time.Millisecond) {
		select {
		case back = <-started:
			t.Fatal("gw1 started without ever waiting for the takeover under way")
		default:
		}
		if logs.Wait(0, "waiting for it to finish before delivering") {
			seen = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("gw1 neither started nor said it waits, 20 s after its server came back")
		}
	}
	select {
	case back = <-started:
		t.Fatalf("gw1 started %v after it first saw the takeover under way (claim not done, its taker alive); "+
			"want it to wait for it (up to twice takeover_after, %v), as for a claim seen at start",
			time.Since(seen).Round(100*time.Millisecond), 2*takeoverAfter)
	case <-time.After(takeoverAfter):
	}

	// The taker is done: gw1 starts.
	if err := nodes.ClaimDone(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	select {
	case back = <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("gw1 did not start 15 s after the takeover was done")
	}
}
