package gateway_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestOutageParksNewMail: once the next hop of down.test refuses
// connections, a message accepted for it is queued parked, with no
// attempt of its own: an hour away, its recipient's last reply saying
// why. When the next hop is back, a flush of the domain delivers it and
// the message that found the domain down.
func TestOutageParksNewMail(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hop := ln.Addr().String()
	ln.Close() // nothing listens there until the test starts its sink
	g := gatewaytest.Start(t, fmt.Sprintf(`
hostname = "gw.test"
listener "mx" { address = "127.0.0.1:0" }
relay { networks = ["127.0.0.1/32"] }
delivery {
  route "*" { via = %q }
  retry = ["1h"]
}
`, hop))

	send(t, g, "bob@down.test")
	first := waitQueued(t, g, 1)[0]
	if !gatewaytest.Eventually(10*time.Second, func() bool {
		m, err := g.Spool().Get(first)
		return err == nil && m.Recipients[0].Attempts == 1
	}) {
		t.Fatal("the first message was not tried")
	}

	send(t, g, "carol@down.test")
	second := waitQueued(t, g, 2)[1]
	m, err := g.Spool().Get(second)
	if err != nil {
		t.Fatal(err)
	}
	rs := m.Recipients[0]
	if rs.Attempts != 0 || rs.Status != queue.Pending || !strings.HasPrefix(rs.LastReply, "not tried: down.test reached no server since ") {
		t.Errorf("the message accepted while down.test is down: recipient %+v; want pending, not tried, and why", rs)
	}
	if wait := time.Until(m.NextAttempt); wait < 55*time.Minute {
		t.Errorf("its first attempt is in %v; want about an hour", wait)
	}

	sink := &smtptest.MemorySpool{}
	startSink(t, hop, sink, nil)
	if _, err := g.Engine().RetryDomain(context.Background(), "down.test"); err != nil {
		t.Fatal(err)
	}
	if !gatewaytest.Eventually(10*time.Second, func() bool { return len(sink.Messages()) == 2 && g.Spool().Len() == 0 }) {
		t.Errorf("after the flush: %d messages at the next hop, %d queued; want 2 and 0", len(sink.Messages()), g.Spool().Len())
	}
}

// waitQueued waits until the gateway's queue holds n messages and returns
// their IDs, oldest first.
func waitQueued(t *testing.T, g *gatewaytest.Gateway, n int) []string {
	t.Helper()
	var ids []string
	gatewaytest.Eventually(10*time.Second, func() bool {
		ids = ids[:0]
		for _, m := range g.Queued(t) {
			ids = append(ids, m.ID)
		}
		return len(ids) == n
	})
	if len(ids) != n {
		t.Fatalf("%d messages queued; want %d", len(ids), n)
	}
	return ids
}
