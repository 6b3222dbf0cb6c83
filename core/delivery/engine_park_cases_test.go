package delivery_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// parkRefused is what the SMTP transport answers for a next hop that
// does not answer.
var parkRefused = delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1},
	Text: "connection failed: mx.example.net [192.0.2.1:25]: connection refused", Local: true}

// parkGone polls for up to 3 s until none of ids is in the spool, and
// fails the test naming the NextAttempt of those left.
func parkGone(t *testing.T, h *engHarness, what string, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var left []string
		for _, id := range ids {
			if m, err := h.spool.Get(id); err == nil {
				left = append(left, fmt.Sprintf("%s due %s (in %v)", id, m.NextAttempt.Format(time.TimeOnly), m.NextAttempt.Sub(h.clock.Now())))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: at %s, with the destination answering again, still queued: %v", what, h.clock.Now().Format(time.TimeOnly), left)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// parkOutage queues n messages to distinct recipients at example.net,
// each refused (4.4.1) at its first attempt only, waits for those
// attempts, and returns the probe and the parked messages.
func parkOutage(t *testing.T, h *engHarness, n int) (probe string, parked []string) {
	t.Helper()
	for i := range n {
		rcpt := fmt.Sprintf("u%d@example.net", i)
		h.tr.Script(rcpt, parkRefused) // later attempts: OK (the destination is back)
		h.enqueue(engSender, engRcpt(rcpt, 0))
	}
	h.waitOutcomes(int64(n))
	for _, m := range h.messages() {
		switch next := m.NextAttempt.Sub(h.clock.Now()); {
		case next < 10*time.Minute && probe == "":
			probe = m.ID
		case next >= 50*time.Minute:
			parked = append(parked, m.ID)
		default:
			t.Fatalf("%s: next attempt in %v; want one probe and the rest parked", m.ID, next)
		}
	}
	if probe == "" || len(parked) != n-1 {
		t.Fatalf("probe %q, parked %v; want a probe and %d parked", probe, parked, n-1)
	}
	return probe, parked
}

// TestParkReplacesAProbeThatIsGone: once the probe
// leaves the queue or stops being tried (the operator removes, bounces or
// holds it), no message of the down destination keeps the retry
// schedule: probeSlack's "another message of its domain takes its place"
// only happens when another message of the domain records an attempt,
// and all of them are parked for an hour. So the destination, back after
// a few minutes, gets its mail only when the hour is over.
//
// Wrong: the parked mail waits parkMax although the destination answers
// again minutes later. Right: when the probe is gone (or probeDue +
// probeSlack passes without it), another parked message becomes the
// probe and is tried on the retry schedule; here, with the destination
// back, that attempt reaches the server and releases the rest, well
// within the ten minutes the test waits.
func TestParkReplacesAProbeThatIsGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(e *delivery.Engine, ctx context.Context, id string) error
	}{
		{"removed", (*delivery.Engine).Remove},
		{"bounced", (*delivery.Engine).Bounce},
		{"held", (*delivery.Engine).Hold},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newEngHarness(t)
			h.start()
			probe, parked := parkOutage(t, h, 4)
			if err := tc.lose(h.eng, t.Context(), probe); err != nil {
				t.Fatalf("%s the probe: %v", tc.name, err)
			}
			// The destination answers again (the scripts are used up);
			// ten minutes pass: many times the probe's one-minute retry.
			h.clock.Set(engT0.Add(10 * time.Minute))
			h.eng.Kick()
			parkGone(t, h, "probe "+tc.name, parked...)
		})
	}
}

