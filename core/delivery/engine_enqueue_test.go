package delivery_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// TestEngineEnqueueHandsOver checks that a message handed to Enqueue with
// its body is delivered from what was handed over, not read back from the
// spool (the transport sees the handed body, which the test made differ
// from the stored one), and that it is leased from Expect on: an admin
// operation gets ErrBusy until its round has ended.
func TestEngineEnqueueHandsOver(t *testing.T) {
	h := newEngHarness(t)
	ctx := context.Background()
	d, err := h.spool.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, engBody)
	env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts("bob@example.net")}
	h.eng.Expect(d.ID()) // as the SMTP intake does
	if err := d.Commit(ctx, env, []byte(engTrace)); err != nil {
		t.Fatal(err)
	}
	m, body := d.Committed()
	if string(body) != engTrace+engBody {
		t.Fatalf("Committed body %q, want the trace and the content", body)
	}
	handed := []byte(engTrace + "X-Handed: yes\r\n" + engBody)

	if err := h.eng.Hold(ctx, m.ID); !errors.Is(err, delivery.ErrBusy) {
		t.Errorf("Hold of an expected message = %v, want ErrBusy", err)
	}
	h.tr.Block()
	h.eng.Enqueue(m, handed)
	h.start()
	h.tr.Unblock()
	h.waitOutcomes(1)
	calls := h.tr.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	if string(calls[0].Body) != string(handed) {
		t.Errorf("the transport got %q, want the handed body %q", calls[0].Body, handed)
	}
	if h.spool.Len() != 0 {
		t.Errorf("%d messages left in the spool, want 0", h.spool.Len())
	}
}

// TestEngineStoredHopCount checks that the first attempt stores the hop
// count with the message and that a retry takes it from there instead of
// counting the body again: the test raises the stored count past the
// limit, and the retry fails the message as a loop though its body has
// one Received field.
func TestEngineStoredHopCount(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) { o.MaxHops = 3 })
	h.tr.Script("bob@example.net", deliverytest.Temp(451, [3]uint16{4, 7, 1}, "try later"))
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)
	m := h.get(id)
	if m.Hops != 1 {
		t.Fatalf("Hops after the first attempt = %d, want 1 (engTrace's Received field)", m.Hops)
	}
	if err := h.spool.Update(context.Background(), id, func(m *queue.Message) error {
		m.Hops = 5
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.attemptAt(m.NextAttempt, 1)
	if n := h.tr.NumCalls(); n != 1 {
		t.Errorf("transport called %d times, want 1 (the first attempt only)", n)
	}
	h.waitFor("the bounce", func() bool { return h.sink.NumCalls() == 1 })
	p := parseEngDSN(t, h.sink.Calls()[0].Body)
	if len(p.Rcpts) != 1 || p.Rcpts[0].Get("Status") != "5.4.6" {
		t.Errorf("recipient blocks %v; want 5.4.6 mail loop detected", p.Rcpts)
	}
}

// TestEngineForget checks that Forget gives back the lease Expect took
// (the commit failed), and that Enqueue of a message nobody expected
// leaves it to a scan, which delivers it once.
func TestEngineForget(t *testing.T) {
	h := newEngHarness(t)
	ctx := context.Background()
	h.eng.Expect("0123456789abcdef")
	h.eng.Forget("0123456789abcdef")
	if err := h.eng.Hold(ctx, "0123456789abcdef"); errors.Is(err, delivery.ErrBusy) {
		t.Errorf("Hold after Forget = %v, want the lease given back", err)
	}

	d, err := h.spool.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, engBody)
	env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts("bob@example.net")}
	if err := d.Commit(ctx, env, []byte(engTrace)); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.eng.Enqueue(d.Committed()) // not expected: a scan takes it
	h.waitOutcomes(1)
	if n := h.tr.NumCalls(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}
