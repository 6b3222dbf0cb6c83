package delivery_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

var engT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	engHost   = "mx.example.org"
	engSender = "alice@example.com"
	engBody   = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\nSubject: lunch\r\n\r\nFriday?\r\n"
	engTrace  = "Received: from client.example.com by mx.example.org; Sun, 1 Mar 2026 12:00:00 +0000\r\n"
)

// engHarness is an engine on a real spool in a temporary folder, with a fake
// clock, a scripted transport "smtp" for everything and a transport "sink"
// for the sender's domain example.com, where DSNs go.
type engHarness struct {
	t     *testing.T
	clock *deliverytest.Clock
	spool *queue.Spool
	tr    *deliverytest.Transport // "smtp"
	sink  *deliverytest.Transport // "sink": example.com
	opt   delivery.Options
	eng   *delivery.Engine
	stop  func() // cancels Run and waits for it
	// replica is the spool's replica: it fails every new message while
	// its down is set (a cluster node cut off from NATS).
	replica *downReplica
	// editEnv, when set, changes the envelope of each message enqueued.
	editEnv func(*envelope.Envelope)
}

// downReplica is a queue.Replica that keeps each message's newest
// record (its copy's, or its last update's) and no body, and fails every
// copy while down is set.
type downReplica struct {
	down    atomic.Bool
	mu      sync.Mutex
	records map[string][]byte
}

func (r *downReplica) Put(_ context.Context, m *queue.Message, rec []byte, body io.Reader) func(context.Context) error {
	io.Copy(io.Discard, body)
	down := r.down.Load()
	if !down {
		r.keep(m.ID, rec)
	}
	return func(context.Context) error {
		if down {
			return errors.New("replica down")
		}
		return nil
	}
}
func (r *downReplica) Update(m *queue.Message, rec []byte) { r.keep(m.ID, rec) }
func (r *downReplica) Remove(string)                       {}

func (r *downReplica) keep(id string, rec []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.records == nil {
		r.records = map[string][]byte{}
	}
	r.records[id] = slices.Clone(rec)
}

// record is the newest record the replica has of message id.
func (r *downReplica) record(id string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.records[id]
}

// newEngHarness builds the engHarness; edit adjusts the options before New. The
// engine is not running until start.
func newEngHarness(t *testing.T, edit ...func(*delivery.Options)) *engHarness {
	t.Helper()
	h := &engHarness{
		t:       t,
		clock:   deliverytest.NewClock(engT0),
		tr:      &deliverytest.Transport{},
		sink:    &deliverytest.Transport{},
		replica: &downReplica{},
	}
	var err error
	h.spool, err = queue.Open(t.TempDir(), queue.Options{Now: h.clock.Now, Replica: h.replica})
	if err != nil {
		t.Fatalf("queue.Open: %v", err)
	}
	t.Cleanup(func() { h.spool.Close() })
	h.opt = delivery.Options{
		Spool:      h.spool,
		Hostname:   engHost,
		Transports: map[string]delivery.Transport{"smtp": h.tr, "sink": h.sink},
		Config: config.Delivery{
			Routes: []config.Route{{Domain: "example.com", Transport: "sink"}},
		},
		Log: slog.New(slog.DiscardHandler),
		Now: h.clock.Now,
	}
	for _, f := range edit {
		f(&h.opt)
	}
	h.eng, err = delivery.New(h.opt)
	if err != nil {
		t.Fatalf("delivery.New: %v", err)
	}
	return h
}

// start runs the engine until the test ends.
func (h *engHarness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.eng.Run(ctx) }()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			h.t.Errorf("Run did not return after cancel")
		}
	}
	h.t.Cleanup(h.stop)
}

func engAddr(s string) envelope.Address {
	if s == "" {
		return envelope.Address{}
	}
	local, domain, _ := strings.Cut(s, "@")
	return envelope.Address{Local: local, Domain: domain}
}

func engRcpt(s string, n envelope.Notify) envelope.Recipient {
	return envelope.Recipient{Address: engAddr(s), Notify: n}
}

func engRcpts(list ...string) []envelope.Recipient {
	var out []envelope.Recipient
	for _, s := range list {
		out = append(out, engRcpt(s, 0))
	}
	return out
}

// enqueueRaw commits a message with the given header (trace) and content,
// and kicks the engine.
func (h *engHarness) enqueueRaw(sender string, rs []envelope.Recipient, header, content string) string {
	h.t.Helper()
	ctx := context.Background()
	d, err := h.spool.Create(ctx)
	if err != nil {
		h.t.Fatalf("Create: %v", err)
	}
	if _, err := io.WriteString(d, content); err != nil {
		h.t.Fatalf("Write: %v", err)
	}
	env := &envelope.Envelope{Sender: engAddr(sender), Recipients: rs, Received: h.clock.Now(), ClientIP: "192.0.2.7", ClientHELO: "client.example.com"}
	if h.editEnv != nil {
		h.editEnv(env)
	}
	if err := d.Commit(ctx, env, []byte(header)); err != nil {
		h.t.Fatalf("Commit: %v", err)
	}
	h.eng.Kick()
	return d.ID()
}

