package delivery_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// commitDraft commits a message the way the SMTP intake does and returns
// what Draft.Committed hands to Enqueue, without enqueueing or kicking.
func (h *engHarness) commitDraft(rcpt string) (*queue.Message, []byte) {
	h.t.Helper()
	ctx := context.Background()
	d, err := h.spool.Create(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	io.WriteString(d, engBody)
	env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts(rcpt)}
	if err := d.Commit(ctx, env, []byte(engTrace)); err != nil {
		h.t.Fatal(err)
	}
	return d.Committed()
}

// noMoreCalls fails when the transport gets more than want calls within a
// while.
func (h *engHarness) noMoreCalls(want int, why string) {
	h.t.Helper()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n := h.tr.NumCalls(); n > want {
			h.t.Fatalf("%s: the transport got %d calls, want %d", why, n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReviewEnqueueOfDeliveredMessage: the intake commits a message and
// then calls Enqueue; in between (the session's goroutine preempted, a
// GC, a loaded machine) a scan may find the committed message, deliver it
// and delete it. Enqueue then leases the already finished message again
// (its lease is gone) and startFresh starts a round from the handed copy
// without asking the spool whether it is still there: the message is
// delivered a second time. Before 608cd41, startFresh read the message
// back (tryStart -> spool.Get) and skipped it as gone.
func TestReviewEnqueueOfDeliveredMessage(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	m, body := h.commitDraft("bob@example.net")
	h.eng.Kick() // a scan (timer, another Kick) finds it before Enqueue runs
	h.waitOutcomes(1)
	h.waitFor("the delivered message removed", func() bool { return h.spool.Len() == 0 })

	h.eng.Enqueue(m, body) // the session's late hand-over
	h.noMoreCalls(1, "a message delivered and removed before its Enqueue")
}

// TestReviewEnqueueOfRemovedMessage: the same hole with an operator's
// Remove between the commit and Enqueue (e.g. `queue remove` run on what
// `queue list` shows): Remove deletes the message with no DSN, and the
// late Enqueue delivers it anyway.
func TestReviewEnqueueOfRemovedMessage(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	m, body := h.commitDraft("bob@example.net")
	if err := h.eng.Remove(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	h.eng.Enqueue(m, body)
	h.noMoreCalls(0, "a message removed by the operator before its Enqueue")
}

// TestReviewEnqueueOfHeldMessage: an operator's Hold between the commit
// and Enqueue is overridden: the handed copy is not held, and startFresh
// delivers it although the spool says held.
func TestReviewEnqueueOfHeldMessage(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	m, body := h.commitDraft("bob@example.net")
	if err := h.eng.Hold(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	h.eng.Enqueue(m, body)
	h.noMoreCalls(0, "a message held by the operator before its Enqueue")
}
