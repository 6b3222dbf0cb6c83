package delivery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// heldHarness is an engine whose configuration holds held.test and the
// subdomains of sub.test.
func heldHarness(t *testing.T) *engHarness {
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Config.HoldDomains = []string{"held.test", "*.sub.test"}
	})
	h.start()
	return h
}

// waitParked waits until message id, all of whose recipients left are
// held, is set aside until next.
func (h *engHarness) waitParked(id string, next time.Time) {
	h.t.Helper()
	h.waitFor("message "+id+" set aside until "+next.String(), func() bool {
		m, err := h.spool.Get(id)
		return err == nil && m.NextAttempt.Equal(next)
	})
}

// callDomains lists the domains of the transport's calls, in order.
func callDomains(h *engHarness) []string {
	var out []string
	for _, c := range h.tr.Calls() {
		out = append(out, c.Job.Domain)
	}
	return out
}

func TestEngineHeldDomainWaits(t *testing.T) {
	h := heldHarness(t)
	mixed := h.enqueue(engSender, engRcpt("bob@held.test", 0), engRcpt("carol@other.test", 0))
	h.waitOutcomes(1)
	only := h.enqueue(engSender, engRcpt("dan@HELD.test", 0), engRcpt("eve@a.sub.test", 0))
	// The longest wait of the default schedule.
	h.waitParked(only, engT0.Add(time.Hour))
	engSettle()

	if diff := cmp.Diff([]string{"other.test"}, callDomains(h)); diff != "" {
		t.Errorf("domains tried (-want +got):\n%s", diff)
	}
	m := h.get(mixed)
	if st := m.Recipients[0]; st.Status != queue.Pending || st.Attempts != 0 || st.LastReply != "" {
		t.Errorf("held recipient %+v; want pending, no attempt, no reply", st)
	}
	if m.Recipients[1].Status != queue.Delivered {
		t.Errorf("other.test recipient %v; want delivered", m.Recipients[1].Status)
	}
	if s := h.eng.Stats(); s.Delivered != 1 || s.Deferred != 0 || s.Failed != 0 {
		t.Errorf("stats %+v; want 1 delivered and nothing deferred", s)
	}
	for _, st := range h.get(only).Recipients {
		if st.Attempts != 0 || st.Status != queue.Pending {
			t.Errorf("held recipient %+v; want pending, no attempt", st)
		}
	}

	// The subdomain pattern holds a.sub.test, not sub.test itself.
	h.enqueue(engSender, engRcpt("fay@sub.test", 0))
	h.waitOutcomes(2)
	if diff := cmp.Diff([]string{"other.test", "sub.test"}, callDomains(h)); diff != "" {
		t.Errorf("domains tried (-want +got):\n%s", diff)
	}
}

func TestEngineFlushDeliversHeldMailOnce(t *testing.T) {
	h := heldHarness(t)
	ctx := context.Background()
	id := h.enqueue(engSender, engRcpt("bob@held.test", 0))
	h.waitParked(id, engT0.Add(time.Hour))

	n, err := h.eng.RetryDomain(ctx, "Held.Test.")
	if err != nil || n != 1 {
		t.Fatalf("RetryDomain = %d, %v; want 1, nil", n, err)
	}
	h.waitOutcomes(1)
	if diff := cmp.Diff([]string{"held.test"}, callDomains(h)); diff != "" {
		t.Errorf("domains tried (-want +got):\n%s", diff)
	}
	if len(h.messages()) != 0 {
		t.Errorf("the flushed message is still queued")
	}

	// The flush was once: mail that comes later waits again, and so does
	// mail the flush tried and could not deliver.
	h.clock.Advance(time.Minute)
	later := h.enqueue(engSender, engRcpt("carol@held.test", 0))
	h.waitParked(later, h.clock.Now().Add(time.Hour))
	if n := h.tr.NumCalls(); n != 1 {
		t.Errorf("%d calls; want the flushed one only", n)
	}
	h.tr.Script("carol@held.test", deliverytest.Temp(451, [3]uint16{4, 4, 1}, "no answer"))
	if n, err := h.eng.RetryDomain(ctx, "held.test"); err != nil || n != 1 {
		t.Fatalf("RetryDomain = %d, %v; want 1, nil", n, err)
	}
	h.waitOutcomes(2)
	h.clock.Advance(10 * time.Minute) // past the retry after the failure
	h.eng.Kick()
	h.waitParked(later, h.clock.Now().Add(time.Hour))
	if n := h.tr.NumCalls(); n != 2 {
		t.Errorf("%d calls; want 2 (one per flush)", n)
	}
}

