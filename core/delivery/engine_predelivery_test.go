package delivery_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// expandScript is a Lua predelivery hook that resolves aliases late: each
// recipient named in params.aliases is replaced by its members, the others
// are kept, and a recipient named in params.drop is left out.
const expandScript = `
function on_predelivery(ctx)
  local out, changed = {}, false
  for _, r in ipairs(ctx.txn.recipients) do
    local members = gw.params.aliases and gw.params.aliases[r]
    if members then
      for _, m in ipairs(members) do table.insert(out, m) end
      changed = true
    elseif gw.params.drop == r then
      changed = true
    else
      table.insert(out, r)
    end
  end
  if changed then ctx:set_recipients(out) end
  return gw.continue()
end
`

// loadExpandScript loads expandScript with params.
func loadExpandScript(t *testing.T, params map[string]any) *lua.Script {
	t.Helper()
	s, err := lua.Load(lua.Options{Name: "aliases", Source: expandScript, Params: params})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// hookWatch records the notification stages each recipient got.
type hookWatch struct {
	mu    sync.Mutex
	calls []string // "stage rcpt"
}

func (w *hookWatch) entry() hook.Entry {
	return hook.Entry{Handler: hooktest.Func{HandlerName: "watch", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
		if req.Stage != sdk.StagePredelivery && req.Rcpt != nil && !req.Envelope.Sender.IsNull() {
			w.mu.Lock()
			w.calls = append(w.calls, string(req.Stage)+" "+req.Rcpt.Address.String())
			w.mu.Unlock()
		}
		return sdk.Decision{}, sdk.Effects{}, nil
	}}}
}

func (w *hookWatch) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := slices.Clone(w.calls)
	slices.Sort(out)
	return out
}

// queuedRcpts lists m's recipients as "address status".
func queuedRcpts(m *queue.Message) []string {
	var out []string
	for i, rc := range m.Envelope.Recipients {
		out = append(out, fmt.Sprintf("%s %v", rc.Address, m.Recipients[i].Status))
	}
	return out
}

// jobRcpt is a recipient as a transport got it.
type jobRcpt struct {
	Addr   string
	Notify string
	ORCPT  string
}

func jobRcpts(c deliverytest.Call) []jobRcpt {
	var out []jobRcpt
	for _, r := range c.Job.Recipients {
		out = append(out, jobRcpt{r.Address.String(), r.Notify.String(), r.ORCPT})
	}
	return out
}

