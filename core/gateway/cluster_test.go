package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// rateScript is relay.lua's rate limit on the durable store: 10 messages
// per client and minute, the rest deferred as relay.lua defers them.
const rateScript = `
function on_mail(ctx)
  local n = gw.kv.incr("rate/" .. ctx.conn.ip, 1, 60)
  if n > 10 then
    return gw.defer(450, "4.7.1", "Rate limit exceeded, try later")
  end
  return gw.continue()
end
`

// rateHook is the lua block of rateScript, which must be beside the
// config as rate.lua.
const rateHook = `
lua "rate" {
  path    = "rate.lua"
  timeout = "5s"
  match { stage = ["mail"] }
}
`

// clusterConfig is a gateway.hcl of node on the NATS servers urls, with
// top (a lua block, an admin block) at the top level, more lines in the
// cluster block, and a next hop that does not answer (mail stays queued).
func clusterConfig(node string, urls []string, top string, more ...string) string {
	return fmt.Sprintf(`
hostname = "mx.test"
shutdown_timeout = "5s"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
%s
cluster {
  node      = %q
  nats_urls = ["%s"]
  replicas  = 3
  %s
}
%s`, top, node, strings.Join(urls, `", "`), strings.Join(more, "\n  "), gatewaytest.DeadRoute)
}

// startClusterNode runs a gateway of clusterConfig, with rateScript
// beside it.
func startClusterNode(t *testing.T, node string, urls []string, hook string) *gatewaytest.Gateway {
	t.Helper()
	path := gatewaytest.WriteConfig(t, clusterConfig(node, urls, hook))
	writeFile(t, filepath.Dir(path), "rate.lua", rateScript)
	return gatewaytest.StartFile(t, path)
}

// TestClusterRateLimit: two gateways on one NATS cluster share the rate
// counter, so a client that alternates between them gets exactly the 10
// messages a minute the script allows, and the 11th its 450 4.7.1: with
// a counter in the durable store (gw.kv), and with scripts/relay.lua as
// shipped, whose counter is in the ephemeral store.
func TestClusterRateLimit(t *testing.T) {
	relay, err := filepath.Abs("../../scripts/relay.lua")
	if err != nil {
		t.Fatal(err)
	}
	hooks := map[string]string{
		"durable": rateHook,
		"relay.lua": fmt.Sprintf(`
lua "relay" {
  path    = %q
  timeout = "5s"
  params  = { rate = { limit = 10, per = 60 } }
  match { stage = ["mail", "rcpt"] }
}
`, relay),
	}
	for name, hook := range hooks {
		t.Run(name, func(t *testing.T) {
			nc := clustertest.Start(t, 3)
			nodes := []*gatewaytest.Gateway{
				startClusterNode(t, "gw1", []string{nc.URL(0)}, hook),
				startClusterNode(t, "gw2", []string{nc.URL(1)}, hook),
			}
			checkRateLimit(t, nodes)
		})
	}
}

// checkRateLimit sends 11 messages, one to each of nodes in turn: the
// first 10 are queued, the 11th is deferred with 450 4.7.1.
func checkRateLimit(t *testing.T, nodes []*gatewaytest.Gateway) {
	t.Helper()
	for i := range 11 {
		g := nodes[i%len(nodes)]
		err := sendOne(t, g.Addr(t, "mx"))
		var r smtp.Reply
		switch {
		case i < 10 && err != nil:
			t.Errorf("message %d via %s: %v; want accepted", i+1, g.Config.Cluster.Node, err)
		case i == 10 && !errors.As(err, &r):
			t.Errorf("message 11 via %s: %v; want the script's 450 4.7.1", g.Config.Cluster.Node, err)
		case i == 10 && (r.Code != 450 || r.Enhanced != [3]uint16{4, 7, 1}):
			t.Errorf("message 11 via %s: %v; want 450 4.7.1", g.Config.Cluster.Node, r)
		}
	}
	for _, g := range nodes {
		if n := len(g.Queued(t)); n != 5 {
			t.Errorf("%s queued %d messages; want 5", g.Config.Cluster.Node, n)
		}
	}
}

