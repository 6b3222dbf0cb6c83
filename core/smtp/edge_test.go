package smtp_test

// Transcripts of what an attacker tries at the edge (issue 9): each case
// failed before its fix.

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// A Kelvin sign (U+212A) lower-cases to "k" under Unicode rules: the
// domain "\u212Aiosk.test" must not count as the local domain kiosk.test.
func TestLocalDomainFoldsASCIIOnly(t *testing.T) {
	addr, spool, _ := start(t, func(o *smtp.Options) { o.LocalDomains = []string{"kiosk.test"} })
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net> SMTPUTF8
		S: 250 2.1.0 Ok
		C: RCPT TO:<user@`+"\u212A"+`iosk.test>
		S: 550 5.7.1 Relay access denied
		C: RCPT TO:<user@`+"\u212A"+`IOSK.TEST>
		S: 550 5.7.1 Relay access denied
		C: RCPT TO:<user@KIOSK.test>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	rcpts := wantMessages(t, spool, 1)[0].Envelope.Recipients
	if len(rcpts) != 1 || rcpts[0].Address.Domain != "KIOSK.test" {
		t.Errorf("recipients %v, want only user@KIOSK.test", rcpts)
	}
}

// RCPT TO:<postmaster> from anyone reaches this host's postmaster (RFC 5321
// §4.5.1), never an address without a domain that delivery would route
// like any domain and bounce, with the client's message, to whatever MAIL
// FROM named. NOTIFY becomes NEVER so that no failure reflects the
// message to that sender.
func TestPostmaster(t *testing.T) {
	for _, tc := range []struct {
		name       string
		postmaster envelope.Address
		rcpt       string
		want       envelope.Address
	}{
		{"hostname", envelope.Address{}, "<postmaster>", envelope.Address{Local: "postmaster", Domain: "mx.test"}},
		{"any case", envelope.Address{}, "<PostMaster> NOTIFY=SUCCESS,FAILURE", envelope.Address{Local: "postmaster", Domain: "mx.test"}},
		{"configured", envelope.Address{Local: "hostmaster", Domain: "corp.test"}, "<POSTMASTER>", envelope.Address{Local: "hostmaster", Domain: "corp.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []envelope.Address
			var mu sync.Mutex
			addr, spool, _ := start(t, func(o *smtp.Options) {
				o.Postmaster = tc.postmaster
				o.RelayNetworks = nil
				o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
					if req.Stage == sdk.StageRcpt {
						mu.Lock()
						seen = append(seen, req.Rcpt.Address)
						mu.Unlock()
					}
					return sdk.Decision{}, sdk.Effects{}
				})
			})
			smtptest.Run(t, addr, hello+`
				C: MAIL FROM:<victim@victim.test>
				S: 250 2.1.0 Ok
				C: RCPT TO:`+tc.rcpt+`
				S: 250 2.1.5 Ok
				C: RCPT TO:<postmaster>
				S: 250 2.1.5 Ok
				C: DATA
				S: 354 End data with <CR><LF>.<CR><LF>
				C: Subject: cheap pills
				C:
				C: Buy now.
				C: .
				S: 250 2.0.0 Ok: queued as M0001
			`)
			m := wantMessages(t, spool, 1)[0]
			want := []envelope.Recipient{{Address: tc.want, Notify: envelope.NotifyNever}}
			if diff := cmp.Diff(want, m.Envelope.Recipients); diff != "" {
				t.Errorf("recipients (-want +got):\n%s", diff)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff([]envelope.Address{tc.want, tc.want}, seen); diff != "" {
				t.Errorf("the rcpt hook saw (-want +got):\n%s", diff)
			}
			if want := "\tfor <" + tc.want.String() + ">; "; !strings.Contains(string(m.Header), want) {
				t.Errorf("Received %q does not name %q", m.Header, want)
			}
		})
	}
}

