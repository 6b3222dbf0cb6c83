package delivery_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/queue"
)

// copyOf queues a message to rcpts on a node that never delivers it
// (engine not started), changes it with edit through the engine or the
// spool, and returns its copy's record, as the replica last had it, and
// its body: what a takeover imports.
func copyOf(t *testing.T, edit func(h *engHarness, id string), rcpts ...string) (rec, body []byte) {
	t.Helper()
	from := newEngHarness(t)
	id := from.enqueue(engSender, engRcpts(rcpts...)...)
	if edit != nil {
		edit(from, id)
	}
	return from.replica.record(id), from.body(id)
}

// importInto imports a copy into a running taker and kicks its engine.
func importInto(t *testing.T, h *engHarness, rec, body []byte) string {
	t.Helper()
	nid, err := h.spool.Import(t.Context(), rec, body)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	h.eng.Kick()
	return nid
}

// A held copy imported by a takeover is not tried while it is held, and
// once the taker's operator releases it (Engine.Release, the admin API's
// path) it is delivered, once, at once: not at the other node's schedule.
func TestImportedHeldCopyReleasedIsDeliveredOnce(t *testing.T) {
	rec, body := copyOf(t, func(h *engHarness, id string) {
		if err := h.eng.Hold(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}, "carol@example.net")
	taker := newEngHarness(t)
	taker.tr.Script("carol@example.net", deliverytest.OK())
	taker.start()
	nid := importInto(t, taker, rec, body)
	time.Sleep(100 * time.Millisecond) // a scan that would wrongly start it
	if n := taker.tr.NumCalls(); n != 0 {
		t.Fatalf("%d attempts of a held copy before its release; want 0", n)
	}
	if err := taker.eng.Release(t.Context(), nid); err != nil {
		t.Fatalf("Release: %v", err)
	}
	taker.waitOutcomes(1)
	taker.waitFor("the message to leave the spool", func() bool { return len(taker.messages()) == 0 })
	if n := taker.tr.NumCalls(); n != 1 {
		t.Errorf("%d attempts after the release; want 1", n)
	}
}

// The taker goes on with the copy's attempts, delay warning and expiry:
// a copy already warned is not warned again, one not yet warned past
// delay_warning is (once), and one past max_lifetime is bounced at its
// first attempt here, as the node that queued it would have.
func TestImportKeepsAttemptsWarningAndExpiry(t *testing.T) {
	temp := delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 7, 1}, Text: "greylisted"}
	for _, tc := range []struct {
		name   string
		warned bool
		at     time.Duration // the taker's clock, after the message came
		dsns   int           // DSNs the taker sends
		left   bool          // the message still queued after the attempt
	}{
		{"warned before the takeover", true, 6 * time.Hour, 0, true},
		{"not yet warned", false, 6 * time.Hour, 1, true},
		{"past its lifetime", true, 5*24*time.Hour + time.Hour, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, body := copyOf(t, func(h *engHarness, id string) {
				if err := h.spool.Update(t.Context(), id, func(m *queue.Message) error {
					m.Attempts, m.DelayWarned = 5, tc.warned
					m.Recipients[0] = queue.RecipientState{Status: queue.Deferred, LastReply: "451 4.7.1 greylisted", Attempts: 5, Updated: engT0.Add(time.Hour)}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				// The whole record to the copy (an Update of attempts
				// alone is not sent on), as at a node's start.
				if err := h.spool.Replicate(t.Context(), id); err != nil {
					t.Fatal(err)
				}
			}, "bob@example.net")
			taker := newEngHarness(t)
			taker.tr.Default = &temp
			taker.clock.Set(engT0.Add(tc.at))
			taker.start()
			nid := importInto(t, taker, rec, body)
			taker.waitOutcomes(1)
			if tc.dsns > 0 {
				taker.waitFor("the DSN", func() bool { return len(engDSNCalls(taker.sink)) >= tc.dsns })
			}
			if got := len(engDSNCalls(taker.sink)); got != tc.dsns {
				t.Errorf("%d DSNs from the taker; want %d", got, tc.dsns)
			}
			m, err := taker.spool.Get(nid)
			if !tc.left {
				if err == nil {
					t.Errorf("still queued after max_lifetime: %+v", m.Recipients)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Attempts != 6 || !m.DelayWarned || !m.Created.Equal(engT0) {
				t.Errorf("after the taker's attempt: attempts %d, warned %v, created %v; want 6, true, %v", m.Attempts, m.DelayWarned, m.Created, engT0)
			}
			if next := m.NextAttempt.Sub(taker.clock.Now()); next < 50*time.Minute {
				t.Errorf("next attempt in %v; want the backoff of a 6th attempt (1h ±10%%), not a first's", next)
			}
		})
	}
}

// Retry hammered at messages while their deliveries run (a busy operator,
// ETRN from several clients) makes no delivery twice: each recipient is
// delivered once, whatever Retry finds (in flight, leased by a scan, or
// about to start).
func TestRetryDuringDeliveriesDeliversOnce(t *testing.T) {
	h := newEngHarness(t)
	var mu sync.Mutex // guards ids
	h.start()
	const n = 40
	ids := make([]string, n)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				mu.Lock()
				id := ids[i%n]
				mu.Unlock()
				if id != "" {
					h.eng.Retry(context.Background(), id)
				}
			}
		})
	}
	for i := range n {
		id := h.enqueue(engSender, engRcpt(fmt.Sprintf("u%d@example.net", i), 0))
		mu.Lock()
		ids[i] = id
		mu.Unlock()
	}
	h.waitFor("every message delivered", func() bool { return len(h.messages()) == 0 })
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	per := map[string]int{}
	for _, c := range h.tr.Calls() {
		for _, r := range c.Job.Recipients {
			per[r.Address.String()]++
		}
	}
	for i := range n {
		if got := per[fmt.Sprintf("u%d@example.net", i)]; got != 1 {
			t.Errorf("u%d@example.net delivered %d times; want 1", i, got)
		}
	}
}

