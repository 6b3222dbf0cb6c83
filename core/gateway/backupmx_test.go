package gateway_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestBackupMX: the gateway is MX 20 of bk.test, whose MX 10 (another
// gateway, on 127.0.0.2 at the same port) is down, and MX 10 of best.test,
// for which it has no route (issue 10). Nothing is delivered to ourselves:
// bk.test waits for its primary, best.test is deferred with 4.4.6 saying
// the domain needs a route. When the primary is up, ETRN at once (within
// the dead-host TTL of the failed connect) delivers bk.test's copy there,
// exactly once.
func TestBackupMX(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dns := resolvertest.Start(t, `
bk.test.      IN MX 10 mx1.bk.test.
bk.test.      IN MX 20 mx2.bk.test.
best.test.    IN MX 10 mx2.bk.test.
mx1.bk.test.  IN A 127.0.0.2
mx2.bk.test.  IN A 127.0.0.1
`)
	g := gatewaytest.Start(t, fmt.Sprintf(`
hostname = "gw.test"
listener "mx" { address = "127.0.0.1:%d" }
domains = ["bk.test"]
relay { networks = ["127.0.0.1/32"] }
delivery {
  resolver = %q
  port     = %d
  retry    = ["1h"]
}
`, port, dns.Addr(), port))
	smtptest.Run(t, g.Addr(t, "mx"), `
		S: 220 *
		C: HELO client.test
		S: 250 *
		C: MAIL FROM:<alice@client.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<bob@bk.test>
		S: 250 2.1.5 Ok
		C: RCPT TO:<carol@best.test>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: backup
		C:
		C: Keep me.
		C: .
		S: 250 2.0.0 Ok: queued as *
		C: QUIT
		S: 221 2.0.0 Bye
	`)
	if !gatewaytest.Eventually(10*time.Second, func() bool { return g.Engine().Stats().Deferred >= 2 }) {
		t.Fatalf("not both recipients deferred: %+v", g.Engine().Stats())
	}
	if !g.Log().Wait(time.Second, "best.test loops back to myself") || !g.Log().Wait(time.Second, "needs a route") {
		t.Errorf("no log line says best.test needs a route")
	}
	if q := g.Queued(t); len(q) != 1 {
		t.Fatalf("%d messages queued, want 1 (nothing delivered to ourselves)", len(q))
	}

	primary := gatewaytest.Start(t, fmt.Sprintf(`
hostname = "mx1.bk.test"
listener "mx" { address = "127.0.0.2:%d" }
domains = ["bk.test"]
delivery {
  route "bk.test" {
    transport = "maildir"
    path      = "mail"
  }
}
`, port))
	smtptest.Run(t, g.Addr(t, "mx"), `
		S: 220 *
		C: HELO client.test
		S: 250 *
		C: ETRN bk.test
		S: 253 2.0.0 OK, 1 pending messages for node bk.test started
		C: QUIT
		S: 221 2.0.0 Bye
	`)
	newDir := filepath.Join(filepath.Dir(primary.Path), "mail", "bk.test", "bob", "new")
	delivered := func() int { files, _ := os.ReadDir(newDir); return len(files) }
	if !gatewaytest.Eventually(5*time.Second, func() bool { return delivered() == 1 }) {
		t.Fatalf("MX 10 has %d messages after ETRN, want 1; stats %+v", delivered(), g.Engine().Stats())
	}
	// The backup records its delivery after the primary has the file.
	if !gatewaytest.Eventually(5*time.Second, func() bool { return g.Engine().Stats().Delivered == 1 }) {
		t.Errorf("stats %+v, want 1 delivered", g.Engine().Stats())
	}
	time.Sleep(100 * time.Millisecond)
	if n := delivered(); n != 1 {
		t.Errorf("MX 10 has %d messages, want exactly 1", n)
	}
}
