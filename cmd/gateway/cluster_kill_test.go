package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
)

// freeAddr is a loopback address nothing listens on now, for a sink that
// starts later.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// sendSeq sends one message with X-Seq: seq to addr and reports whether
// it got a 250.
func sendSeq(t *testing.T, addr, seq string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "load.test"})
	if err != nil {
		return false
	}
	defer c.Close()
	env := &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "load.test"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "r", Domain: "remote.test"}}}}
	res, err := c.Send(ctx, env, strings.NewReader("X-Seq: "+seq+"\r\nSubject: takeover\r\n\r\nbody\r\n"))
	return err == nil && res.Data.Code == 250
}

// TestClusterKillTakeover: two `gateway serve` processes on a 3-node NATS
// cluster, the next hop down; 20 messages to each; gw1 is killed with
// SIGKILL; the next hop comes up: every acknowledged message arrives,
// gw1's through gw2 once takeover_after has passed. gw1 restarted on its
// spool delivers nothing more. Duplicates are allowed and reported.
func TestClusterKillTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	nc := clustertest.Start(t, 3)
	next := freeAddr(t)
	conf := func(node string) string {
		return writeConfig(t, t.TempDir(), fmt.Sprintf(`
delivery {
  route "*" { via = %q }
  retry         = ["500ms"]
  dead_host_ttl = "500ms"
}
admin { address = "127.0.0.1:0" }
cluster {
  node           = %q
  nats_urls      = ["%s"]
  replicas       = 3
  takeover_after = "2s"
}
`, next, node, strings.Join(nc.URLs(), `", "`)))
	}
	cfg1 := conf("gw1")
	gw1 := startGateway(t, "serve", "-config", cfg1)
	gw2 := startGateway(t, "serve", "-config", conf("gw2"))

	acked := map[string]bool{}
	for i := range 40 {
		node, addr := "gw1", gw1.addr
		if i%2 == 1 {
			node, addr = "gw2", gw2.addr
		}
		if seq := fmt.Sprintf("%s-%d", node, i); sendSeq(t, addr, seq) {
			acked[seq] = true
		}
	}
	gw1.cmd.Process.Signal(syscall.SIGKILL)
	gw1.cmd.Wait()

	sinkDir := t.TempDir()
	startGateway(t, "sink", "--listen", next, "--save", sinkDir)
	var got map[string]int
	delivered := func() bool {
		got = seqCounts(t, sinkDir)
		for seq := range acked {
			if got[seq] == 0 {
				return false
			}
		}
		return true
	}
	if !eventually(30*time.Second, delivered) {
		var missing []string
		for seq := range acked {
			if got[seq] == 0 {
				missing = append(missing, seq)
			}
		}
		t.Fatalf("%d of %d acknowledged messages never arrived: %v\ngw2's log:\n%s", len(missing), len(acked), missing, gw2.stderr.String())
	}
	files := len(savedFiles(t, sinkDir))
	t.Logf("%d acknowledged (of 40), all delivered; %d files, %d duplicates", len(acked), files, files-len(acked))

	back := startGateway(t, "serve", "-config", cfg1)
	if !eventually(5*time.Second, func() bool { return len(queueList(t, back.adminAddr(t))) == 0 }) {
		t.Errorf("gw1 back with %d messages queued; want none", len(queueList(t, back.adminAddr(t))))
	}
	time.Sleep(time.Second) // a retry interval of gw1's, were it delivering
	if n := len(savedFiles(t, sinkDir)); n != files {
		t.Errorf("gw1 back delivered %d more messages; want none", n-files)
	}
}