func (h *engHarness) enqueue(sender string, rs ...envelope.Recipient) string {
	h.t.Helper()
	return h.enqueueRaw(sender, rs, engTrace, engBody)
}

// waitFor polls cond until it holds and no delivery is in flight.
func (h *engHarness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() && h.eng.Stats().InFlight == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s; stats %+v", what, h.eng.Stats())
}

// outcomes is the number of recipient outcomes recorded so far.
func (h *engHarness) outcomes() int64 {
	s := h.eng.Stats()
	return s.Delivered + s.Deferred + s.Failed
}

// waitOutcomes waits until n recipient outcomes have been recorded.
func (h *engHarness) waitOutcomes(n int64) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d outcomes", n), func() bool { return h.outcomes() >= n })
}

// attemptAt moves the clock to at, kicks, and waits for n more outcomes.
func (h *engHarness) attemptAt(at time.Time, n int64) {
	h.t.Helper()
	before := h.outcomes()
	h.clock.Set(at)
	h.eng.Kick()
	h.waitOutcomes(before + n)
}

func (h *engHarness) get(id string) *queue.Message {
	h.t.Helper()
	m, err := h.spool.Get(id)
	if err != nil {
		h.t.Fatalf("Get(%s): %v", id, err)
	}
	return m
}

// draft starts a message in the spool with content body.
func (h *engHarness) draft(body string) *queue.Draft {
	h.t.Helper()
	d, err := h.spool.Create(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	io.WriteString(d, body)
	return d
}

// messages lists the spool.
func (h *engHarness) messages() []*queue.Message {
	h.t.Helper()
	var out []*queue.Message
	if err := h.spool.List(func(m *queue.Message) bool { out = append(out, m); return true }); err != nil {
		h.t.Fatalf("List: %v", err)
	}
	return out
}

func (h *engHarness) body(id string) []byte {
	h.t.Helper()
	rc, err := h.spool.Body(id)
	if err != nil {
		h.t.Fatalf("Body(%s): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		h.t.Fatalf("Body(%s): %v", id, err)
	}
	return b
}

// engDSN is a DSN read back with net/mail, mime/multipart and
// net/textproto.
type engDSN struct {
	Header     mail.Header
	ReportType string
	Human      string
	PerMessage textproto.MIMEHeader
	Rcpts      []textproto.MIMEHeader
	Original   string // Content-Type of part 3
}

func parseEngDSN(t *testing.T, raw []byte) engDSN {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v\n%s", err, raw)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" {
		t.Fatalf("Content-Type %q: %q, %v; want multipart/report", msg.Header.Get("Content-Type"), mt, err)
	}
	p := engDSN{Header: msg.Header, ReportType: params["report-type"]}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextRawPart: %v", err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("reading part %d: %v", i, err)
		}
		switch i {
		case 0:
			p.Human = string(b)
		case 1:
			if ct := part.Header.Get("Content-Type"); ct != "message/delivery-status" {
				t.Fatalf("part 2 Content-Type %q; want message/delivery-status", ct)
			}
			r := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
			for j := 0; ; j++ {
				h, err := r.ReadMIMEHeader()
				if len(h) > 0 {
					if j == 0 {
						p.PerMessage = h
					} else {
						p.Rcpts = append(p.Rcpts, h)
					}
				}
				if err != nil {
					break
				}
			}
		case 2:
			p.Original = part.Header.Get("Content-Type")
		}
	}
	return p
}

// engRcptFields is the fields of a per-recipient block that tests compare.
func engRcptFields(h textproto.MIMEHeader) map[string]string {
	out := map[string]string{}
	for _, k := range []string{"Final-Recipient", "Action", "Status", "Diagnostic-Code", "Remote-Mta"} {
		if v := h.Get(k); v != "" {
			out[k] = v
		}
	}
	return out
}

// engDSNCalls returns the sink's calls that carried a DSN (null sender).
func engDSNCalls(tr *deliverytest.Transport) []deliverytest.Call {
	var out []deliverytest.Call
	for _, c := range tr.Calls() {
		if c.Job.Envelope.Sender.IsNull() {
			out = append(out, c)
		}
	}
	return out
}