// sendOne sends one message from a@client.test to b@example.test.
func sendOne(t *testing.T, addr string) error {
	t.Helper()
	return sendTo(t, addr, envelope.Address{Local: "b", Domain: "example.test"})
}

// sendTo sends one message to rcpts through addr.
func sendTo(t *testing.T, addr string, rcpts ...envelope.Address) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test"})
	if err != nil {
		return err
	}
	defer c.Close()
	env := &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "client.test"}}
	for _, a := range rcpts {
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a})
	}
	if _, err := c.Send(ctx, env, strings.NewReader("Subject: rate\r\n\r\nHello.\r\n")); err != nil {
		return err
	}
	return c.Quit(ctx)
}

// TestClusterUnreachable: a gateway whose cluster block names no NATS
// server that answers does not start, and says why.
func TestClusterUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	path := gatewaytest.WriteConfig(t, clusterConfig("gw1", []string{url}, rateHook))
	writeFile(t, filepath.Dir(path), "rate.lua", rateScript)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Resolver: []string{"127.0.0.1:9"}})
	if err == nil {
		g.Close()
		t.Fatal("New with an unreachable NATS: no error")
	}
	if want := "cluster: connect to " + url; !strings.Contains(err.Error(), want) {
		t.Errorf("New: %v; want it to say %q", err, want)
	}
}

// TestClusterReplicatesBefore250: a message a node answers 250 for has
// its copy on the queue's stream, under that node; with every NATS server
// gone the node answers 451 4.3.0 and queues nothing.
func TestClusterReplicatesBefore250(t *testing.T) {
	nc := clustertest.Start(t, 3)
	g := startClusterNode(t, "gw1", nc.URLs(), `admin { address = "127.0.0.1:0" }`)
	admin := "http://" + g.Addr(t, "admin")
	checkHTTP(t, admin+"/healthz", 200, `{"status":"ok"}`)
	if err := sendOne(t, g.Addr(t, "mx")); err != nil {
		t.Fatal(err)
	}
	checkHTTP(t, admin+"/v1/cluster", 200, `"node":"gw1","connected":true,"copies_pending":0,"copies":1,"copy_failures":0`)
	checkHTTP(t, admin+"/v1/cluster", 200, `"nodes":[{"node":"gw1"`)
	queued := g.Queued(t)
	if len(queued) != 1 {
		t.Fatalf("%d messages queued; want 1", len(queued))
	}
	reader := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "reader", NATSURLs: nc.URLs()}})
	var ids []string
	err := reader.Copies(context.Background(), "gw1", func(cp cluster.Copy) bool {
		ids = append(ids, cp.ID)
		return true
	})
	if err != nil || len(ids) != 1 || ids[0] != queued[0].ID {
		t.Errorf("copies of gw1: %v, %v; want [%s]", ids, err, queued[0].ID)
	}

	nc.StopAll()
	err = sendOne(t, g.Addr(t, "mx"))
	var r smtp.Reply
	if !errors.As(err, &r) || r.Code != 451 || r.Enhanced != [3]uint16{4, 3, 0} {
		t.Errorf("with NATS gone: %v; want 451 4.3.0", err)
	}
	if n := len(g.Queued(t)); n != 1 {
		t.Errorf("%d messages queued; want still 1", n)
	}
	checkHTTP(t, admin+"/healthz", 503, `{"reason":"not connected to NATS: new mail is answered 451 4.3.0 until it is","status":"unavailable"}`)
	checkHTTP(t, admin+"/metrics", 200, "gateway_cluster_connected 0\n")
	checkHTTP(t, admin+"/metrics", 200, "gateway_cluster_copies_total 1\n")
	checkHTTP(t, admin+"/metrics", 200, "gateway_cluster_copy_failures_total 1\n")
}