// TestParkReplacesAProbeThatExpires: the probe is the
// oldest message of the destination and reaches max_lifetime first; it
// bounces (5.4.7) and is deleted, and, as above, nothing takes its
// place: the messages parked behind it wait out their parking (here
// until their own expiry cap, about T0+70m) although the destination
// answers again right after the probe's expiry (about T0+50m).
//
// Wrong: no attempt to the destination between the probe's expiry and
// the end of the others' parking. Right: one of them becomes the probe
// and keeps the retry schedule (5 minutes here), so the mail is
// delivered within retry + probeSlack of the expiry; the test looks 7
// minutes after it.
func TestParkReplacesAProbeThatExpires(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Config.Retry = []time.Duration{5 * time.Minute}
		o.Config.MaxLifetime = 50 * time.Minute
	})
	var refusals []delivery.Result
	for range 20 {
		refusals = append(refusals, parkRefused)
	}
	h.tr.Script("old@example.net", refusals...)
	h.start()
	probe := h.enqueue(engSender, engRcpt("old@example.net", 0))
	h.waitOutcomes(1)
	// retry steps the clock to the probe's next attempt and waits for it;
	// false once the probe is gone.
	retry := func() bool {
		t.Helper()
		m, err := h.spool.Get(probe)
		if err != nil {
			return false
		}
		h.clock.Set(m.NextAttempt)
		h.eng.Kick()
		h.waitFor("the probe's attempt", func() bool {
			n, err := h.spool.Get(probe)
			return err != nil || n.Attempts > m.Attempts
		})
		return true
	}
	for h.clock.Now().Before(engT0.Add(20 * time.Minute)) {
		retry()
	}

	// Right after one of the probe's attempts, two more messages:
	// refused, and parked behind it until min(now+1h, their expiry).
	var parked []string
	for _, rcpt := range []string{"a@example.net", "b@example.net"} {
		h.tr.Script(rcpt, parkRefused)
		parked = append(parked, h.enqueue(engSender, engRcpt(rcpt, 0)))
	}
	h.waitFor("the new messages tried and parked", func() bool {
		for _, id := range parked {
			if m, err := h.spool.Get(id); err != nil || m.Attempts == 0 {
				return false
			}
		}
		return true
	})
	wake := h.get(parked[0]).NextAttempt
	for _, id := range parked[1:] {
		if next := h.get(id).NextAttempt; next.Before(wake) {
			wake = next
		}
	}

	// The probe goes on being refused until it expires.
	for i := 0; retry(); i++ {
		if i == 20 {
			t.Fatal("the probe did not expire")
		}
	}
	// From now on the destination answers (the scripts are used up).
	look := h.clock.Now().Add(7 * time.Minute)
	if !look.Before(wake) {
		t.Fatalf("the parked messages wake at %v, before the test looks (%v)", wake, look)
	}
	h.clock.Set(look)
	h.eng.Kick()
	parkGone(t, h, "probe expired", parked...)
}

// TestParkReleasesAMessageInFlight: a message whose job
// failed with 4.4.1 just before the destination was reached again is
// parked by its record (parkedNext), but it still holds its lease until
// its job ends (the notification hooks run in between, and the spool's
// patient Replace alone waits up to 20 ms). The release goroutine's
// retryWhere skips leased messages (acquire fails) and never looks again,
// so that message waits the whole hour while the rest of the
// destination's mail is delivered.
//
// Wrong: x@example.net, parked at T0+1m by the record that finished
// while the destination came back, still waits until about T0+2h. Right:
// a message parked while its domain is released is made due too (e.g.
// the release notes the leased IDs it skipped, or parkedNext checks the
// domain again when the job ends), and is delivered with the rest.
//
// The deferred notification hook of x@example.net stands for a slow
// webhook: it holds x's job between its record and its end, so that the
// race is deterministic.
func TestParkReleasesAMessageInFlight(t *testing.T) {
	entered := make(chan struct{})
	proceed := make(chan struct{})
	handler := hooktest.Func{HandlerName: "notify", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
		if req.Stage == sdk.StageDeferred && req.Rcpt != nil && req.Rcpt.Address.String() == "x@example.net" {
			select {
			case <-entered:
			default:
				close(entered)
			}
			<-proceed
		}
		return sdk.Decision{}, sdk.Effects{}, nil
	}}
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: handler})
	})
	h.tr.Script("p@example.net", parkRefused) // then OK: the probe's retry reaches the server
	h.tr.Script("q@example.net", parkRefused)
	h.tr.Script("x@example.net", parkRefused)
	h.start()
	defer func() {
		select {
		case <-proceed:
		default:
			close(proceed)
		}
	}()

	probe := h.enqueue(engSender, engRcpt("p@example.net", 0))
	h.waitOutcomes(1)
	h.clock.Set(engT0.Add(time.Minute / 2))
	q := h.enqueue(engSender, engRcpt("q@example.net", 0)) // parked behind the probe
	h.waitOutcomes(2)
	x := h.enqueue(engSender, engRcpt("x@example.net", 0)) // parked too, but its job has not ended
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("x@example.net's deferred notification never came")
	}
	if next := h.get(x).NextAttempt.Sub(h.clock.Now()); next < 50*time.Minute {
		t.Fatalf("x: next attempt in %v; want it parked", next)
	}

	// The probe's retry reaches the server: its domain is released, and
	// q (listed after x: a later ID) is delivered.
	h.clock.Set(h.get(probe).NextAttempt)
	h.eng.Kick()
	parkGone(t, h, "the release", probe, q)

	close(proceed) // x's job ends
	parkGone(t, h, "the message in flight at the release", x)
}