// checkEngDSNEnvelope checks how a DSN was queued: null sender, one recipient
// with NOTIFY=NEVER.
func checkEngDSNEnvelope(t *testing.T, env *envelope.Envelope, to string) {
	t.Helper()
	if !env.Sender.IsNull() {
		t.Errorf("DSN sender = %q; want <>", env.Sender)
	}
	want := []envelope.Recipient{engRcpt(to, envelope.NotifyNever)}
	if diff := cmp.Diff(want, env.Recipients); diff != "" {
		t.Errorf("DSN recipients (-want +got):\n%s", diff)
	}
}

func TestEngineDelivered(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	id := h.enqueue(engSender, engRcpt("Bob@Example.NET", 0))
	h.waitOutcomes(1)

	if got := h.messages(); len(got) != 0 {
		t.Errorf("spool has %d messages after delivery; want none", len(got))
	}
	calls := h.tr.Calls()
	if len(calls) != 1 {
		t.Fatalf("transport got %d calls; want 1", len(calls))
	}
	job := calls[0].Job
	if job.ID != id || job.Domain != "example.net" || job.Envelope.Sender != engAddr(engSender) {
		t.Errorf("job ID %q domain %q sender %q; want %q example.net %s", job.ID, job.Domain, job.Envelope.Sender, id, engSender)
	}
	if diff := cmp.Diff(delivery.Route{Transport: "smtp", TLS: "opportunistic"}, job.Route); diff != "" {
		t.Errorf("route (-want +got):\n%s", diff)
	}
	if want := engTrace + engBody; string(calls[0].Body) != want || job.Size != int64(len(want)) {
		t.Errorf("body %q size %d; want %q size %d", calls[0].Body, job.Size, want, len(want))
	}
	if n := len(h.sink.Calls()); n != 0 {
		t.Errorf("sink got %d calls; want no DSN", n)
	}
	if s := h.eng.Stats(); s.Delivered != 1 || s.DSNs != 0 || s.InFlight != 0 {
		t.Errorf("stats %+v; want 1 delivered, no DSN", s)
	}
}

func TestEngineDeferred(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Script("bob@example.net", deliverytest.Temp(451, [3]uint16{4, 7, 1}, "try later"))
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)

	m := h.get(id)
	want := []queue.RecipientState{{Status: queue.Deferred, LastReply: "451 4.7.1 try later", Attempts: 1, Updated: engT0}}
	if diff := cmp.Diff(want, m.Recipients); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}
	if m.Attempts != 1 {
		t.Errorf("Attempts = %d; want 1", m.Attempts)
	}
	if d := m.NextAttempt.Sub(engT0); d < 54*time.Second || d > 66*time.Second {
		t.Errorf("NextAttempt = now+%v; want 1m±10%%", d)
	}
	if s := h.eng.Stats(); s.Deferred != 1 || s.DSNs != 0 {
		t.Errorf("stats %+v; want 1 deferred, no DSN", s)
	}
}

func TestEngineRetrySchedule(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &delivery.Result{Class: delivery.Temporary, Code: 421, Text: "busy"}
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)

	wants := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, time.Hour}
	at := engT0
	for i, want := range wants {
		if i > 0 {
			h.attemptAt(at, 1)
		}
		m := h.get(id)
		d := m.NextAttempt.Sub(at)
		if lo, hi := want*9/10, want*11/10; d < lo || d > hi {
			t.Errorf("after attempt %d: next in %v; want %v±10%%", i+1, d, want)
		}
		if m.Attempts != i+1 || m.Recipients[0].Attempts != i+1 {
			t.Errorf("after attempt %d: Attempts %d, recipient %d; want %d", i+1, m.Attempts, m.Recipients[0].Attempts, i+1)
		}
		at = m.NextAttempt
	}
	if n := h.tr.NumCalls(); n != len(wants) {
		t.Errorf("%d calls; want %d", n, len(wants))
	}
}

func TestEnginePermanentFailureBounces(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Script("bob@example.net", deliverytest.Perm(550, [3]uint16{5, 1, 1}, "no such user"))
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitFor("the DSN's delivery", func() bool { return len(h.sink.Calls()) == 1 })

	if got := h.messages(); len(got) != 0 {
		t.Errorf("spool has %d messages; want none (original and DSN delivered)", len(got))
	}
	c := h.sink.Calls()[0]
	checkEngDSNEnvelope(t, c.Job.Envelope, engSender)
	p := parseEngDSN(t, c.Body)
	if p.ReportType != "delivery-status" {
		t.Errorf("report-type %q; want delivery-status", p.ReportType)
	}
	if got := p.Header.Get("To"); got != "<"+engSender+">" {
		t.Errorf("To %q; want <%s>", got, engSender)
	}
	if got := p.PerMessage.Get("X-Gateway-Queue-Id"); got != id {
		t.Errorf("X-Gateway-Queue-ID %q; want %q", got, id)
	}
	want := []map[string]string{{
		"Final-Recipient": "rfc822; bob@example.net",
		"Action":          "failed",
		"Status":          "5.1.1",
		"Diagnostic-Code": "smtp; 550 5.1.1 no such user",
		"Remote-Mta":      "dns; mx.test",
	}}
	var got []map[string]string
	for _, r := range p.Rcpts {
		got = append(got, engRcptFields(r))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("per-recipient fields (-want +got):\n%s", diff)
	}
	if p.Original != "message/rfc822" {
		t.Errorf("part 3 %q; want message/rfc822", p.Original)
	}
	if s := h.eng.Stats(); s.Failed != 1 || s.DSNs != 1 {
		t.Errorf("stats %+v; want 1 failed, 1 DSN", s)
	}
}

