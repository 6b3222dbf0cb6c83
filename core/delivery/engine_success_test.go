package delivery_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// handedOff is a 250 from mx.test that handed the message to h.
func handedOff(h delivery.Handoff) delivery.Result {
	r := deliverytest.OK()
	r.Handoff = h
	return r
}

// successBlock is the per-recipient block of a success DSN about rcpt
// delivered by deliverytest.OK.
func successBlock(rcpt, action string) map[string]string {
	return map[string]string{
		"Final-Recipient": "rfc822; " + rcpt,
		"Action":          action,
		"Status":          "2.0.0",
		"Diagnostic-Code": "smtp; 250 2.0.0 ok",
		"Remote-Mta":      "dns; mx.test",
	}
}

// successDSNs waits until message id is gone (every DSN about it is
// queued before that) and its DSNs are delivered to the sink, and returns
// their per-recipient blocks, one list per DSN.
func (h *engHarness) successDSNs(id string) [][]map[string]string {
	h.t.Helper()
	h.waitFor("the message to be finished", func() bool {
		_, err := h.spool.Get(id)
		return err != nil && int64(len(engDSNCalls(h.sink))) == h.eng.Stats().DSNs
	})
	var out [][]map[string]string
	for _, c := range engDSNCalls(h.sink) {
		checkEngDSNEnvelope(h.t, c.Job.Envelope, engSender)
		p := parseEngDSN(h.t, c.Body)
		if got := p.Header.Get("Subject"); got != "Successful Mail Delivery Report" {
			h.t.Errorf("DSN Subject %q; want Successful Mail Delivery Report", got)
		}
		var blocks []map[string]string
		for _, r := range p.Rcpts {
			blocks = append(blocks, engRcptFields(r))
		}
		out = append(out, blocks)
	}
	return out
}

// TestEngineSuccessDSN: NOTIFY=SUCCESS is answered by one DSN per message
// and round, covering every recipient of the round that asked for one,
// whatever job delivered it: "delivered" for a final delivery, "relayed"
// for a next hop without DSN, nothing for one that took NOTIFY on.
func TestEngineSuccessDSN(t *testing.T) {
	success := envelope.NotifySuccess | envelope.NotifyFailure
	tests := []struct {
		name    string
		results map[string]delivery.Result
		want    [][]map[string]string
	}{
		{"final", map[string]delivery.Result{"bob@example.net": handedOff(delivery.HandoffFinal)},
			[][]map[string]string{{successBlock("bob@example.net", "delivered")}}},
		{"relayed", map[string]delivery.Result{"bob@example.net": handedOff(delivery.HandoffRelayed)},
			[][]map[string]string{{successBlock("bob@example.net", "relayed")}}},
		{"next hop does DSN", map[string]delivery.Result{"bob@example.net": handedOff(delivery.HandoffDSN)}, nil},
		{"three domains, one DSN", map[string]delivery.Result{
			"bob@example.net":   handedOff(delivery.HandoffFinal),
			"carol@example.org": handedOff(delivery.HandoffRelayed),
			"dave@example.edu":  handedOff(delivery.HandoffDSN),
		}, [][]map[string]string{{successBlock("bob@example.net", "delivered"), successBlock("carol@example.org", "relayed")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newEngHarness(t)
			var rcpts []envelope.Recipient
			for _, a := range []string{"bob@example.net", "carol@example.org", "dave@example.edu"} {
				if r, ok := tt.results[a]; ok {
					h.tr.Script(a, r)
					rcpts = append(rcpts, engRcpt(a, success))
				}
			}
			h.start()
			id := h.enqueue(engSender, rcpts...)
			got := h.successDSNs(id)
			if diff := cmp.Diff(tt.want, got, sortBlocks); diff != "" {
				t.Errorf("DSNs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEngineSuccessDSNPerRound: a recipient delivered in a later round is
// reported by that round's DSN, and the first round's is not sent again.
func TestEngineSuccessDSNPerRound(t *testing.T) {
	h := newEngHarness(t)
	h.tr.Script("bob@example.net", handedOff(delivery.HandoffRelayed))
	h.tr.Script("carol@example.org", deliverytest.Temp(451, sdk.EnhancedCode{4, 4, 1}, "later"), handedOff(delivery.HandoffFinal))
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", envelope.NotifySuccess), engRcpt("carol@example.org", envelope.NotifySuccess))
	h.waitFor("the first round's DSN", func() bool { return len(engDSNCalls(h.sink)) == 1 })
	h.attemptAt(engT0.Add(time.Hour), 1)
	got := h.successDSNs(id)
	want := [][]map[string]string{{successBlock("bob@example.net", "relayed")}, {successBlock("carol@example.org", "delivered")}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DSNs (-want +got):\n%s", diff)
	}
}

// TestEngineSuccessDSNAtShutdown: a shutdown that keeps a round's other
// job from starting still sends the success DSN of the recipient the
// round delivered; the next round would not know of it.
func TestEngineSuccessDSNAtShutdown(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) { o.Config.MaxConnections = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.tr.ScriptCall(func(context.Context, *delivery.Job) []delivery.Result {
		cancel() // the other job cannot start: the engine stops
		return []delivery.Result{handedOff(delivery.HandoffRelayed)}
	})
	id := h.enqueue(engSender, engRcpt("bob@example.net", envelope.NotifySuccess), engRcpt("carol@example.org", envelope.NotifySuccess))
	if err := h.eng.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := h.get(id)
	var delivered []string
	for i, rs := range m.Recipients {
		if rs.Status == queue.Delivered {
			delivered = append(delivered, m.Envelope.Recipients[i].Address.String())
		}
	}
	if len(delivered) != 1 || len(h.tr.Calls()) != 1 {
		t.Fatalf("delivered %v in %d calls; want one recipient in one call", delivered, len(h.tr.Calls()))
	}
	var dsns []*queue.Message
	for _, q := range h.messages() {
		if q.Envelope.Sender.IsNull() {
			dsns = append(dsns, q)
		}
	}
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs queued; want 1", len(dsns))
	}
	var got []map[string]string
	for _, r := range parseEngDSN(t, h.body(dsns[0].ID)).Rcpts {
		got = append(got, engRcptFields(r))
	}
	if diff := cmp.Diff([]map[string]string{successBlock(delivered[0], "relayed")}, got); diff != "" {
		t.Errorf("DSN (-want +got):\n%s", diff)
	}
}

// sortBlocks compares a DSN's recipient blocks in any order: the jobs of
// a round record in the order they end.
var sortBlocks = cmp.Transformer("sortBlocks", func(in []map[string]string) []map[string]string {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b map[string]string) int { return strings.Compare(a["Final-Recipient"], b["Final-Recipient"]) })
	return out
})
