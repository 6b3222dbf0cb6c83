package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// engWaitInFlight waits until the transport has n calls running.
func engWaitInFlight(t *testing.T, tr *deliverytest.Transport, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tr.InFlight() != n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d calls in flight; have %d", n, tr.InFlight())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// engSettle gives the scheduler time to do what it should not.
func engSettle() { time.Sleep(50 * time.Millisecond) }

func TestEngineLimits(t *testing.T) {
	t.Run("per domain", func(t *testing.T) {
		h := newEngHarness(t, func(o *delivery.Options) { o.Config.MaxConnectionsPerDomain = 1 })
		h.tr.Block()
		h.start()
		for i := range 3 {
			h.enqueue(engSender, engRcpt(fmt.Sprintf("u%d@busy.test", i), 0))
		}
		engWaitInFlight(t, h.tr, 1)
		engSettle()
		if n := h.tr.NumCalls(); n != 1 {
			t.Fatalf("%d calls to busy.test at once; want 1", n)
		}
		// Another domain is not held up by the busy one.
		h.enqueue(engSender, engRcpt("x@other.test", 0))
		engWaitInFlight(t, h.tr, 2)

		h.tr.Unblock()
		h.waitOutcomes(4)
		if n := len(h.messages()); n != 0 {
			t.Errorf("spool has %d messages; want none", n)
		}
		busy := 0
		for _, c := range h.tr.Calls() {
			if c.Job.Domain == "busy.test" {
				busy++
			}
		}
		if busy != 3 || h.tr.MaxInFlight() != 2 {
			t.Errorf("busy.test calls %d, most in flight %d; want 3 calls, at most 2 at once (one per domain)", busy, h.tr.MaxInFlight())
		}
	})

	t.Run("total", func(t *testing.T) {
		h := newEngHarness(t, func(o *delivery.Options) { o.Config.MaxConnections = 2 })
		h.tr.Block()
		h.start()
		for i := range 4 {
			h.enqueue(engSender, engRcpt("u@d"+fmt.Sprint(i)+".test", 0))
		}
		engWaitInFlight(t, h.tr, 2)
		engSettle()
		if n := h.tr.NumCalls(); n != 2 {
			t.Fatalf("%d calls at once; want 2", n)
		}
		h.tr.Unblock()
		h.waitOutcomes(4)
		if m := h.tr.MaxInFlight(); m != 2 {
			t.Errorf("most in flight %d; want 2", m)
		}
	})

	t.Run("one message, many domains", func(t *testing.T) {
		h := newEngHarness(t, func(o *delivery.Options) { o.Config.MaxConnections = 2 })
		h.start()
		h.enqueue(engSender, engRcpts("a@d1.test", "b@d2.test", "c@d3.test", "d@d4.test", "e@d5.test")...)
		h.waitOutcomes(5)
		if n, m := h.tr.NumCalls(), h.tr.MaxInFlight(); n != 5 || m > 2 {
			t.Errorf("%d calls, %d at once; want 5, at most 2", n, m)
		}
		if n := len(h.messages()); n != 0 {
			t.Errorf("spool has %d messages; want none", n)
		}
	})
}

func TestEngineAdmin(t *testing.T) {
	ctx := context.Background()
	temp := deliverytest.Temp(451, sdk.EnhancedCode{4, 7, 1}, "later")

	t.Run("hold and release", func(t *testing.T) {
		h := newEngHarness(t)
		id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
		if err := h.eng.Hold(ctx, id); err != nil {
			t.Fatalf("Hold: %v", err)
		}
		h.start()
		h.eng.Kick()
		engSettle()
		if n := h.tr.NumCalls(); n != 0 {
			t.Fatalf("a held message was delivered (%d calls)", n)
		}
		if !h.get(id).Held {
			t.Fatalf("not held")
		}
		if err := h.eng.Release(ctx, id); err != nil {
			t.Fatalf("Release: %v", err)
		}
		h.waitOutcomes(1)
		if n := len(h.messages()); n != 0 {
			t.Errorf("spool has %d messages after release; want none", n)
		}
	})

	t.Run("retry", func(t *testing.T) {
		h := newEngHarness(t)
		h.tr.Script("bob@example.net", temp)
		h.start()
		id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
		h.waitOutcomes(1)
		if err := h.eng.Retry(ctx, id); err != nil {
			t.Fatalf("Retry: %v", err)
		}
		h.waitOutcomes(2)
		if n := len(h.messages()); n != 0 {
			t.Errorf("spool has %d messages; want none", n)
		}
	})

	t.Run("retry domain and all", func(t *testing.T) {
		h := newEngHarness(t)
		for _, a := range []string{"x@a.test", "y@a.test", "z@b.test", "w@b.test"} {
			h.tr.Script(a, temp)
		}
		h.start()
		h.enqueue(engSender, engRcpt("x@a.test", 0))
		h.enqueue(engSender, engRcpts("y@a.test", "z@b.test")...)
		h.enqueue(engSender, engRcpt("w@b.test", 0))
		h.waitOutcomes(4) // all deferred, due again in a minute

		h.tr.Block()
		n, err := h.eng.RetryDomain(ctx, "A.TEST.")
		if err != nil || n != 2 {
			t.Fatalf("RetryDomain = %d, %v; want 2", n, err)
		}
		engWaitInFlight(t, h.tr, 3) // the second message goes to b.test too
		n, err = h.eng.RetryAll(ctx)
		if err != nil || n != 1 {
			t.Errorf("RetryAll while two are in flight = %d, %v; want 1 (the b.test one)", n, err)
		}
		engWaitInFlight(t, h.tr, 4)
		h.tr.Unblock()
		h.waitOutcomes(4 + 4)
		if n := len(h.messages()); n != 0 {
			t.Errorf("spool has %d messages; want none", n)
		}
		if n, err := h.eng.RetryAll(ctx); err != nil || n != 0 {
			t.Errorf("RetryAll on an empty spool = %d, %v; want 0", n, err)
		}
	})

	t.Run("bounce", func(t *testing.T) {
		h := newEngHarness(t)
		h.tr.Script("bob@example.net", temp)
		h.start()
		id := h.enqueue(engSender, engRcpts("bob@example.net", "carol@example.net")...)
		h.tr.Script("carol@example.net", deliverytest.OK())
		h.waitOutcomes(2)
		if err := h.eng.Bounce(ctx, id); err != nil {
			t.Fatalf("Bounce: %v", err)
		}
		h.waitFor("the DSN", func() bool { return h.sink.NumCalls() == 1 })
		if n := len(h.messages()); n != 0 {
			t.Errorf("spool has %d messages; want none", n)
		}
		p := parseEngDSN(t, h.sink.Calls()[0].Body)
		if len(p.Rcpts) != 1 {
			t.Fatalf("%d recipient blocks; want 1 (carol was delivered)", len(p.Rcpts))
		}
		want := map[string]string{
			"Final-Recipient": "rfc822; bob@example.net",
			"Action":          "failed",
			"Status":          "5.0.0",
			"Diagnostic-Code": "smtp; bounced by the administrator",
		}
		if got := engRcptFields(p.Rcpts[0]); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("fields %v; want %v", got, want)
		}
	})

	t.Run("remove", func(t *testing.T) {
		h := newEngHarness(t)
		h.tr.Script("bob@example.net", temp)
		h.start()
		id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
		h.waitOutcomes(1)
		if err := h.eng.Remove(ctx, id); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		engSettle()
		if n := len(h.messages()); n != 0 || h.sink.NumCalls() != 0 {
			t.Errorf("spool has %d messages, %d DSNs; want none", n, h.sink.NumCalls())
		}
		if err := h.eng.Remove(ctx, id); !errors.Is(err, delivery.ErrNotFound) {
			t.Errorf("second Remove: %v; want ErrNotFound", err)
		}
	})

	t.Run("busy", func(t *testing.T) {
		h := newEngHarness(t)
		h.tr.Block()
		h.start()
		id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
		engWaitInFlight(t, h.tr, 1)
		for name, op := range map[string]func(context.Context, string) error{
			"Hold": h.eng.Hold, "Bounce": h.eng.Bounce, "Remove": h.eng.Remove,
		} {
			if err := op(ctx, id); !errors.Is(err, delivery.ErrBusy) {
				t.Errorf("%s of a message in flight: %v; want ErrBusy", name, err)
			}
		}
		if err := h.eng.Retry(ctx, id); err != nil {
			t.Errorf("Retry of a message in flight: %v; want nil", err)
		}
		h.tr.Unblock()
		h.waitOutcomes(1)
		if n := len(h.messages()); n != 0 {
			t.Errorf("spool has %d messages; want none", n)
		}
	})
}