func TestEngineRecipientsGroupedByDomain(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	h.enqueue(engSender, engRcpts("a@one.test", "b@Two.test", "c@ONE.test")...)
	h.waitOutcomes(3)

	got := map[string][]string{}
	for _, c := range h.tr.Calls() {
		got[c.Job.Domain] = c.Rcpts()
	}
	want := map[string][]string{"one.test": {"a@one.test", "c@ONE.test"}, "two.test": {"b@Two.test"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("jobs by domain (-want +got):\n%s", diff)
	}
	if n := len(h.messages()); n != 0 {
		t.Errorf("spool has %d messages; want none", n)
	}
}

func TestEnginePartialDelivery(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Script("b@one.test", deliverytest.Temp(450, [3]uint16{4, 2, 1}, "mailbox busy"))
	h.start()
	id := h.enqueue(engSender, engRcpts("a@one.test", "b@one.test")...)
	h.waitOutcomes(2)

	m := h.get(id)
	if st := []queue.Status{m.Recipients[0].Status, m.Recipients[1].Status}; !slices.Equal(st, []queue.Status{queue.Delivered, queue.Deferred}) {
		t.Fatalf("statuses %v; want [delivered deferred]", st)
	}
	h.attemptAt(m.NextAttempt, 1)
	calls := h.tr.Calls()
	if len(calls) != 2 {
		t.Fatalf("%d calls; want 2", len(calls))
	}
	if got := calls[1].Rcpts(); !slices.Equal(got, []string{"b@one.test"}) {
		t.Errorf("retry went to %v; want only [b@one.test]", got)
	}
	if n := len(h.messages()); n != 0 {
		t.Errorf("spool has %d messages; want none", n)
	}
}

func TestEngineLifetimeExpiry(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 4, 1}, Text: "no answer", RemoteMTA: "mx.example.net"}
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", envelope.NotifyFailure))
	h.waitOutcomes(1)
	if h.get(id).Recipients[0].Status != queue.Deferred {
		t.Fatalf("not deferred after the first attempt")
	}

	// Just before the lifetime: still deferred.
	h.attemptAt(engT0.Add(5*24*time.Hour-time.Minute), 1)
	if m := h.get(id); m.Recipients[0].Status != queue.Deferred {
		t.Fatalf("status %v before the lifetime ended; want deferred", m.Recipients[0].Status)
	}
	// The first attempt past it fails for good.
	h.attemptAt(engT0.Add(5*24*time.Hour+10*time.Minute), 1) // past the retry 5m±10% after the last
	h.waitFor("the DSN", func() bool { return len(h.sink.Calls()) == 1 })
	if n := len(h.messages()); n != 0 {
		t.Errorf("spool has %d messages; want none", n)
	}
	p := parseEngDSN(t, h.sink.Calls()[0].Body)
	want := map[string]string{
		"Final-Recipient": "rfc822; bob@example.net",
		"Action":          "failed",
		"Status":          "5.4.7",
		"Diagnostic-Code": "smtp; 451 4.4.1 no answer",
		"Remote-Mta":      "dns; mx.example.net",
	}
	if len(p.Rcpts) != 1 {
		t.Fatalf("%d recipient blocks; want 1", len(p.Rcpts))
	}
	if diff := cmp.Diff(want, engRcptFields(p.Rcpts[0])); diff != "" {
		t.Errorf("per-recipient fields (-want +got):\n%s", diff)
	}
}

// TestEngineDelayWarningWaitsForItsDSN: a delay warning whose DSN cannot
// be queued (the spool refuses new mail: a cluster node cut off from
// NATS) is not recorded as sent; the next attempt sends it.
func TestEngineDelayWarningWaitsForItsDSN(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 7, 1}, Text: "greylisted"}
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)
	h.replica.down.Store(true)
	h.attemptAt(engT0.Add(4*time.Hour+30*time.Minute), 1)
	if got := h.get(id).DelayWarned; got {
		t.Fatal("the warning's DSN was not queued, yet the message is recorded as warned")
	}
	h.replica.down.Store(false)
	h.attemptAt(engT0.Add(9*time.Hour), 1)
	h.waitFor("the delay warning", func() bool { return len(engDSNCalls(h.sink)) > 0 })
	if got := h.get(id).DelayWarned; !got {
		t.Error("the warning was sent, but the message is not recorded as warned")
	}
}