// The EHLO name goes into the Received field as it is only when it is a
// domain or an address literal; anything else goes into a comment that it
// cannot end, so a client cannot forge trace.
func TestReceivedHELO(t *testing.T) {
	for _, tc := range []struct{ helo, from string }{
		{"client.test", "from client.test ([127.0.0.1])"},
		{"[127.0.0.1]", "from [127.0.0.1] ([127.0.0.1])"},
		{"[IPv6:2001:db8::1]", "from [IPv6:2001:db8::1] ([127.0.0.1])"},
		{"evil.test) by trusted.example.test (gateway) with ESMTPSA id fake;",
			"from [127.0.0.1] (helo=evil.test??by?trusted.example.test??gateway??with?ESMTPSA?id?fake?)"},
		{"DESKTOP_42", "from [127.0.0.1] (helo=DESKTOP_42)"},
		{"client.test.", "from [127.0.0.1] (helo=client.test.)"},
		{"bücher.test", "from [127.0.0.1] (helo=b??cher.test)"},
		{"a\\b\"c<d>@e\x7f", "from [127.0.0.1] (helo=a?b?c?d??e?)"},
		{strings.Repeat("x", 300), "from [127.0.0.1] (helo=" + strings.Repeat("x", 255) + ")"},
	} {
		t.Run(tc.helo[:min(len(tc.helo), 20)], func(t *testing.T) {
			addr, spool, _ := start(t, nil)
			smtptest.Run(t, addr, greeting+`
				C: HELO `+tc.helo+`
				S: 250 mx.test
				C: MAIL FROM:<a@example.net>
				S: 250 2.1.0 Ok
				C: RCPT TO:<b@example.org>
				S: 250 2.1.5 Ok
				C: DATA
				S: 354 End data with <CR><LF>.<CR><LF>
				C: .
				S: 250 2.0.0 Ok: queued as M0001
			`)
			m := wantMessages(t, spool, 1)[0]
			first, _, _ := strings.Cut(string(m.Header), "\r\n")
			if want := "Received: " + tc.from; first != want {
				t.Errorf("got  %q\nwant %q", first, want)
			}
			if m.Envelope.ClientHELO != tc.helo {
				t.Errorf("ClientHELO %q, want %q as given", m.Envelope.ClientHELO, tc.helo)
			}
		})
	}
}

