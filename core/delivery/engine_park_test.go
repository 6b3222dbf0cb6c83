package delivery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// TestEngineParksUnreachableDestination: while no server of a domain
// answers (451 4.4.1), one of its messages keeps the retry schedule and
// the others wait an hour without an attempt; once that one's attempt
// reaches a server, the others are due at once. A message with a
// recipient at a domain that answers keeps its schedule.
func TestEngineParksUnreachableDestination(t *testing.T) {
	h := newEngHarness(t)
	refused := delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 4, 1},
		Text: "connection failed: mx.example.net [192.0.2.1:25]: connection refused", Local: true} // as the smtp transport says it
	h.tr.Default = &refused
	h.tr.Script("carol@up.example", deliverytest.Temp(452, [3]uint16{4, 2, 2}, "mailbox full"))
	h.start()
	var ids []string
	for range 5 {
		ids = append(ids, h.enqueue(engSender, engRcpt("bob@example.net", 0)))
	}
	mixed := h.enqueue(engSender, engRcpt("bob@example.net", 0), engRcpt("carol@up.example", 0))
	h.waitOutcomes(7)

	var probe string
	for _, id := range ids {
		switch next := h.get(id).NextAttempt.Sub(engT0); {
		case next == time.Hour:
		case next >= 54*time.Second && next <= 66*time.Second && probe == "":
			probe = id
		default:
			t.Fatalf("%s: next attempt in %v; want 1m±10%% for one message (the probe), 1h for the others", id, next)
		}
	}
	if probe == "" {
		t.Fatal("no message keeps the retry schedule")
	}
	if next := h.get(mixed).NextAttempt.Sub(engT0); next > 66*time.Second {
		t.Errorf("a message also for a domain that answers: next attempt in %v; want 1m±10%%", next)
	}

	// Only the probe (and the mixed message) are tried again.
	calls := h.tr.NumCalls()
	at := h.get(probe).NextAttempt
	if m := h.get(mixed).NextAttempt; m.After(at) {
		at = m
	}
	h.attemptAt(at, 3)
	if got := h.tr.NumCalls() - calls; got != 3 {
		t.Errorf("%d calls at the first retry; want 3 (the probe; the mixed message's two domains)", got)
	}

	// The destination answers again: the probe is delivered, and the
	// parked messages with it, an hour early.
	h.tr.Default = nil
	h.clock.Set(h.get(probe).NextAttempt)
	h.eng.Kick()
	h.waitFor("the parked messages delivered", func() bool {
		for _, id := range ids {
			if _, err := h.spool.Get(id); err == nil {
				return false
			}
		}
		return true
	})
	if s := h.eng.Stats(); s.Delivered < 5 {
		t.Errorf("stats %+v; want the 5 messages delivered", s)
	}
}

// TestEngineParksNewMailAsItCommits: once a domain is down, a message for
// it that Commit takes in is stored parked, its first attempt an hour
// away and its recipient's last reply saying why, and no job starts for
// it; a message also for a domain that answers is tried at once. When the
// probe reaches a server, the message parked as it came is delivered too.
func TestEngineParksNewMailAsItCommits(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 4, 1},
		Text: "connection failed: mx.example.net [192.0.2.1:25]: connection refused", Local: true}
	h.tr.Script("carol@up.example", deliverytest.Temp(452, [3]uint16{4, 2, 2}, "mailbox full"))
	h.start()
	probe := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)

	calls := h.tr.NumCalls()
	parked := h.commit(engRcpts("bob@example.net"))
	h.noMoreCalls(calls, "a new message for a domain that is down")
	m := h.get(parked)
	if next := m.NextAttempt.Sub(engT0); next != time.Hour {
		t.Errorf("the new message's first attempt is in %v; want 1h", next)
	}
	want := "not tried: example.net reached no server since 2026-03-01T12:00:00Z (451 4.4.1 connection failed: mx.example.net [192.0.2.1:25]: connection refused)"
	if rs := m.Recipients[0]; rs.LastReply != want || rs.Attempts != 0 || rs.Status != queue.Pending {
		t.Errorf("its recipient: %+v; want pending, not attempted, last reply %q", rs, want)
	}

	mixed := h.commit(engRcpts("bob@example.net", "carol@up.example"))
	h.waitOutcomes(3)
	if got := h.tr.NumCalls() - calls; got != 2 {
		t.Errorf("%d calls for a new message also for a domain that answers; want 2 (both its domains)", got)
	}
	if next := h.get(mixed).NextAttempt.Sub(engT0); next > 66*time.Second {
		t.Errorf("that message's next attempt is in %v; want 1m±10%%", next)
	}

	h.tr.Default = nil
	h.clock.Set(h.get(probe).NextAttempt)
	h.eng.Kick()
	h.waitFor("the probe and the message parked as it came delivered", func() bool {
		_, errProbe := h.spool.Get(probe)
		_, errParked := h.spool.Get(parked)
		return errors.Is(errProbe, queue.ErrNotFound) && errors.Is(errParked, queue.ErrNotFound)
	})
}

// commit commits a message for rcpts through Engine.Commit, as the SMTP
// intake does, and returns its ID.
func (h *engHarness) commit(rcpts []envelope.Recipient) string {
	h.t.Helper()
	d := h.draft(engBody)
	env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: rcpts}
	if err := h.eng.Commit(context.Background(), d, env, []byte(engTrace)); err != nil {
		h.t.Fatal(err)
	}
	return d.ID()
}