// TestEngineRestart is the crash-style restart: engine A is stopped while
// delivering; engine B on the same spool delivers the message.
func TestEngineRestart(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Block()
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	engWaitInFlight(t, h.tr, 1)
	h.stop()

	m := h.get(id)
	if rs := m.Recipients[0]; rs.Status != queue.Deferred || rs.LastReply != "shutdown" || rs.Attempts != 0 || m.Attempts != 0 {
		t.Errorf("after shutdown: message attempts %d, recipient %+v; want deferred \"shutdown\", no attempt counted", m.Attempts, rs)
	}
	if !m.NextAttempt.IsZero() {
		t.Errorf("NextAttempt %v; want still due", m.NextAttempt)
	}
	if s := h.eng.Stats(); s.InFlight != 0 || s.Deferred != 0 || s.DSNs != 0 {
		t.Errorf("stats %+v; want nothing in flight, nothing counted", s)
	}

	tr := &deliverytest.Transport{}
	b, err := delivery.New(delivery.Options{
		Spool:      h.spool,
		Hostname:   engHost,
		Transports: map[string]delivery.Transport{"smtp": tr},
		Log:        slog.New(slog.DiscardHandler),
		Now:        h.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for h.spool.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if n := h.spool.Len(); n != 0 || tr.NumCalls() != 1 {
		t.Errorf("after restart: %d messages, %d calls; want delivered once", n, tr.NumCalls())
	}
}

func TestEngineRunTwice(t *testing.T) {
	h := newEngHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- h.eng.Run(ctx) }()
	}
	first := <-errs // the second Run fails at once
	cancel()
	second := <-errs
	if first == nil || second != nil {
		t.Errorf("two Runs returned %v, then %v; want an error, then nil", first, second)
	}
}