// TestParkOnlyAServerReleases: the release rule
// is "any outcome but 4.4.1", not "a server answered": a job of the down
// domain that never reached the transport releases all its parked mail.
// Here a looping message (too many Received fields: 5.4.6 before any
// connection) does; a predelivery hook's reject, defer, drop or
// rewrite of the recipient (expanded: Delivered without a server), a
// held-and-expired job (4.3.2), an unknown transport (4.3.5) or a DNS
// failure do the same. With 20,000 parked messages each such job makes
// them all due at once: 20,000 attempts, all refused again, 20,000
// writes, which the parking was meant to save.
//
// Wrong: the parked messages are made due (and tried) after the loop's
// bounce. Right: only an outcome from a server that answered
// (RemoteMTA set, or a delivery) counts as reaching the destination;
// the parked message keeps its hour and the transport sees no call.
func TestParkOnlyAServerReleases(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) { o.MaxHops = 1 })
	down := parkRefused
	h.tr.Default = &down // the destination stays down all along
	h.start()
	probe := h.enqueue(engSender, engRcpt("p@example.net", 0))
	h.waitOutcomes(1)
	parked := h.enqueue(engSender, engRcpt("q@example.net", 0))
	h.waitOutcomes(2)
	if next := h.get(parked).NextAttempt.Sub(h.clock.Now()); next < 50*time.Minute {
		t.Fatalf("q: next attempt in %v; want it parked behind %s", next, probe)
	}
	calls := h.tr.NumCalls()

	loop := "Received: from a by b; Sun, 1 Mar 2026 11:59:00 +0000\r\n" +
		"Received: from b by c; Sun, 1 Mar 2026 11:58:00 +0000\r\n" + engTrace
	h.enqueueRaw(engSender, engRcpts("r@example.net"), loop, engBody)
	h.waitFor("the looping message bounced", func() bool { return h.eng.Stats().Failed == 1 })
	time.Sleep(200 * time.Millisecond) // the release goroutine, if any, and the attempts it causes
	h.waitFor("quiet", func() bool { return true })

	if got := h.tr.NumCalls() - calls; got != 0 {
		t.Errorf("%d calls to the transport after a job that reached no server; want 0", got)
	}
	if next := h.get(parked).NextAttempt.Sub(h.clock.Now()); next < 50*time.Minute {
		t.Errorf("q: next attempt in %v after the loop's bounce; want it still parked (no server answered)", next)
	}
}

// TestParkedCopyIsDueOnTakeover: a message delivered to bob at a domain
// that answers and parked for carol at one found down (another message is
// its probe) has its copy told of bob's delivery, in the record that also
// carries the parking, an hour away. A node that takes the copy over
// (queue.Spool.Import) knows nothing of the domain being down: there the
// message is due at once, with bob delivered.
func TestParkedCopyIsDueOnTakeover(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &parkRefused // example.net is down; up.example answers
	h.tr.Script("bob@up.example", deliverytest.OK())
	h.start()
	h.enqueue(engSender, engRcpt("probe@example.net", 0))
	h.waitOutcomes(1)
	id := h.enqueue(engSender, engRcpt("bob@up.example", 0), engRcpt("carol@example.net", 0))
	h.waitOutcomes(3)
	if next := h.get(id).NextAttempt.Sub(h.clock.Now()); next < 50*time.Minute {
		t.Fatalf("next attempt in %v; want the message parked (about an hour)", next)
	}
	rec := h.replica.record(id)
	copied, err := queue.DecodeRecord(rec)
	if err != nil || copied.Recipients[0].Status != queue.Delivered {
		t.Fatalf("the copy's record (%v) does not have bob delivered: %s", err, rec)
	}

	taker, err := queue.Open(t.TempDir(), queue.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	nid, err := taker.Import(t.Context(), rec, h.body(id))
	if err != nil {
		t.Fatal(err)
	}
	var due []string
	if err := taker.DueIDs(h.clock.Now(), func(id string, _ time.Time) bool { due = append(due, id); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(due, []string{nid}) {
		t.Errorf("due on the taker: %v; want %s at once, not at the parking's end (copy: next attempt %v)",
			due, nid, copied.NextAttempt.Sub(h.clock.Now()))
	}
	if m, err := taker.Get(nid); err != nil || m.Recipients[0].Status != queue.Delivered {
		t.Errorf("the taker's message (%v): bob not delivered", err)
	}
}