func TestEngineDelayWarningOnce(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Default = &delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: [3]uint16{4, 7, 1}, Text: "greylisted"}
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0), engRcpt("carol@example.net", envelope.NotifyFailure))
	h.waitOutcomes(2)

	// Attempts before 4h, the first after, and more after: one warning.
	// Each is past the previous one's retry time (1m, 5m, 15m, 30m, 1h ±10%).
	for _, at := range []time.Duration{time.Hour, 3*time.Hour + 59*time.Minute, 4*time.Hour + 30*time.Minute, 5*time.Hour + 10*time.Minute, 9 * time.Hour} {
		h.attemptAt(engT0.Add(at), 2)
		want := 0
		if at > 4*time.Hour {
			want = 1
			// The warning is queued by the attempt and delivered after it.
			h.waitFor("the delay warning", func() bool { return len(engDSNCalls(h.sink)) > 0 })
		}
		if got := len(engDSNCalls(h.sink)); got != want {
			t.Fatalf("after the attempt at +%v: %d DSNs; want %d", at, got, want)
		}
		if got := h.get(id).DelayWarned; got != (want == 1) {
			t.Fatalf("after the attempt at +%v: stored DelayWarned %v; want %v", at, got, want == 1)
		}
	}
	if h.get(id).Attempts != 6 {
		t.Errorf("Attempts %d; want 6", h.get(id).Attempts)
	}
	c := engDSNCalls(h.sink)[0]
	checkEngDSNEnvelope(t, c.Job.Envelope, engSender)
	p := parseEngDSN(t, c.Body)
	if len(p.Rcpts) != 1 {
		t.Fatalf("%d recipient blocks; want 1 (carol asked for FAILURE only)", len(p.Rcpts))
	}
	r := p.Rcpts[0]
	want := map[string]string{
		"Final-Recipient": "rfc822; bob@example.net",
		"Action":          "delayed",
		"Status":          "4.7.1",
		"Diagnostic-Code": "smtp; 451 4.7.1 greylisted",
	}
	if diff := cmp.Diff(want, engRcptFields(r)); diff != "" {
		t.Errorf("per-recipient fields (-want +got):\n%s", diff)
	}
	if got, want := r.Get("Will-Retry-Until"), engT0.Add(5*24*time.Hour).Format("Mon, 02 Jan 2006 15:04:05 -0700"); got != want {
		t.Errorf("Will-Retry-Until %q; want %q", got, want)
	}
	if p.Original != "text/rfc822-headers" {
		t.Errorf("part 3 %q; want text/rfc822-headers", p.Original)
	}
}

func TestEngineNotify(t *testing.T) {
	tests := []struct {
		name   string
		notify envelope.Notify
		result delivery.Result
		action string // "" = no DSN
	}{
		{"failure by default", 0, deliverytest.Perm(550, [3]uint16{5, 1, 1}, "no"), "failed"},
		{"NEVER on failure", envelope.NotifyNever, deliverytest.Perm(550, [3]uint16{5, 1, 1}, "no"), ""},
		{"DELAY only on failure", envelope.NotifyDelay, deliverytest.Perm(550, [3]uint16{5, 1, 1}, "no"), ""},
		{"no SUCCESS on delivery", 0, deliverytest.OK(), ""},
		{"SUCCESS on delivery", envelope.NotifySuccess, deliverytest.OK(), "delivered"},
		{"SUCCESS,FAILURE on failure", envelope.NotifySuccess | envelope.NotifyFailure, deliverytest.Perm(550, [3]uint16{5, 1, 1}, "no"), "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newEngHarness(t)
			h.tr.Script("bob@example.net", tt.result)
			h.start()
			h.enqueue(engSender, engRcpt("bob@example.net", tt.notify))
			wantDSNs := 0
			if tt.action != "" {
				wantDSNs = 1
			}
			h.waitFor("the outcome", func() bool { return h.outcomes() >= int64(1+wantDSNs) })
			calls := engDSNCalls(h.sink)
			if len(calls) != wantDSNs {
				t.Fatalf("%d DSNs; want %d", len(calls), wantDSNs)
			}
			if wantDSNs == 0 {
				return
			}
			p := parseEngDSN(t, calls[0].Body)
			if len(p.Rcpts) != 1 || p.Rcpts[0].Get("Action") != tt.action {
				t.Errorf("DSN recipient blocks %v; want one with Action %s", p.Rcpts, tt.action)
			}
		})
	}
}