// TestEngineRetryForgetsDeadHost: "the link is up, ETRN now". A next hop
// that refused a connect a moment ago is up now; ETRN (RetryDomain),
// `gateway queue retry` (Retry, RetryAll) make the real SMTP transport dial
// it again at once instead of deferring as "suspended" for the dead-host
// TTL (30s by default).
func TestEngineRetryForgetsDeadHost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry func(ctx context.Context, e *delivery.Engine, id string) error
	}{
		{"RetryDomain", func(ctx context.Context, e *delivery.Engine, _ string) error {
			_, err := e.RetryDomain(ctx, "Link.Test")
			return err
		}},
		{"RetryAll", func(ctx context.Context, e *delivery.Engine, _ string) error {
			_, err := e.RetryAll(ctx)
			return err
		}},
		{"Retry", func(ctx context.Context, e *delivery.Engine, id string) error { return e.Retry(ctx, id) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listenLoopback(t)
			addr := ln.Addr().String()
			ln.Close() // the next hop is down
			tr := newSMTPTransport(t, delivery.SMTPOptions{})
			h := newEngHarness(t, func(o *delivery.Options) {
				o.Transports["smtp"] = tr
				o.Config.Routes = append(o.Config.Routes, config.Route{Domain: "link.test", Transport: "smtp", Via: addr, TLS: delivery.TLSNone})
			})
			h.start()
			id := h.enqueue(engSender, engRcpt("bob@link.test", 0))
			h.waitFor("the failed connect", func() bool { return h.eng.Stats().Deferred == 1 })

			mta := startTestMTA(t, testMTAConfig{listen: addr}) // the link is up
			if err := tc.retry(context.Background(), h.eng, id); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			h.waitFor("an outcome after the retry", func() bool { return h.outcomes() >= 2 })
			if s := h.eng.Stats(); s.Delivered != 1 || s.Deferred != 1 {
				t.Fatalf("stats %+v after the retry; want delivered 1 (and the first deferral)", s)
			}
			if n := len(mta.spool.Messages()); n != 1 {
				t.Errorf("the next hop got %d messages, want 1", n)
			}
		})
	}
}

// TestEngineRetryDuringAttempt: an operator's Retry that comes while the
// message is being tried (the round holds its lease) is not lost: when the
// attempt defers the message, it is tried again at once, not after its
// retry delay. Before, Retry returned nil having done nothing (a CI run of
// TestEngineAdmin/retry met it: the first attempt's record was not done).
func TestEngineRetryDuringAttempt(t *testing.T) {
	h := newEngHarness(t)
	temp := delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 3, 0}, Text: "later"}
	h.tr.Script("bob@example.net", temp)
	h.tr.Block()
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	for deadline := time.Now().Add(10 * time.Second); h.tr.InFlight() != 1; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first attempt did not start in 10 s")
		}
	}
	if err := h.eng.Retry(context.Background(), id); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	h.tr.Unblock()
	h.waitOutcomes(2) // the deferral, then the retry's attempt (delivered: the script's one result is used)
	if n := h.tr.NumCalls(); n != 2 {
		t.Errorf("%d attempts; want 2 (the retry asked during the first)", n)
	}
}