// TestEnginePredeliveryExpandsRecipients: a predelivery hook that expands
// an alias late. The job's recipients become the hook's list: the alias is
// finished without delivery (an "expanded" DSN, since it asked for
// SUCCESS), the member in the job's domain is delivered in this job, the
// member elsewhere is added to the queued message and delivered in its own
// job, with its own route; both members inherit the alias's DSN
// parameters.
func TestEnginePredeliveryExpandsRecipients(t *testing.T) {
	script := loadExpandScript(t, map[string]any{
		"aliases": map[string]any{"team@example.net": []any{"alice@example.net", "bob@example.org"}},
	})
	var watch hookWatch
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: script}, watch.entry())
	})
	h.tr.Script("bob@example.org", deliverytest.Temp(451, sdk.EnhancedCode{4, 2, 1}, "busy"))
	h.start()
	team := envelope.Recipient{Address: engAddr("team@example.net"), Notify: envelope.NotifySuccess | envelope.NotifyFailure}
	id := h.enqueue(engSender, team, engRcpt("carol@example.net", 0))
	// team (expanded), alice, carol, and the expanded DSN's delivery to
	// the sender, in either order with bob's own job (deferred): wait for
	// that, not a count the DSN can make up first.
	h.waitFor("bob's deferral", func() bool { return h.eng.Stats().Deferred >= 1 && h.outcomes() >= 5 })

	calls := h.tr.Calls()
	if len(calls) != 2 {
		t.Fatalf("%d transport calls; want 2 (example.net, then example.org)", len(calls))
	}
	inherited := func(a string) jobRcpt { return jobRcpt{a, "FAILURE", "rfc822;team@example.net"} }
	if diff := cmp.Diff([]jobRcpt{inherited("alice@example.net"), {Addr: "carol@example.net"}}, jobRcpts(calls[0])); diff != "" {
		t.Errorf("example.net job recipients (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]jobRcpt{inherited("bob@example.org")}, jobRcpts(calls[1])); diff != "" {
		t.Errorf("example.org job recipients (-want +got):\n%s", diff)
	}

	// The queued message records every recipient: the alias final, the
	// member the hook added after the others.
	m := h.get(id)
	got := queuedRcpts(m)
	want := []string{
		"team@example.net " + queue.Delivered.String(),
		"carol@example.net " + queue.Delivered.String(),
		"alice@example.net " + queue.Delivered.String(),
		"bob@example.org " + queue.Deferred.String(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queued recipients (-want +got):\n%s", diff)
	}
	if r := m.Recipients[0].LastReply; r != "250 2.0.0 expanded by a predelivery hook" {
		t.Errorf("alias's reply %q", r)
	}

	// One DSN: "expanded" for the alias, which asked for SUCCESS.
	h.waitFor("the DSN", func() bool { return len(engDSNCalls(h.sink)) == 1 })
	p := parseEngDSN(t, engDSNCalls(h.sink)[0].Body)
	if len(p.Rcpts) != 1 {
		t.Fatalf("DSN recipient blocks %v; want one", p.Rcpts)
	}
	if f := engRcptFields(p.Rcpts[0]); f["Action"] != "expanded" || f["Final-Recipient"] != "rfc822; team@example.net" {
		t.Errorf("DSN fields %v; want team@example.net expanded", f)
	}
	// Notifications: the members and carol; the alias was not delivered.
	wantNotes := []string{"deferred bob@example.org", "delivered alice@example.net", "delivered carol@example.net"}
	if diff := cmp.Diff(wantNotes, watch.got()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

// TestEnginePredeliveryRemovesRecipient: a list that leaves a recipient
// out and names nobody new drops it, as a predelivery Drop would: final,
// no DSN (even with NOTIFY=SUCCESS), no notification.
func TestEnginePredeliveryRemovesRecipient(t *testing.T) {
	script := loadExpandScript(t, map[string]any{"drop": "dave@example.net"})
	var watch hookWatch
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: script}, watch.entry())
	})
	h.start()
	dave := envelope.Recipient{Address: engAddr("dave@example.net"), Notify: envelope.NotifySuccess}
	h.enqueue(engSender, engRcpt("bob@example.net", 0), dave)
	h.waitOutcomes(2)
	h.waitFor("the message to go", func() bool { return len(h.messages()) == 0 })

	calls := h.tr.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d transport calls; want 1", len(calls))
	}
	if diff := cmp.Diff([]string{"bob@example.net"}, calls[0].Rcpts()); diff != "" {
		t.Errorf("job recipients (-want +got):\n%s", diff)
	}
	if n := h.sink.NumCalls(); n != 0 {
		t.Errorf("%d DSNs; want none for a dropped recipient", n)
	}
	if diff := cmp.Diff([]string{"delivered bob@example.net"}, watch.got()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

// predeliveryRecipients is a Go handler that sets the recipients of every
// example.net job to list(job's recipients).
func predeliveryRecipients(list func(rcpts []string) []string) hook.Entry {
	return hook.Entry{Handler: hooktest.Func{HandlerName: "rcpts", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
		if req.Stage != sdk.StagePredelivery || req.Arg != "example.net" {
			return sdk.Decision{}, sdk.Effects{}, nil
		}
		var in []string
		for _, r := range req.Envelope.Recipients {
			in = append(in, r.Address.String())
		}
		var eff sdk.Effects
		for _, s := range list(in) {
			local, domain, _ := strings.Cut(s, "@")
			eff.Recipients = append(eff.Recipients, sdk.Address{Local: local, Domain: domain})
		}
		return sdk.Decision{}, eff, nil
	}}}
}