// A client may not hold a connection slot forever with commands that move
// no mail: after 100 of them since the start or the last message, 421 and
// close.
func TestJunkCommandLimit(t *testing.T) {
	t.Run("NOOP", func(t *testing.T) {
		addr, _, _ := start(t, nil)
		// EHLO was the first.
		smtptest.Run(t, addr, hello+strings.Repeat("C: NOOP\nS: 250 2.0.0 Ok\n", 98)+`
			C: NOOP
			C: NOOP
			S: 250 2.0.0 Ok
			S: 421 4.7.0 mx.test Too many commands, closing connection
			EOF
		`)
	})
	t.Run("mixed", func(t *testing.T) {
		addr, _, _ := start(t, nil)
		smtptest.Run(t, addr, hello+strings.Repeat(`
			C: RSET
			S: 250 2.0.0 Ok
			C: VRFY root
			S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
			C: HELP
			S: 214 2.0.0 See RFC 5321
		`, 33)+`
			C: NOOP
			C: MAIL FROM:<a@example.net>
			C: RSET
			S: 421 4.7.0 mx.test Too many commands, closing connection
			EOF
		`)
	})
	t.Run("a message starts the count again", func(t *testing.T) {
		addr, _, _ := start(t, nil)
		smtptest.Run(t, addr, hello+strings.Repeat("C: NOOP\nS: 250 2.0.0 Ok\n", 99)+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<b@example.org>
			S: 250 2.1.5 Ok
			C: DATA
			S: 354 End data with <CR><LF>.<CR><LF>
			C: .
			S: 250 2.0.0 Ok: queued as M0001
		`+strings.Repeat("C: RSET\nS: 250 2.0.0 Ok\n", 100)+`
			C: QUIT
			S: 221 2.0.0 Bye
			EOF
		`)
	})
}

// A full disk is refused at MAIL with 452 4.3.1, not after the data with
// 451 4.3.0: the declared SIZE and a reserve of 1.5 × max_message_size
// (15360 bytes here) must fit in the spool's free space.
func TestFreeSpaceAtMAIL(t *testing.T) {
	var free atomic.Int64
	var fail atomic.Bool
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.FreeSpace = func() (int64, error) {
			if fail.Load() {
				return 0, errors.New("statfs: no such file or directory")
			}
			return free.Load(), nil
		}
	})
	free.Store(15360 + 1000)
	c := smtptest.Dial(t, addr)
	c.Run(hello + `
		C: MAIL FROM:<a@example.net> SIZE=1001
		S: 452 4.3.1 Insufficient system storage
		C: MAIL FROM:<a@example.net> SIZE=1000
		S: 250 2.1.0 Ok
		C: RSET
		S: 250 2.0.0 Ok
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RSET
		S: 250 2.0.0 Ok
	`)
	free.Store(15359)
	c.Run(`
		C: MAIL FROM:<a@example.net>
		S: 452 4.3.1 Insufficient system storage
	`)
	free.Store(0)
	c.Run(`
		C: MAIL FROM:<a@example.net> SIZE=1000000
		S: 552 5.3.4 Message size exceeds fixed maximum message size
		C: MAIL FROM:<a@example.net> SIZE=10
		S: 452 4.3.1 Insufficient system storage
	`)
	fail.Store(true) // a look-up that fails lets the mail through
	c.Run(`
		C: MAIL FROM:<a@example.net> SIZE=10
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	wantMessages(t, spool, 1)

	// Without a maximum, the reserve is 64 MiB, and no SIZE overflows.
	addr, _, _ = start(t, func(o *smtp.Options) {
		o.Listener.MaxMessageSize = 0
		o.FreeSpace = func() (int64, error) { return 64<<20 + 10, nil }
	})
	smtptest.Run(t, addr, greeting+`
		C: EHLO client.test
		S~ 250[- ].*
		S~ 250[- ].*
		S~ 250[- ].*
		S~ 250[- ].*
		S~ 250[- ].*
		S~ 250[- ].*
		S~ 250[- ].*
		S~ 250[- ].*
		S: 250 DSN
		C: MAIL FROM:<a@example.net> SIZE=9223372036854775807
		S: 452 4.3.1 Insufficient system storage
		C: MAIL FROM:<a@example.net> SIZE=11
		S: 452 4.3.1 Insufficient system storage
		C: MAIL FROM:<a@example.net> SIZE=10
		S: 250 2.1.0 Ok
	`)
}

// serveFrom runs a session of srv on a pipe as if from client and returns
// the client's end with the first line the server sent.
func serveFrom(t *testing.T, srv *smtp.Server, client string) (net.Conn, string) {
	t.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeConn(s, netip.MustParseAddrPort(client), "")
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	c.SetReadDeadline(time.Now().Add(smtptest.DefaultTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("from %s: %v", client, err)
	}
	return c, strings.TrimSuffix(line, "\r\n")
}

// max_connections_per_ip counts an IPv6 client by its /64, which is all
// its own: per address, one client would have 2^64 slots.
func TestConnectionLimitPerIPv6Prefix(t *testing.T) {
	_, _, srv := start(t, func(o *smtp.Options) { o.Listener.MaxConnectionsPerIP = 1 })
	const ready, full = "220 mx.test ESMTP ready", "421 4.7.0 mx.test Too many connections, try again later"
	for _, tc := range []struct{ client, want string }{
		{"[2001:db8:1:2::1]:1000", ready},
		{"[2001:db8:1:2::2]:1000", full},
		{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:1000", full},
		{"[2001:db8:1:3::1]:1000", ready},
		{"192.0.2.1:1000", ready},
		{"192.0.2.2:1000", ready},
		{"192.0.2.1:1001", full},
		{"[::ffff:192.0.2.3]:1000", ready},
		{"[::ffff:192.0.2.4]:1000", ready},
	} {
		if _, got := serveFrom(t, srv, tc.client); got != tc.want {
			t.Errorf("from %s: %q, want %q", tc.client, got, tc.want)
		}
	}
}

// logBuffer collects a server's log lines for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines logged so far at level that contain s.
func (b *logBuffer) lines(level, s string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for l := range strings.Lines(b.buf.String()) {
		if strings.Contains(l, "level="+level+" ") && strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// A flood of connections turned away at a limit logs one INFO line at
// once and one summary for the rest, not a line each (those are at DEBUG).
func TestRefusedConnectionsLogSummed(t *testing.T) {
	logs := &logBuffer{}
	addr, _, srv := start(t, func(o *smtp.Options) {
		o.Listener.MaxConnectionsPerIP = 1
		o.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	smtptest.Dial(t, addr).Run(greeting)
	for range 20 {
		smtptest.Run(t, addr, `
			S: 421 4.7.0 mx.test Too many connections, try again later
			EOF
		`)
	}
	if got := logs.lines("INFO", "connection"); len(got) != 1 || !strings.Contains(got[0], `msg="smtp: connection limit reached" ip=127.0.0.1 sessions=1`) {
		t.Errorf("INFO lines during the flood: %q, want one", got)
	}
	if got := logs.lines("DEBUG", "smtp: connection limit reached"); len(got) != 19 {
		t.Errorf("%d DEBUG lines, want one for each of the 19 after the first", len(got))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	want := `msg="smtp: connections turned away at a limit" count=19 clients=1 top=127.0.0.1 top_count=19 interval=1m0s`
	if got := logs.lines("INFO", "turned away"); len(got) != 1 || !strings.Contains(got[0], want) {
		t.Errorf("summary at shutdown: %q, want one with %q", got, want)
	}
}
