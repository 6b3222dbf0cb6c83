package gateway_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"golang.org/x/crypto/bcrypt"
)

// TestAuthGuessingLoad is issue 9's load test, on loopback: 50 parallel
// AUTH guessers that reconnect as soon as they are refused, and one
// legitimate client (127.0.0.2) that sends mail without AUTH, one session
// after another. Its median session must stay under 50ms, and no guesser
// address may get more password checks (535 replies) than the limit.
// The guessers come from one address, then from 50 (where the limiter
// admits 5 checks each and the pool keeps bcrypt, at its default cost, to
// half the cores). go test -v shows the figures.
func TestAuthGuessingLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		limit    = 5
		phase    = 1500 * time.Millisecond
		maxP50   = 50 * time.Millisecond
		guessers = 50
	)
	hcl := authConfig(t, bcrypt.DefaultCost, fmt.Sprintf(`
  auth_failure_limit = %d
  auth_lockout       = "1h"
`, limit))
	// At the end, sessions still waiting for a worker or in a failure's
	// delay are cut short.
	g := gatewaytest.Start(t, strings.Replace(hcl, `shutdown_timeout = "5s"`, `shutdown_timeout = "500ms"`, 1))
	mx := g.Addr(t, "mx")

	lat := legitimate(t, mx, phase, nil)
	t.Logf("no guessers: %s", lat)

	one := func(int) string { return "127.0.0.1" }
	many := func(i int) string { return fmt.Sprintf("127.0.1.%d", i+1) }
	for _, tc := range []struct {
		name string
		from func(i int) string
	}{{"from one address", one}, {"from 50 addresses", many}} {
		lat := legitimate(t, mx, phase, func(ctx context.Context, wg *sync.WaitGroup, end time.Time) {
			for i := range guessers {
				wg.Go(func() { guess(ctx, tc.from(i), mx, end) })
			}
		})
		admitted, most, refused := checked(g.Log().String())
		t.Logf("%d guessers %s: %s; since the start: %d password checks, at most %d from one address, %d attempts refused",
			guessers, tc.name, lat, admitted, most, refused)
		if most > limit {
			t.Errorf("%s: an address had %d password checks, want at most %d", tc.name, most, limit)
		}
		if lat.p50 > maxP50 {
			t.Errorf("%s: the legitimate client's median session took %v, want under %v", tc.name, lat.p50, maxP50)
		}
	}
}

// latency sums up the legitimate client's sessions.
type latency struct {
	n, failed int
	p50, p90  time.Duration
}

func (l latency) String() string {
	return fmt.Sprintf("%d sessions (%d failed), median %v, p90 %v",
		l.n, l.failed, l.p50.Round(100*time.Microsecond), l.p90.Round(100*time.Microsecond))
}

// legitimate sends mail from 127.0.0.2 to addr, one session after another,
// for d, while load (if any) runs until the end; it returns the sessions'
// latency once load's goroutines have ended too.
func legitimate(t *testing.T, addr string, d time.Duration, load func(context.Context, *sync.WaitGroup, time.Time)) latency {
	t.Helper()
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(t.Context(), end)
	defer cancel()
	var wg sync.WaitGroup
	if load != nil {
		load(ctx, &wg, end)
		time.Sleep(200 * time.Millisecond) // the guessers under way
	}
	var took []time.Duration
	failed := 0
	for ctx.Err() == nil {
		start := time.Now()
		if err := sendMail("127.0.0.2", addr); err != nil {
			failed++
			t.Logf("legitimate session: %v", err)
			continue
		}
		took = append(took, time.Since(start))
	}
	wg.Wait()
	if len(took) == 0 {
		t.Fatalf("no legitimate session succeeded (%d failed)", failed)
	}
	slices.Sort(took)
	return latency{n: len(took), failed: failed, p50: took[len(took)/2], p90: took[len(took)*9/10]}
}

// sendMail sends one message from local to addr, EHLO to QUIT.
func sendMail(local, addr string) error {
	c, err := dial(local, addr)
	if err != nil {
		return err
	}
	defer c.close()
	for _, step := range []struct{ cmd, want string }{
		{"EHLO legit.test", "250 "},
		{"MAIL FROM:<a@legit.test>", "250 "},
		{"RCPT TO:<b@example.test>", "250 "},
		{"DATA", "354 "},
		{"Subject: hello\r\n\r\nHello.\r\n.", "250 2.0.0 Ok: queued as "},
		{"QUIT", "221 "},
	} {
		if r, err := c.cmd(step.cmd); err != nil || !strings.HasPrefix(r, step.want) {
			return fmt.Errorf("%.20q: %q, %v", step.cmd, r, err)
		}
	}
	return nil
}

// guess connects from local to addr again and again until ctx ends, and
// on each connection sends AUTH PLAIN with a new password until a reply
// other than 535 (a 454 lockout, the 421 after too many errors). No read
// waits past end.
func guess(ctx context.Context, local, addr string, end time.Time) {
	n := 0
	for ctx.Err() == nil {
		c, err := dial(local, addr)
		if err != nil {
			continue
		}
		c.until = end
		if _, err := c.cmd("EHLO guesser.test"); err == nil {
			for ctx.Err() == nil {
				n++
				r, err := c.cmd(authPlain("alice", fmt.Sprintf("guess%d", n)))
				if err != nil {
					break
				}
				if !strings.HasPrefix(r, "535 ") {
					break
				}
			}
		}
		c.close()
	}
}

// failure matches the log line of a failed or refused AUTH.
var failure = regexp.MustCompile(`msg="smtp: auth failure from (\S+)" .* reason="([^"]*)"`)

// checked counts in log the password checks that failed, in all and the
// most from one address (what the limiter admitted of the guessers), and
// the attempts it refused.
func checked(log string) (total, most, refused int) {
	per := map[string]int{}
	for _, m := range failure.FindAllStringSubmatch(log, -1) {
		switch m[2] {
		case "invalid credentials":
			per[m[1]]++
			total++
		case "locked out":
			refused++
		}
	}
	for _, n := range per {
		most = max(most, n)
	}
	return total, most, refused
}
