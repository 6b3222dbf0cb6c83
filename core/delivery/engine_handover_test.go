package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// commitDraft commits a message the way the SMTP intake does and returns
// what Draft.Committed hands to Enqueue, without enqueueing or kicking.
func (h *engHarness) commitDraft(rcpt string) (*queue.Message, []byte) {
	h.t.Helper()
	d := h.draft(engBody)
	env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts(rcpt)}
	if err := d.Commit(context.Background(), env, []byte(engTrace)); err != nil {
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

// TestEnqueueOfDeliveredMessage: the intake commits a message and
// then calls Enqueue; in between (the session's goroutine preempted, a
// GC, a loaded machine) a scan may find the committed message, deliver it
// and delete it. Enqueue then leases the already finished message again
// (its lease is gone) and startFresh starts a round from the handed copy
// without asking the spool whether it is still there: the message is
// delivered a second time. Before 608cd41, startFresh read the message
// back (tryStart -> spool.Get) and skipped it as gone.
func TestEnqueueOfDeliveredMessage(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	m, body := h.commitDraft("bob@example.net")
	h.eng.Kick() // a scan (timer, another Kick) finds it before Enqueue runs
	h.waitOutcomes(1)
	h.waitFor("the delivered message removed", func() bool { return h.spool.Len() == 0 })

	h.eng.Enqueue(m, body) // the session's late hand-over
	h.noMoreCalls(1, "a message delivered and removed before its Enqueue")
}

// TestEnqueueOfRemovedMessage: the same hole with an operator's
// Remove between the commit and Enqueue (e.g. `queue remove` run on what
// `queue list` shows): Remove deletes the message with no DSN, and the
// late Enqueue delivers it anyway.
func TestEnqueueOfRemovedMessage(t *testing.T) {
	h := newEngHarness(t)
	m, body := h.commitDraft("bob@example.net")
	if err := h.eng.Remove(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	h.start() // after the Remove: a running engine's scan may start the message first (a make test run's Hold met "message is being delivered")
	h.eng.Enqueue(m, body)
	h.noMoreCalls(0, "a message removed by the operator before its Enqueue")
}

// TestEnqueueOfHeldMessage: an operator's Hold between the commit
// and Enqueue is overridden: the handed copy is not held, and startFresh
// delivers it although the spool says held.
func TestEnqueueOfHeldMessage(t *testing.T) {
	h := newEngHarness(t)
	m, body := h.commitDraft("bob@example.net")
	if err := h.eng.Hold(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	h.start() // after the Hold: a running engine's scan may start the message first (a make test run's Hold met "message is being delivered")
	h.eng.Enqueue(m, body)
	h.noMoreCalls(0, "a message held by the operator before its Enqueue")
}

// callsTo counts the transport's calls that carried rcpt.
func (h *engHarness) callsTo(rcpt string) int {
	n := 0
	for _, c := range h.tr.Calls() {
		for _, r := range c.Rcpts() {
			if r == rcpt {
				n++
			}
		}
	}
	return n
}

// TestEnqueueWhileRunStops: Run returns only after its attempts in
// flight end, and clears every lease (engine.go: "rounds cut short by the
// shutdown: their messages stay due"), but not e.fresh. A message handed
// to Enqueue while Run waits for its last attempt is left in e.fresh,
// unleased. When Run is started again, its first scan starts the message
// from the spool, and then startFresh starts it a second time from
// e.fresh without looking at the lease: delivered twice.
func TestEnqueueWhileRunStops(t *testing.T) {
	h := newEngHarness(t)
	release := make(chan struct{})
	h.tr.ScriptCall(func(ctx context.Context, job *delivery.Job) []delivery.Result {
		<-release // an attempt that does not end at once on cancel
		out := make([]delivery.Result, len(job.Recipients))
		for i := range out {
			out[i] = deliverytest.OK()
		}
		return out
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.eng.Run(ctx) }()
	h.eng.Enqueue(h.commitDraft("x@example.net"))
	deadline := time.Now().Add(5 * time.Second)
	for h.tr.InFlight() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel() // shutdown: Run waits for the attempt to x
	time.Sleep(50 * time.Millisecond)
	h.eng.Enqueue(h.commitDraft("y@example.net")) // the last session's message
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	h.start() // the engine runs again
	h.waitFor("y delivered", func() bool { return h.callsTo("y@example.net") >= 1 })
	time.Sleep(200 * time.Millisecond)
	if n := h.callsTo("y@example.net"); n != 1 {
		t.Errorf("y@example.net got %d deliveries, want 1", n)
	}
}

// TestEnqueueAfterRetryLeavesScheduleEntry: Retry between the
// commit and Enqueue moves the message's schedule entry (NextAttempt zero
// -> now). The round Enqueue starts takes the handed copy as the stored
// record (queue.Spool.Replace's old), so its deferral removes an entry
// that is not there and leaves Retry's behind: the schedule holds two
// entries for one message, and the stale one outlives the message (every
// scan then reads a record that is gone).
func TestEnqueueAfterRetryLeavesScheduleEntry(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Script("bob@example.net", deliverytest.Temp(451, [3]uint16{4, 7, 1}, "try later"))
	m, body := h.commitDraft("bob@example.net")
	if err := h.eng.Retry(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	h.eng.Enqueue(m, body)
	h.start()
	h.waitOutcomes(1)
	entries := 0
	if err := h.spool.DueIDs(engT0.Add(365*24*time.Hour), func(id string, _ time.Time) bool {
		if id == m.ID {
			entries++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if entries != 1 {
		t.Errorf("the schedule holds %d entries for %s after its deferral, want 1", entries, m.ID)
	}
}