// TestClusterNoQuorumUnhealthy: with two of three NATS servers gone the
// node is still connected (to the third), but JetStream has no quorum
// and takes no copy: new mail gets 451 4.3.0 and /healthz says 503 and
// why, so that a load balancer sends mail elsewhere.
func TestClusterNoQuorumUnhealthy(t *testing.T) {
	nc := clustertest.Start(t, 3)
	g := startClusterNode(t, "gw1", nc.URLs(), `admin { address = "127.0.0.1:0" }`)
	admin := "http://" + g.Addr(t, "admin")
	if err := sendOne(t, g.Addr(t, "mx")); err != nil {
		t.Fatal(err)
	}
	checkHTTP(t, admin+"/healthz", 200, `{"status":"ok"}`)
	nc.Stop(0)
	nc.Stop(1)
	err := sendOne(t, g.Addr(t, "mx"))
	var r smtp.Reply
	if !errors.As(err, &r) || r.Code != 451 || r.Enhanced != [3]uint16{4, 3, 0} {
		t.Fatalf("with no JetStream quorum: %v; want 451 4.3.0", err)
	}
	checkHTTP(t, admin+"/healthz", 503, `{"reason":"JetStream does not take writes (nats: `)
}

// checkHTTP GETs url and checks its status and that its body (compacted,
// when it is JSON) has want.
func checkHTTP(t *testing.T, url string, status int, want string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil {
		body = compact.Bytes()
	}
	if resp.StatusCode != status || !strings.Contains(string(body), want) {
		t.Errorf("GET %s: %d %s\nwant %d and %s", url, resp.StatusCode, body, status, want)
	}
}

// bodyHas reports whether a GET of url answers with a body that has want.
func bodyHas(url, want string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(body), want)
}

// takeoverConfig is a node of nc with takeover_after 2s, an admin API
// and the next hop down.
func takeoverConfig(node string, urls []string) string {
	return clusterConfig(node, urls, `admin { address = "127.0.0.1:0" }`, `takeover_after = "2s"`)
}

// TestClusterTakeover: when a node with queued mail goes silent, the
// other takes its messages over (its copies move to the other's queue and
// its stream copies go), and the silent node, back, has nothing left to
// deliver.
func TestClusterTakeover(t *testing.T) {
	nc := clustertest.Start(t, 3)
	path, cfg := loadConfig(t, takeoverConfig("gw1", nc.URLs()))
	gw1, stop := runStoppable(t, cfg)
	gw2 := gatewaytest.Start(t, takeoverConfig("gw2", nc.URLs()))

	addr := gw1.Addr("mx").String()
	for range 3 {
		if err := sendOne(t, addr); err != nil {
			t.Fatal(err)
		}
	}
	stop()

	if !gatewaytest.Eventually(15*time.Second, func() bool { return len(gw2.Queued(t)) == 3 }) {
		t.Fatalf("gw2 queued %d messages 15 s after gw1 went silent; want gw1's 3", len(gw2.Queued(t)))
	}
	reader := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "reader", NATSURLs: nc.URLs()}})
	count := func(node string) int {
		n := 0
		if err := reader.Copies(context.Background(), node, func(cluster.Copy) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if !gatewaytest.Eventually(5*time.Second, func() bool { return count("gw1") == 0 }) || count("gw2") != 3 {
		t.Errorf("copies: gw1 %d, gw2 %d; want 0 and 3", count("gw1"), count("gw2"))
	}

	checkHTTP(t, "http://"+gw2.Addr(t, "admin")+"/v1/cluster", 200, `"takeovers":1,"taken_over":3`)

	back := gatewaytest.StartFile(t, path)
	if q := back.Queued(t); len(q) != 0 {
		t.Errorf("gw1 back with %d messages queued; want none (gw2 took them)", len(q))
	}
}

// loadConfig writes hcl to a gateway.hcl and loads it.
func loadConfig(t *testing.T, hcl string) (string, *config.Config) {
	t.Helper()
	path := gatewaytest.WriteConfig(t, hcl)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// runStoppable runs the gateway of cfg until stop, which waits for it to
// stop: a node that goes silent in the middle of a test. Its log is
// printed when the test fails.
func runStoppable(t *testing.T, cfg *config.Config) (g *gateway.Gateway, stop func()) {
	t.Helper()
	logs := &gatewaytest.Log{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the gateway started by runStoppable:\n%s", logs.String())
		}
	})
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Resolver: []string{"127.0.0.1:9"},
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s stopped with %v", cfg.Cluster.Node, err)
		}
	}
	t.Cleanup(stop)
	return g, stop
}

