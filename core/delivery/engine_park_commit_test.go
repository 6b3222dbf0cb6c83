package delivery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// TestParkedAtCommitReplyNamesEachDomain: a message committed parked for
// two domains that are both down gives each recipient its own domain's
// reply ("not tried: <domain> reached no server since …"), which `gateway
// queue show` and the admin API print; not the first domain's for both.
func TestParkedAtCommitReplyNamesEachDomain(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &parkRefused
	h.start()
	h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.enqueue(engSender, engRcpt("dan@down.example", 0))
	h.waitOutcomes(2) // both domains down, each message its domain's probe

	calls := h.tr.NumCalls()
	id := h.commit(engRcpts("carol@example.net", "erin@down.example"))
	h.noMoreCalls(calls, "a new message for two domains that are down")
	m := h.get(id)
	if m.NextAttempt.Sub(h.clock.Now()) < 50*time.Minute {
		t.Fatalf("next attempt in %v; want the message parked", m.NextAttempt.Sub(h.clock.Now()))
	}
	for i, want := range []string{"not tried: example.net ", "not tried: down.example "} {
		if got := m.Recipients[i].LastReply; !strings.HasPrefix(got, want) {
			t.Errorf("%s: last reply %q; want it to start %q", m.Envelope.Recipients[i].Address, got, want)
		}
	}
}

// TestParkedAtCommitBounceClaimsNoAttempt: a recipient of a message
// committed parked was never attempted, so the operator's Bounce sends a
// DSN without Last-Attempt-Date for it (RFC 3464 2.3.7: the date of the
// last attempt), as for any recipient never tried.
func TestParkedAtCommitBounceClaimsNoAttempt(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &parkRefused
	h.start()
	h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)
	id := h.commit(engRcpts("carol@example.net"))
	if m := h.get(id); m.Recipients[0].Attempts != 0 || m.NextAttempt.Sub(h.clock.Now()) < 50*time.Minute {
		t.Fatalf("recipient %+v, next attempt %v; want a message parked as it came", m.Recipients[0], m.NextAttempt)
	}
	if err := h.eng.Bounce(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the DSN", func() bool { return len(engDSNCalls(h.sink)) == 1 })
	p := parseEngDSN(t, engDSNCalls(h.sink)[0].Body)
	if len(p.Rcpts) != 1 {
		t.Fatalf("%d recipient blocks; want 1", len(p.Rcpts))
	}
	if v := p.Rcpts[0].Get("Last-Attempt-Date"); v != "" {
		t.Errorf("the DSN of a recipient never attempted has Last-Attempt-Date: %s", v)
	}
}

// TestParkFailedCommitTakesNoProbe: a commit that fails (here the
// cluster replica is down: 451 4.3.0, the client retries) leaves no probe
// behind that was never queued. Engine.Commit may make the new message
// its domain's probe before the commit (the domain's probe being late);
// if that stuck, replaceProbes would see a probe just made and nothing
// late, and the parked mail would wait its hour though the destination
// answers. Here the probe is removed by the operator, its slack passes,
// and every two minutes for ten minutes a commit for the domain fails
// before the scheduler scans: a parked message must take the schedule,
// reach the server, and the rest follow.
func TestParkFailedCommitTakesNoProbe(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	probe, parked := parkOutage(t, h, 3) // the destination answers from now on
	if err := h.eng.Remove(t.Context(), probe); err != nil {
		t.Fatal(err)
	}
	failCommit := func(rcpt string) {
		t.Helper()
		h.replica.down.Store(true)
		defer h.replica.down.Store(false)
		d := h.draft(engBody)
		env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts(rcpt)}
		if err := h.eng.Commit(context.Background(), d, env, []byte(engTrace)); err == nil {
			t.Fatal("Commit with the replica down succeeded")
		}
		d.Abort()
	}
	for range 5 {
		h.clock.Advance(2 * time.Minute) // past the probe's (or the last phantom's) probeDue + probeSlack
		failCommit("new@example.net")
		h.eng.Kick()
		engSettle()
	}
	parkGone(t, h, "failed commits while the probe was late", parked...)
}

// TestHeldRecipientDoesNotRetryAtOnce: a message for a held domain and for
// another one that defers follows the retry schedule (1m): no second
// attempt without the clock moving. The round leaves the held recipient
// out, pending and never tried, which nextAttempt must not take for a
// recipient a predelivery hook just added (due at once): that made the
// message due again at once, forever, a hot loop against the other
// domain's server (found in session 13's review; older than parking at
// commit).
func TestHeldRecipientDoesNotRetryAtOnce(t *testing.T) {
	h := heldHarness(t)
	full := deliverytest.Temp(452, sdk.EnhancedCode{4, 2, 2}, "mailbox full")
	h.tr.Default = &full
	id := h.enqueue(engSender, engRcpt("bob@held.test", 0), engRcpt("carol@other.test", 0))
	h.waitOutcomes(1)
	engSettle()
	if n := h.tr.NumCalls(); n != 1 {
		t.Errorf("%d calls to other.test with the clock standing still; want 1 (next attempt in %v)",
			n, h.get(id).NextAttempt.Sub(h.clock.Now()))
	}
}