func TestEngineNullSenderFailure(t *testing.T) {
	perm := deliverytest.Perm(550, [3]uint16{5, 1, 1}, "no such user")

	t.Run("no postmaster: dropped", func(t *testing.T) {
		h := newEngHarness(t)
		h.tr.Script("bob@example.net", perm)
		h.start()
		h.enqueue("", engRcpt("bob@example.net", envelope.NotifyNever))
		h.waitOutcomes(1)
		if got := h.messages(); len(got) != 0 {
			t.Errorf("spool has %d messages; want none", len(got))
		}
		if s := h.eng.Stats(); s.DSNs != 0 || h.sink.NumCalls() != 0 {
			t.Errorf("stats %+v, sink calls %d; want no DSN", s, h.sink.NumCalls())
		}
	})

	t.Run("to the postmaster", func(t *testing.T) {
		h := newEngHarness(t, func(o *delivery.Options) { o.Config.Postmaster = "postmaster@example.com" })
		h.tr.Script("bob@example.net", perm)
		h.sink.Default = &delivery.Result{Class: delivery.Temporary, Code: 451, Text: "later"}
		h.start()
		id := h.enqueue("", engRcpt("bob@example.net", envelope.NotifyNever))
		h.waitFor("the double bounce's first attempt", func() bool { return h.sink.NumCalls() == 1 })

		msgs := h.messages()
		if len(msgs) != 1 || msgs[0].ID == id {
			t.Fatalf("spool has %d messages; want only the double bounce", len(msgs))
		}
		m := msgs[0]
		checkEngDSNEnvelope(t, &m.Envelope, "postmaster@example.com")
		p := parseEngDSN(t, h.body(m.ID))
		if got := p.Header.Get("To"); got != "<postmaster@example.com>" {
			t.Errorf("To %q; want <postmaster@example.com>", got)
		}
		if len(p.Rcpts) != 1 || p.Rcpts[0].Get("Action") != "failed" || p.Rcpts[0].Get("Final-Recipient") != "rfc822; bob@example.net" {
			t.Errorf("recipient blocks %v; want bob@example.net failed", p.Rcpts)
		}

		// The double bounce failing for good ends it: no third message.
		h.sink.Script("postmaster@example.com", perm)
		h.attemptAt(m.NextAttempt, 1)
		if got := h.messages(); len(got) != 0 {
			t.Errorf("spool has %d messages after the double bounce failed; want none", len(got))
		}
		if s := h.eng.Stats(); s.DSNs != 1 {
			t.Errorf("%d DSNs; want 1", s.DSNs)
		}
	})
}

func TestEngineRoutes(t *testing.T) {
	lmtp := &deliverytest.Transport{}
	smart := &deliverytest.Transport{}
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Transports["lmtp"] = lmtp
		o.Transports["smart"] = smart
		o.Config.TLS = "require"
		o.Config.Routes = append(o.Config.Routes,
			config.Route{Domain: "*", Transport: "smart", Via: "smarthost.example.org:587", TLS: "none"},
			config.Route{Domain: "local.test", Transport: "lmtp", Path: "/run/lmtp.sock"},
			config.Route{Domain: "broken.test", Transport: "nope"},
		)
	})
	h.start()
	id := h.enqueue(engSender, engRcpts("a@local.test", "b@remote.test", "c@broken.test")...)
	h.waitOutcomes(3)

	if c := lmtp.Calls(); len(c) != 1 || c[0].Job.Domain != "local.test" ||
		c[0].Job.Route != (delivery.Route{Transport: "lmtp", Path: "/run/lmtp.sock", TLS: "require"}) {
		t.Errorf("lmtp calls %+v; want one for local.test with the exact route", c)
	}
	if c := smart.Calls(); len(c) != 1 || c[0].Job.Domain != "remote.test" ||
		c[0].Job.Route != (delivery.Route{Transport: "smart", Via: "smarthost.example.org:587", TLS: "none"}) {
		t.Errorf("smart calls %+v; want one for remote.test by the * route", c)
	}
	if n := h.tr.NumCalls(); n != 0 {
		t.Errorf("smtp got %d calls; want none", n)
	}
	m := h.get(id)
	if rs := m.Recipients[2]; rs.Status != queue.Deferred || !strings.Contains(rs.LastReply, `no transport named "nope"`) {
		t.Errorf("broken.test recipient %+v; want deferred naming the transport", rs)
	}
	if h.eng.Stats().DSNs != 0 {
		t.Errorf("a DSN was sent for a config error")
	}
}