// TestEnginePredeliveryRecipientsOnce: a mailbox is a recipient of a
// message once (envelope.Address.Mailbox): one the hook names twice, or
// that the message already has, is not added again.
func TestEnginePredeliveryRecipientsOnce(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, predeliveryRecipients(func(rcpts []string) []string {
			return []string{"carol@example.net", "carol@EXAMPLE.net", "bob@example.org", "Carol@example.net"}
		}))
	})
	h.start()
	h.enqueue(engSender, engRcpts("bob@example.org", "carol@example.net")...)
	h.waitOutcomes(2)
	h.waitFor("the message to go", func() bool { return len(h.messages()) == 0 })

	var got [][]string
	for _, c := range h.tr.Calls() {
		got = append(got, c.Rcpts())
	}
	slices.SortFunc(got, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	want := [][]string{{"bob@example.org"}, {"carol@example.net"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("jobs' recipients (-want +got):\n%s", diff)
	}
}

// TestEnginePredeliveryTooManyRecipients: a list that would take the
// message past 1000 recipients (Postfix's virtual_alias_expansion_limit)
// cannot be applied: the job is deferred and nothing is added.
func TestEnginePredeliveryTooManyRecipients(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, predeliveryRecipients(func([]string) []string {
			var out []string
			for i := range 1000 {
				out = append(out, fmt.Sprintf("m%d@example.net", i))
			}
			return out
		}))
	})
	h.start()
	id := h.enqueue(engSender, engRcpts("list@example.net", "bob@example.org")...)
	h.waitOutcomes(2)
	if n := h.tr.NumCalls(); n != 1 {
		t.Errorf("%d transport calls; want 1 (example.org only)", n)
	}
	m := h.get(id)
	if len(m.Envelope.Recipients) != 2 {
		t.Fatalf("message has %d recipients; want the 2 it had", len(m.Envelope.Recipients))
	}
	if rs := m.Recipients[0]; rs.Status != queue.Deferred || !strings.HasPrefix(rs.LastReply, "451 4.5.3 ") {
		t.Errorf("list@example.net %+v; want deferred 451 4.5.3", rs)
	}
}

// TestEnginePredeliveryAddedRecipientsStored: the recipients a predelivery
// hook added are in the spool with the attempt's record, so an engine
// stopped mid-delivery, and a new one on the same spool, loses none of
// them; the alias stays expanded, not expanded again.
func TestEnginePredeliveryAddedRecipientsStored(t *testing.T) {
	script := loadExpandScript(t, map[string]any{
		"aliases": map[string]any{"team@example.net": []any{"alice@example.net", "bob@example.org"}},
	})
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: script})
	})
	h.tr.Block()
	h.start()
	id := h.enqueue(engSender, engRcpt("team@example.net", 0))
	for deadline := time.Now().Add(10 * time.Second); h.tr.InFlight() == 0; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the example.net job never reached its transport")
		}
	}
	h.stop()

	m := h.get(id)
	got := queuedRcpts(m)
	want := []string{
		"team@example.net " + queue.Delivered.String(),
		"alice@example.net " + queue.Deferred.String(), // cut short: not an attempt
		"bob@example.org " + queue.Pending.String(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("queued recipients after the stop (-want +got):\n%s", diff)
	}

	h.tr.Unblock()
	eng, err := delivery.New(h.opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h.waitFor("the message to go", func() bool { return len(h.messages()) == 0 })
	var rcpts []string
	for _, c := range h.tr.Calls()[1:] {
		rcpts = append(rcpts, c.Rcpts()...)
	}
	slices.Sort(rcpts)
	if diff := cmp.Diff([]string{"alice@example.net", "bob@example.org"}, rcpts); diff != "" {
		t.Errorf("delivered after the restart (-want +got):\n%s", diff)
	}
}
