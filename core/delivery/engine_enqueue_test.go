package delivery_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
)

// TestEngineEnqueueHandsOver checks that a message handed to Enqueue with
// its body is delivered from what was handed over, not read back from the
// spool (the transport sees the handed body, which the test made differ
// from the stored one), and that it is leased from Enqueue on: an admin
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
	if err := d.Commit(ctx, env, []byte(engTrace)); err != nil {
		t.Fatal(err)
	}
	m, body := d.Committed()
	if string(body) != engTrace+engBody {
		t.Fatalf("Committed body %q, want the trace and the content", body)
	}
	handed := []byte(engTrace + "X-Handed: yes\r\n" + engBody)

	h.tr.Block()
	h.eng.Enqueue(m, handed)
	if err := h.eng.Hold(ctx, m.ID); !errors.Is(err, delivery.ErrBusy) {
		t.Errorf("Hold of an enqueued message = %v, want ErrBusy", err)
	}
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