func TestEngineTransportPanics(t *testing.T) {
	h := newEngHarness(t)
	h.tr.ScriptCall(func(context.Context, *delivery.Job) []delivery.Result { panic("boom") })
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)
	m := h.get(id)
	if rs := m.Recipients[0]; rs.Status != queue.Deferred || !strings.HasPrefix(rs.LastReply, "451 4.3.0") {
		t.Errorf("recipient %+v; want deferred 451 4.3.0", rs)
	}
	// The engine goes on: the retry and a new message are delivered.
	h.enqueue(engSender, engRcpt("carol@example.net", 0))
	h.attemptAt(m.NextAttempt, 2)
	if n := len(h.messages()); n != 0 {
		t.Errorf("spool has %d messages; want none", n)
	}
}

// TestEngineMailLoop: a queued message carries the Received fields it
// arrived with (at most max_hops, or the listener refuses it) and ours, so
// the engine takes it for a loop only past MaxHops+1.
func TestEngineMailLoop(t *testing.T) {
	tests := []struct {
		maxHops int // Options.MaxHops; 0 = config's default, 50
		hops    int // Received fields of the queued message, ours included
		loop    bool
	}{
		{0, 51, false},
		{0, 52, true},
		{3, 4, false},
		{3, 5, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("max %d, %d Received", tt.maxHops, tt.hops), func(t *testing.T) {
			h := newEngHarness(t, func(o *delivery.Options) { o.MaxHops = tt.maxHops })
			h.start()
			var b strings.Builder
			for i := range tt.hops {
				fmt.Fprintf(&b, "%s: from hop%d.example by hop%d.example\r\n", []string{"Received", "RECEIVED", "received"}[i%3], i, i+1)
			}
			h.enqueueRaw(engSender, engRcpts("bob@example.net"), b.String(), engBody)
			h.waitOutcomes(1)
			if !tt.loop {
				if h.tr.NumCalls() != 1 || h.eng.Stats().Delivered != 1 {
					t.Errorf("not delivered with %d Received fields", tt.hops)
				}
				return
			}
			if n := h.tr.NumCalls(); n != 0 {
				t.Errorf("transport called %d times for a looping message", n)
			}
			h.waitFor("the bounce", func() bool { return h.sink.NumCalls() == 1 })
			p := parseEngDSN(t, h.sink.Calls()[0].Body)
			if len(p.Rcpts) != 1 || p.Rcpts[0].Get("Status") != "5.4.6" || !strings.Contains(p.Rcpts[0].Get("Diagnostic-Code"), "mail loop detected") {
				t.Errorf("recipient blocks %v; want 5.4.6 mail loop detected", p.Rcpts)
			}
		})
	}
}

func TestEngineUnknownIDs(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	ctx := context.Background()
	const id = "0123456789abcdef"
	ops := map[string]error{
		"Retry":   h.eng.Retry(ctx, id),
		"Hold":    h.eng.Hold(ctx, id),
		"Release": h.eng.Release(ctx, id),
		"Bounce":  h.eng.Bounce(ctx, id),
		"Remove":  h.eng.Remove(ctx, id),
	}
	for name, err := range ops {
		if !errors.Is(err, delivery.ErrNotFound) {
			t.Errorf("%s: %v; want ErrNotFound", name, err)
		}
	}
}

func TestEngineNewChecks(t *testing.T) {
	sp, err := queue.Open(t.TempDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if _, err := delivery.New(delivery.Options{Hostname: engHost}); err == nil {
		t.Errorf("New without a spool: no error")
	}
	if _, err := delivery.New(delivery.Options{Spool: sp}); err == nil {
		t.Errorf("New without a hostname: no error")
	}
}

func TestEngineRetriesOnTimer(t *testing.T) {
	// The real clock and a short schedule: the retry needs no Kick.
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Now = nil
		o.Config.Retry = []time.Duration{30 * time.Millisecond}
	})
	h.tr.Script("bob@example.net", deliverytest.Temp(451, [3]uint16{4, 7, 1}, "later"))
	h.clock.Set(time.Now()) // the spool's clock, for Created
	h.start()
	start := time.Now()
	h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(2)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the retry took %v; want about 30ms", took)
	}
	if n := len(h.messages()); n != 0 || h.tr.NumCalls() != 2 {
		t.Errorf("%d messages, %d calls; want delivered on the second call", n, h.tr.NumCalls())
	}
}