// A flush of a held domain (ETRN, `queue retry -domain`) delivers what is
// queued then, once, and "what comes later waits" (RetryDomain's doc,
// TestEngineFlushDeliversHeldMailOnce). A message a takeover imports
// after the flush came later to this node, and must wait too. It fails
// on main: the flush covers a message by its Created (the other node's,
// before the flush) and its NextAttempt (zero since the import makes a
// copy due at once), so the imported mail goes to the held domain
// within the flush's hour.
func TestImportAfterFlushOfHeldDomainWaits(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flushed=%v", flush), func(t *testing.T) {
			rec, body := copyOf(t, nil, "bob@held.test")
			taker := heldHarness(t)
			taker.clock.Set(engT0.Add(10 * time.Minute))
			if flush {
				if _, err := taker.eng.RetryDomain(t.Context(), "held.test"); err != nil {
					t.Fatal(err)
				}
			}
			taker.clock.Set(engT0.Add(11 * time.Minute))
			nid := importInto(t, taker, rec, body)
			setAside := taker.clock.Now().Add(time.Hour)
			taker.waitFor("the import tried or set aside", func() bool {
				m, err := taker.spool.Get(nid)
				return taker.outcomes() > 0 || err == nil && m.NextAttempt.Equal(setAside)
			})
			if got := callDomains(taker); len(got) != 0 {
				t.Errorf("domains tried after the import: %v; want none (held.test is held, and the mail came after any flush)", got)
			}
		})
	}
}

// A copy whose recipients are all final (its node delivered or failed
// them and died before the message's deletion reached the stream) is
// imported (the takeover does not look inside) and must leave the
// taker's spool without an attempt and without a second DSN.
func TestImportOfFinishedCopy(t *testing.T) {
	rec, body := copyOf(t, func(h *engHarness, id string) {
		if err := h.spool.Update(t.Context(), id, func(m *queue.Message) error {
			m.Attempts = 1
			m.Recipients[0] = queue.RecipientState{Status: queue.Delivered, LastReply: "250 ok", Attempts: 1, Updated: engT0}
			m.Recipients[1] = queue.RecipientState{Status: queue.Failed, LastReply: "550 5.1.1 no such user", Attempts: 1, Updated: engT0}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}, "bob@example.net", "carol@example.net")
	taker := newEngHarness(t)
	taker.start()
	nid := importInto(t, taker, rec, body)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := taker.spool.Get(nid); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the finished copy %s is still queued on the taker 3 s after its import: %+v", nid, taker.get(nid).Recipients)
		}
		taker.eng.Kick()
		time.Sleep(10 * time.Millisecond)
	}
	engSettle()
	if n := taker.tr.NumCalls(); n != 0 {
		t.Errorf("%d attempts of a finished copy; want 0", n)
	}
	if n := len(engDSNCalls(taker.sink)); n != 0 {
		t.Errorf("%d DSNs for a finished copy; want 0 (its node sent the failure's)", n)
	}
}
