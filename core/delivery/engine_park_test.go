package delivery_test

import (
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
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