func TestEngineRemovesFinishedMessage(t *testing.T) {
	// A crash after the last record and before the delete leaves a message
	// whose recipients are all final: the engine removes it, sending nothing.
	h := newEngHarness(t)
	id := h.enqueue(engSender, engRcpts("a@one.test", "b@one.test")...)
	err := h.spool.Update(context.Background(), id, func(m *queue.Message) error {
		m.Recipients[0].Status = queue.Delivered
		m.Recipients[1].Status = queue.Failed
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitFor("the removal", func() bool { return h.spool.Len() == 0 })
	if n, s := h.tr.NumCalls()+h.sink.NumCalls(), h.eng.Stats(); n != 0 || s.DSNs != 0 {
		t.Errorf("%d calls, stats %+v; want nothing sent", n, s)
	}
}

// engObserver counts what the engine reports for metrics.
type engObserver struct {
	mu        sync.Mutex
	attempted map[string]int // "domain class"
	bounced   map[dsn.Action]int
}

func (o *engObserver) Attempted(domain string, class delivery.Class, tlsPolicy string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.attempted[domain+" "+class.String()]++
}

func (o *engObserver) Bounced(a dsn.Action) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bounced[a]++
}

func TestEngineObserver(t *testing.T) {
	obs := &engObserver{attempted: map[string]int{}, bounced: map[dsn.Action]int{}}
	h := newEngHarness(t, func(o *delivery.Options) { o.Observer = obs })
	h.tr.Script("b@one.test", deliverytest.Perm(550, [3]uint16{5, 1, 1}, "unknown"))
	h.tr.Script("c@two.test", deliverytest.Temp(451, [3]uint16{4, 7, 1}, "later"))
	h.start()
	h.enqueue(engSender, engRcpts("a@one.test", "b@one.test", "c@two.test")...)
	h.waitFor("the DSN", func() bool { return h.sink.NumCalls() == 1 })

	obs.mu.Lock()
	defer obs.mu.Unlock()
	wantAttempted := map[string]int{"one.test delivered": 1, "one.test permanent": 1, "two.test temporary": 1, "example.com delivered": 1}
	if diff := cmp.Diff(wantAttempted, obs.attempted); diff != "" {
		t.Errorf("Attempted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[dsn.Action]int{dsn.ActionFailed: 1}, obs.bounced); diff != "" {
		t.Errorf("Bounced (-want +got):\n%s", diff)
	}
}

// closeCounter is a transport that counts Close calls.
type closeCounter struct {
	delivery.Transport
	closes atomic.Int32
}

func (c *closeCounter) Close() error { c.closes.Add(1); return nil }

// TestEngineDoesNotCloseTransports: the engine only calls Deliver; whoever
// created a transport closes it (after Run returns).
func TestEngineDoesNotCloseTransports(t *testing.T) {
	tr := &closeCounter{Transport: &deliverytest.Transport{}}
	h := newEngHarness(t, func(o *delivery.Options) { o.Transports["smtp"] = tr })
	h.start()
	h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)
	h.stop()
	if n := tr.closes.Load(); n != 0 {
		t.Errorf("the engine closed a transport it was handed (%d Close calls)", n)
	}
}

// TestEngineNoDomainNeverBounces: a recipient without a domain (a bare
// <postmaster> queued before the session mapped it) is never routed and
// never bounced, even with NOTIFY=FAILURE: the DSN would reflect the
// message to whoever MAIL FROM named. Issue 9's reproduction, at the engine.
// TestEngineRequireTLSBounce: the DSN about a REQUIRETLS message carries
// its original, so it goes with REQUIRETLS too (RFC 8689 §5): the report
// must not reveal over clear text what the sender would not send so.
func TestEngineRequireTLSBounce(t *testing.T) {
	h := newEngHarness(t)
	h.editEnv = func(e *envelope.Envelope) { e.RequireTLS = true }
	h.tr.Script("bob@example.net", deliverytest.Perm(550, [3]uint16{5, 7, 30}, "REQUIRETLS: no verified TLS"))
	h.start()
	h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitFor("the DSN's delivery", func() bool { return len(h.sink.Calls()) == 1 })
	if env := h.sink.Calls()[0].Job.Envelope; !env.RequireTLS {
		t.Errorf("the DSN about a REQUIRETLS message was queued without REQUIRETLS")
	}
}

func TestEngineNoDomainNeverBounces(t *testing.T) {
	h := newEngHarness(t)
	h.start()
	h.enqueue("victim@victim.test", envelope.Recipient{Address: envelope.Address{Local: "postmaster"}, Notify: envelope.NotifyFailure})
	h.waitFor("the recipient's failure", func() bool { return h.eng.Stats().Failed == 1 })
	if n := len(h.tr.Calls()); n != 0 {
		t.Errorf("the transport was called %d times; want never", n)
	}
	if n := len(h.sink.Calls()); n != 0 || h.eng.Stats().DSNs != 0 {
		t.Errorf("%d DSNs delivered, stats %+v; want none", n, h.eng.Stats())
	}
	if got := h.messages(); len(got) != 0 {
		t.Errorf("spool has %d messages; want none", len(got))
	}
}