func TestEngineOperatorHold(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	ctx := context.Background()
	if err := h.eng.HoldDomain(ctx, "Op.Test"); err != nil {
		t.Fatalf("HoldDomain: %v", err)
	}
	if err := h.eng.HoldDomain(ctx, "bad_name.test"); err == nil {
		t.Errorf("HoldDomain(bad_name.test) = nil; want an error")
	}
	id := h.enqueue(engSender, engRcpt("bob@op.test", 0))
	h.waitParked(id, engT0.Add(time.Hour))
	want := []delivery.DomainHold{{Domain: "op.test", Source: delivery.HoldByOperator, Since: engT0}}
	if diff := cmp.Diff(want, h.eng.HeldDomains()); diff != "" {
		t.Errorf("HeldDomains (-want +got):\n%s", diff)
	}

	// A restart keeps the hold: it is in the spool.
	again, err := delivery.New(h.opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if diff := cmp.Diff(want, again.HeldDomains()); diff != "" {
		t.Errorf("HeldDomains after a restart (-want +got):\n%s", diff)
	}

	n, err := h.eng.ReleaseDomain(ctx, "op.test")
	if err != nil || n != 1 {
		t.Fatalf("ReleaseDomain = %d, %v; want 1, nil", n, err)
	}
	h.waitOutcomes(1)
	engSettle()
	if diff := cmp.Diff([]string{"op.test"}, callDomains(h)); diff != "" {
		t.Errorf("domains tried (-want +got):\n%s", diff)
	}
	if _, err := h.eng.ReleaseDomain(ctx, "op.test"); !errors.Is(err, delivery.ErrNotHeld) {
		t.Errorf("ReleaseDomain again: %v; want ErrNotHeld", err)
	}
	if again, err = delivery.New(h.opt); err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := again.HeldDomains(); len(got) != 0 {
		t.Errorf("HeldDomains after release and restart = %v; want none", got)
	}
}

func TestEngineETRNLiftsOperatorHold(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	ctx := context.Background()
	if err := h.eng.HoldDomain(ctx, "op.test"); err != nil {
		t.Fatalf("HoldDomain: %v", err)
	}
	id := h.enqueue(engSender, engRcpt("bob@op.test", 0))
	h.waitParked(id, engT0.Add(time.Hour))
	if n, err := h.eng.RetryDomain(ctx, "op.test"); err != nil || n != 1 {
		t.Fatalf("RetryDomain = %d, %v; want 1, nil", n, err)
	}
	h.waitOutcomes(1)
	if got := h.eng.HeldDomains(); len(got) != 0 {
		t.Errorf("HeldDomains after ETRN = %v; want none", got)
	}
	h.enqueue(engSender, engRcpt("carol@op.test", 0))
	h.waitOutcomes(2)
}

func TestEngineReleaseOfConfigHold(t *testing.T) {
	h := heldHarness(t)
	_, err := h.eng.ReleaseDomain(context.Background(), "held.test")
	if !errors.Is(err, delivery.ErrNotHeld) {
		t.Fatalf("ReleaseDomain(held.test) = %v; want ErrNotHeld", err)
	}
	const want = "delivery: domain is not held by the operator: held.test is held (hold_domains held.test); " +
		"edit the configuration and reload, or deliver its mail once with `gateway queue retry -domain`"
	if err.Error() != want {
		t.Errorf("error %q;\nwant %q", err, want)
	}
}

func TestEngineReloadDropsHold(t *testing.T) {
	h := heldHarness(t)
	id := h.enqueue(engSender, engRcpt("bob@held.test", 0), engRcpt("carol@x.sub.test", 0))
	h.waitParked(id, engT0.Add(time.Hour))
	h.eng.SetHoldDomains(context.Background(), []string{"*.sub.test", "new.test"})
	h.waitOutcomes(1)
	engSettle()
	if diff := cmp.Diff([]string{"held.test"}, callDomains(h)); diff != "" {
		t.Errorf("domains tried (-want +got):\n%s", diff)
	}
	want := []delivery.DomainHold{
		{Domain: "*.sub.test", Source: delivery.HoldByConfig},
		{Domain: "new.test", Source: delivery.HoldByConfig},
	}
	if diff := cmp.Diff(want, h.eng.HeldDomains()); diff != "" {
		t.Errorf("HeldDomains (-want +got):\n%s", diff)
	}
}

func TestEngineHeldMailExpires(t *testing.T) {
	h := heldHarness(t)
	id := h.enqueue(engSender, engRcpt("bob@held.test", envelope.NotifyFailure))
	h.waitParked(id, engT0.Add(time.Hour))

	// Set aside up to its expiry, never past it.
	h.clock.Set(engT0.Add(5*24*time.Hour - 30*time.Minute))
	h.eng.Kick()
	h.waitParked(id, engT0.Add(5*24*time.Hour))
	h.attemptAt(engT0.Add(5*24*time.Hour), 1)
	h.waitFor("the DSN", func() bool { return len(h.sink.Calls()) == 1 })
	if n := h.tr.NumCalls(); n != 0 {
		t.Errorf("%d calls to the held domain; want none", n)
	}
	if n := len(h.messages()); n != 0 {
		t.Errorf("spool has %d messages; want none", n)
	}
	p := parseEngDSN(t, h.sink.Calls()[0].Body)
	want := map[string]string{
		"Final-Recipient": "rfc822; bob@held.test",
		"Action":          "failed",
		"Status":          "5.4.7",
		"Diagnostic-Code": "smtp; 451 4.3.2 delivery to held.test is held (hold_domains held.test)",
	}
	if len(p.Rcpts) != 1 {
		t.Fatalf("%d recipient blocks; want 1", len(p.Rcpts))
	}
	if diff := cmp.Diff(want, engRcptFields(p.Rcpts[0])); diff != "" {
		t.Errorf("per-recipient fields (-want +got):\n%s", diff)
	}
}

// TestEngineHeldMailKept: with hold_expires = false a held message
// outlives max_lifetime, and its release delivers it.
func TestEngineHeldMailKept(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Config.HoldDomains = []string{"held.test"}
		o.Config.HoldNoExpiry = true
	})
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@held.test", envelope.NotifyFailure))
	h.waitParked(id, engT0.Add(time.Hour))

	late := engT0.Add(6 * 24 * time.Hour)
	h.clock.Set(late)
	h.eng.Kick()
	h.waitParked(id, late.Add(time.Hour))
	if n := h.tr.NumCalls() + h.sink.NumCalls(); n != 0 {
		t.Fatalf("%d deliveries or DSNs past max_lifetime; want none while held", n)
	}
	if n, err := h.eng.RetryDomain(context.Background(), "held.test"); err != nil || n != 1 {
		t.Fatalf("RetryDomain = %d, %v; want 1, nil", n, err)
	}
	h.waitOutcomes(1)
	if diff := cmp.Diff([]string{"held.test"}, callDomains(h)); diff != "" {
		t.Errorf("domains tried (-want +got):\n%s", diff)
	}
	if n := len(h.messages()); n != 0 {
		t.Errorf("spool has %d messages; want none", n)
	}
}
