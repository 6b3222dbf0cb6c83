package delivery_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/queue"
)

// intake queues a message for rcpts as the SMTP intake does (Expect, which
// may park it; Commit; Enqueue) and returns its ID.
func (h *engHarness) intake(rcpts ...string) string {
	h.t.Helper()
	d, env := h.draft(rcpts...)
	if until := h.eng.Expect(d.ID(), env); !until.IsZero() {
		d.Park(until)
	}
	if err := d.Commit(context.Background(), env, []byte(engTrace)); err != nil {
		h.t.Fatal(err)
	}
	h.eng.Enqueue(d.Committed())
	return d.ID()
}

// draft is a message for rcpts, written, not committed.
func (h *engHarness) draft(rcpts ...string) (*queue.Draft, *envelope.Envelope) {
	h.t.Helper()
	d, err := h.spool.Create(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	io.WriteString(d, engBody)
	return d, &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts(rcpts...), Received: h.clock.Now()}
}

// downHarness is a running engine whose transport refuses every
// connection, with example.net found down by one message's attempt (the
// probe, returned).
func downHarness(t *testing.T, edit ...func(*delivery.Options)) (*engHarness, string) {
	h := newEngHarness(t, edit...)
	refused := delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 4, 1},
		Text: "connection failed: mx.example.net [192.0.2.1:25]: connection refused", Local: true}
	h.tr.Default = &refused
	h.start()
	probe := h.intake("bob@example.net")
	h.waitOutcomes(1)
	return h, probe
}

// TestEngineParksNewMailOfADownDomain: mail queued for a domain already
// found down waits an hour from the start, without an attempt (and so
// without a second write): the dead-address cache would refuse it anyway.
// Once the probe reaches a server, it is delivered with the rest.
func TestEngineParksNewMailOfADownDomain(t *testing.T) {
	h, probe := downHarness(t)
	var parked []string
	for range 3 {
		parked = append(parked, h.intake("bob@example.net", "carol@EXAMPLE.NET"))
	}
	for _, id := range parked {
		m := h.get(id)
		if next := m.NextAttempt.Sub(engT0); next != time.Hour {
			t.Errorf("%s: first attempt in %v, want 1h", id, next)
		}
		if m.Attempts != 0 || m.Recipients[0].Status != queue.Pending || m.Recipients[0].Attempts != 0 {
			t.Errorf("%s: %d attempts, recipient %+v; want none tried", id, m.Attempts, m.Recipients[0])
		}
	}
	h.noMoreCalls(1, "new mail of a down domain")

	h.tr.Default = nil // the destination answers again
	h.clock.Set(h.get(probe).NextAttempt)
	h.eng.Kick()
	h.waitFor("the parked mail delivered", func() bool { return h.spool.Len() == 0 })
	if got := h.tr.NumCalls(); got != 1+1+3 {
		t.Errorf("%d transport calls, want 5: the probe twice, each parked message once", got)
	}
}

// TestEngineDoesNotParkNewMailElsewhere: a message with a recipient at a
// domain not known to be down is tried at once, and so is every message
// when a predelivery hook runs (it may send the mail elsewhere).
func TestEngineDoesNotParkNewMailElsewhere(t *testing.T) {
	h, _ := downHarness(t)
	d, env := h.draft("bob@example.net", "carol@up.example")
	if until := h.eng.Expect(d.ID(), env); !until.IsZero() {
		t.Errorf("a message also for a domain not down: parked until %v", until)
	}
	h.eng.Forget(d.ID())

	hooked, _ := downHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, predeliveryRecipients(func(rcpts []string) []string { return rcpts }))
	})
	d, env = hooked.draft("bob@example.net")
	if until := hooked.eng.Expect(d.ID(), env); !until.IsZero() {
		t.Errorf("with a predelivery hook: parked until %v", until)
	}
	hooked.eng.Forget(d.ID())
}

// TestEngineParkedNewMailReleasedBeforeHandOver: when the down domain is
// found up between Expect's decision and Enqueue, the release's scan
// passes the message over (it is leased): Enqueue starts it at once
// instead of leaving it parked for an hour.
func TestEngineParkedNewMailReleasedBeforeHandOver(t *testing.T) {
	h, probe := downHarness(t)
	d, env := h.draft("bob@example.net")
	until := h.eng.Expect(d.ID(), env)
	if until.IsZero() {
		t.Fatal("Expect did not park a message of a down domain")
	}
	d.Park(until)
	if err := d.Commit(context.Background(), env, []byte(engTrace)); err != nil {
		t.Fatal(err)
	}

	h.tr.Default = nil
	h.clock.Set(h.get(probe).NextAttempt)
	h.eng.Kick()
	h.waitFor("the probe delivered", func() bool { return h.spool.Len() == 1 })

	h.eng.Enqueue(d.Committed())
	h.waitFor("the message delivered", func() bool { return h.spool.Len() == 0 })
}