// queueTwoAndStop runs the gateway of cfg, queues two messages on it
// (the next hop is down: they stay), stops it and returns their IDs.
func queueTwoAndStop(t *testing.T, cfg *config.Config) []string {
	t.Helper()
	gw, stop := runStoppable(t, cfg)
	for range 2 {
		if err := sendOne(t, gw.Addr("mx").String()); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	gw.Spool().List(func(m *queue.Message) bool { ids = append(ids, m.ID); return true })
	stop()
	return ids
}

// claimGW1 connects a node "taker" to urls and claims gw1's queue for it.
func claimGW1(t *testing.T, urls []string) (*cluster.Conn, *cluster.Nodes, cluster.Claim) {
	t.Helper()
	taker := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "taker", NATSURLs: urls}})
	nodes, err := taker.OpenNodes(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	claim := cluster.Claim{Node: "gw1", By: "taker", At: time.Now()}
	if won, err := nodes.TryClaim(context.Background(), &claim); !won || err != nil {
		t.Fatalf("TryClaim = %v, %v", won, err)
	}
	return taker, nodes, claim
}

// singleConfig is a gateway without a cluster block whose next hop is
// down: a node before the operator adds its cluster block.
func singleConfig() string {
	return fmt.Sprintf(`
hostname = "mx.test"
shutdown_timeout = "5s"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
%s`, gatewaytest.DeadRoute)
}

// TestClusterTakeoverKeepsDelivered: a node delivers one recipient of a
// message and defers the other, then goes silent; the node that takes
// the message over has the first recipient delivered already (the copy
// learnt it), so it delivers only to the second.
func TestClusterTakeoverKeepsDelivered(t *testing.T) {
	nc := clustertest.Start(t, 3)
	sink := &smtptest.MemorySpool{}
	sinkAddr, _ := smtptest.StartServer(t, smtp.Options{LocalDomains: []string{"live.test"}, Spool: sink})
	routes := fmt.Sprintf(`
delivery {
  route "live.test" { via = %q }
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}
`, sinkAddr)
	node := func(name string) string {
		c := strings.Replace(takeoverConfig(name, nc.URLs()), gatewaytest.DeadRoute, routes, 1)
		return strings.Replace(c, `domains = ["example.test"]`, `domains = ["example.test", "live.test"]`, 1)
	}
	_, cfg := loadConfig(t, node("gw1"))
	gw1, stop := runStoppable(t, cfg)
	err := sendTo(t, gw1.Addr("mx").String(), envelope.Address{Local: "bob", Domain: "live.test"},
		envelope.Address{Local: "carol", Domain: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	states := func(g *gateway.Gateway) []queue.Status {
		var out []queue.Status
		g.Spool().List(func(m *queue.Message) bool {
			for _, rs := range m.Recipients {
				out = append(out, rs.Status)
			}
			return true
		})
		return out
	}
	want := []queue.Status{queue.Delivered, queue.Deferred} // bob's, carol's
	if !gatewaytest.Eventually(10*time.Second, func() bool { return slices.Equal(states(gw1), want) }) || len(sink.Messages()) != 1 {
		t.Fatalf("gw1: bob not delivered and carol not deferred after 10 s (the sink has %d)", len(sink.Messages()))
	}
	// The copy learns bob's state after gw1's spool has stored it (Update
	// publishes once the change is durable): the count may come a moment
	// after the states.
	metrics := "http://" + gw1.Addr("admin").String() + "/metrics"
	gatewaytest.Eventually(5*time.Second, func() bool { return bodyHas(metrics, "gateway_cluster_state_updates_total 1\n") })
	checkHTTP(t, metrics, 200, "gateway_cluster_state_updates_total 1\n")
	stop()

	gw2 := gatewaytest.Start(t, node("gw2"))
	if !gatewaytest.Eventually(15*time.Second, func() bool { return len(gw2.Queued(t)) == 1 }) {
		t.Fatalf("gw2 queued %d messages 15 s after gw1 went silent; want gw1's 1", len(gw2.Queued(t)))
	}
	// Carol's deferral is not sent to the copy (only final states are):
	// she may be pending there.
	if got := states(gw2.Gateway); len(got) != 2 || got[0] != queue.Delivered || got[1] != queue.Pending && got[1] != queue.Deferred {
		t.Errorf("gw2 took the message over with its recipients %v; want bob delivered, carol pending or deferred", got)
	}
	if n := len(sink.Messages()); n != 1 {
		t.Errorf("the sink has %d messages; want gw1's 1", n)
	}
}

// TestClusterCutOffNodeDropsTaken: a node cut off from NATS (its only
// server stops) while the others are not has its queue taken over; when
// its server is back it drops, without a restart, every message that was
// taken, so that it does not deliver them too.
func TestClusterCutOffNodeDropsTaken(t *testing.T) {
	nc := clustertest.Start(t, 3)
	gw1 := gatewaytest.Start(t, takeoverConfig("gw1", nc.URLs()[:1]))
	gw2 := gatewaytest.Start(t, takeoverConfig("gw2", nc.URLs()[1:]))
	for range 3 {
		if err := sendOne(t, gw1.Addr(t, "mx")); err != nil {
			t.Fatal(err)
		}
	}
	nc.Stop(0)
	if !gatewaytest.Eventually(20*time.Second, func() bool { return len(gw2.Queued(t)) == 3 }) {
		t.Fatalf("gw2 queued %d messages 20 s after gw1 was cut off; want gw1's 3", len(gw2.Queued(t)))
	}
	if n := len(gw1.Queued(t)); n != 3 {
		t.Fatalf("gw1, cut off, has %d messages; want its 3 still", n)
	}
	nc.Restart(0)
	if !gatewaytest.Eventually(20*time.Second, func() bool { return len(gw1.Queued(t)) == 0 }) {
		t.Errorf("gw1 back on NATS still has %d messages; want none (gw2 took them)", len(gw1.Queued(t)))
	}
	if !gw1.Log().Wait(5*time.Second, "this node's queue was taken over while it was away") {
		t.Error("gw1's log does not say that its queue was taken over")
	}
}

// TestClusterBackWaitsForTakeover: a node that comes back while another
// is still taking its queue over (the claim is not done) waits for the
// takeover to finish before it starts, then drops what was taken; it
// does not deliver what the taker goes on importing.
func TestClusterBackWaitsForTakeover(t *testing.T) {
	nc := clustertest.Start(t, 3)
	path, cfg := loadConfig(t, takeoverConfig("gw1", nc.URLs()))
	ids := queueTwoAndStop(t, cfg)

	// A taker claims gw1's queue and has imported the first message so far.
	taker, nodes, claim := claimGW1(t, nc.URLs())
	theirs := taker.ReplicaOf("gw1")
	theirs.Remove(ids[0])
	theirs.Close()

	logs := &gatewaytest.Log{}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan *gateway.Gateway, 1)
	go func() {
		g, err := gateway.New(context.Background(), cfg, gateway.Options{Resolver: []string{"127.0.0.1:9"},
			Log: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Errorf("gw1 back: %v", err)
		}
		started <- g
	}()
	if !logs.Wait(10*time.Second, "waiting for it to finish before delivering") {
		t.Fatalf("gw1 back does not wait for the takeover:\n%s", logs.String())
	}
	select {
	case <-started:
		t.Fatal("gw1 started while the takeover was under way")
	case <-time.After(2 * time.Second):
	}
	// The taker imports the second message too, and is done.
	theirs = taker.ReplicaOf("gw1")
	theirs.Remove(ids[1])
	theirs.Close()
	if err := nodes.ClaimDone(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	var back *gateway.Gateway
	select {
	case back = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("gw1 did not start 10 s after the takeover was done")
	}
	if back == nil {
		return
	}
	defer back.Close()
	n := 0
	back.Spool().List(func(*queue.Message) bool { n++; return true })
	if n != 0 {
		t.Errorf("gw1 back has %d messages; want none (both were taken)", n)
	}
}

// TestClusterReclaimsHalfDoneTakeover: a takeover whose taker died half
// way (its claim not done, the taker silent) is taken up by another node,
// which imports what is left.
func TestClusterReclaimsHalfDoneTakeover(t *testing.T) {
	nc := clustertest.Start(t, 3)
	_, cfg := loadConfig(t, takeoverConfig("gw1", nc.URLs()))
	gw1, stop := runStoppable(t, cfg)
	for range 2 {
		if err := sendOne(t, gw1.Addr("mx").String()); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	ghost := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "ghost", NATSURLs: nc.URLs()}})
	nodes, err := ghost.OpenNodes(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if won, err := nodes.TryClaim(context.Background(), &cluster.Claim{Node: "gw1", By: "ghost", At: time.Now()}); !won || err != nil {
		t.Fatalf("TryClaim = %v, %v", won, err)
	}
	gw2 := gatewaytest.Start(t, takeoverConfig("gw2", nc.URLs()))
	if !gatewaytest.Eventually(15*time.Second, func() bool { return len(gw2.Queued(t)) == 2 }) {
		t.Fatalf("gw2 queued %d messages; want gw1's 2, taken up from the ghost's claim", len(gw2.Queued(t)))
	}
	if !gw2.Log().Wait(0, "was left half way; taking it up") {
		t.Error("gw2's log does not say that it took up a takeover left half way")
	}
	var c cluster.Claim
	var claimed bool
	done := gatewaytest.Eventually(5*time.Second, func() bool {
		c, claimed, err = nodes.ClaimOn(context.Background(), "gw1")
		return err == nil && claimed && c.By == "gw2" && c.Done
	})
	if !done {
		t.Errorf("claim on gw1: %+v, %v, %v; want gw2's, done", c, claimed, err)
	}
}

// TestClusterNATSNodeLostUnderLoad: one of three NATS servers stops while
// a gateway accepts mail from 4 senders: every message that got a 250
// has its copy on the stream, and the gateway goes on accepting (451s
// while its connection moves to another server, or while a stream elects
// a new leader, are allowed: never a 250 without a copy).
func TestClusterNATSNodeLostUnderLoad(t *testing.T) {
	nc := clustertest.Start(t, 3)
	g := startClusterNode(t, "gw1", nc.URLs(), "")
	addr := g.Addr(t, "mx")
	var mu sync.Mutex
	acked, refused := 0, 0
	send := func(n int) {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range n {
					err := sendOne(t, addr)
					mu.Lock()
					if err == nil {
						acked++
					} else {
						refused++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	done := make(chan struct{})
	go func() { defer close(done); send(25) }()
	time.Sleep(200 * time.Millisecond)
	nc.Stop(0) // the server gw1 may be connected to, or one of the others
	<-done
	// A stream whose leader was on the lost server is without one until
	// the others elect one (seconds): 451s meanwhile, then 250s again.
	back := gatewaytest.Eventually(20*time.Second, func() bool {
		err := sendOne(t, addr)
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			acked++
		} else {
			refused++
		}
		return err == nil
	})
	before := acked
	send(5)
	if !back || acked-before < 15 {
		t.Errorf("after a NATS server stopped, %d of 20 messages accepted; want it to go on accepting", acked-before)
	}

	reader := clustertest.Connect(t, cluster.Options{Config: config.Cluster{Node: "reader", NATSURLs: nc.URLs()[1:]}})
	// A refused message's copy (its parts acknowledged after the wait
	// gave up) goes once its removal, retried every second, gets through.
	copies := 0
	gatewaytest.Eventually(10*time.Second, func() bool {
		copies = 0
		if err := reader.Copies(context.Background(), "gw1", func(cluster.Copy) bool { copies++; return true }); err != nil {
			t.Fatal(err)
		}
		return copies == acked
	})
	queued := len(g.Queued(t))
	t.Logf("%d accepted, %d refused; %d queued, %d copies", acked, refused, queued, copies)
	if queued != acked || copies != acked {
		t.Errorf("%d messages got a 250, %d are queued and %d have copies; want all three equal", acked, queued, copies)
	}
}
