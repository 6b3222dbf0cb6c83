package delivery_test

import (
	"context"
	"io"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/sdk"
)

// signKeys is a key set signing example.com with selector s1.
func signKeys(t *testing.T) (*dkim.Keys, func(string) ([]string, error)) {
	t.Helper()
	k, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := dkim.NewKeys([]dkim.Domain{{Name: "example.com", Selector: "s1", Key: k}})
	if err != nil {
		t.Fatal(err)
	}
	return ks, func(name string) ([]string, error) {
		if name == "s1._domainkey.example.com" {
			return []string{k.Record()}, nil
		}
		return nil, io.EOF
	}
}

// enqueueFrom queues engBody from alice to bob@example.net, submitted by
// one of ours or not.
func (h *engHarness) enqueueFrom(submitted bool) {
	h.t.Helper()
	d := h.draft(engBody)
	env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts("bob@example.net"), Received: h.clock.Now(), Submitted: submitted}
	if err := d.Commit(context.Background(), env, []byte(engTrace)); err != nil {
		h.t.Fatal(err)
	}
	h.eng.Kick()
}

// sent is what the transport tr got in its only call.
func sent(t *testing.T, h *engHarness, tr *deliverytest.Transport) deliverytest.Call {
	t.Helper()
	h.waitFor("a delivery", func() bool { return tr.NumCalls() > 0 })
	c := tr.Calls()[0]
	if c.Job.Size != int64(len(c.Body)) {
		t.Errorf("Job.Size %d, the content has %d bytes", c.Job.Size, len(c.Body))
	}
	return c
}

// TestEngineSigns: submitted mail leaving through smtp is signed on top
// (above our Received) and verifies; a reload's SetDKIM(nil) stops it.
func TestEngineSigns(t *testing.T) {
	keys, dns := signKeys(t)
	h := newEngHarness(t, func(o *delivery.Options) { o.DKIM = keys })
	h.start()
	h.enqueueFrom(true)
	c := sent(t, h, h.tr)
	body := string(c.Body)
	if !strings.HasPrefix(body, "DKIM-Signature: ") || !strings.HasSuffix(body, engTrace+engBody) {
		t.Fatalf("sent %q, want a DKIM-Signature on top of the queued message", body)
	}
	dkimVerifies(t, body, dns)
	if h.eng.DKIM() != keys {
		t.Error("DKIM() is not the keys in use")
	}
	h.eng.SetDKIM(nil)
	h.enqueueFrom(true)
	h.waitFor("a second delivery", func() bool { return h.tr.NumCalls() > 1 })
	if got := string(h.tr.Calls()[1].Body); got != engTrace+engBody {
		t.Errorf("after SetDKIM(nil), sent %q, want it unsigned", got)
	}
}

// TestEngineSignsOnlyOurs: mail from an outside client, and mail to a
// local transport, is not signed.
func TestEngineSignsOnlyOurs(t *testing.T) {
	t.Run("outside client", func(t *testing.T) {
		keys, _ := signKeys(t)
		h := newEngHarness(t, func(o *delivery.Options) { o.DKIM = keys })
		h.start()
		h.enqueueFrom(false)
		if got := string(sent(t, h, h.tr).Body); got != engTrace+engBody {
			t.Errorf("sent %q, want it unsigned", got)
		}
	})
	for _, transport := range []string{"maildir", "lmtp"} {
		t.Run(transport, func(t *testing.T) {
			keys, _ := signKeys(t)
			local := &deliverytest.Transport{}
			h := newEngHarness(t, func(o *delivery.Options) {
				o.DKIM = keys
				o.Transports[transport] = local
				o.Config.Routes = append(o.Config.Routes, config.Route{Domain: "example.net", Transport: transport})
			})
			h.start()
			h.enqueueFrom(true)
			if got := string(sent(t, h, local).Body); got != engTrace+engBody {
				t.Errorf("sent %q, want it unsigned", got)
			}
		})
	}
}

// TestEngineSignsAfterPredelivery: the signature covers what the
// predelivery hook made of the message (a new body, a header added, one
// removed), not the queued message.
func TestEngineSignsAfterPredelivery(t *testing.T) {
	keys, dns := signKeys(t)
	rewrite := hooktest.Func{HandlerName: "translate", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
		return sdk.Decision{}, sdk.Effects{
			Body:          []byte("From: Alice <alice@example.com>\nTo: Bob <bob@example.net>\nSubject: almuerzo\n\n¿Viernes?\n"),
			AddHeaders:    []sdk.HeaderField{{Name: "X-Translated", Value: "es"}},
			RemoveHeaders: []string{"To"},
		}, nil
	}}
	h := newEngHarness(t, func(o *delivery.Options) {
		o.DKIM = keys
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: rewrite})
	})
	h.start()
	h.enqueueFrom(true)
	body := string(sent(t, h, h.tr).Body)
	if !strings.Contains(body, "\r\n\r\n¿Viernes?\r\n") || strings.Contains(body, "To: Bob") || !strings.Contains(body, "X-Translated: es\r\n") {
		t.Fatalf("sent %q, want the hook's rewrite", body)
	}
	dkimVerifies(t, body, dns)
}

// dkimVerifies checks that msg's one signature passes go-msgauth's
// verifier.
func dkimVerifies(t *testing.T, msg string, dns func(string) ([]string, error)) {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: dns})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("verify: %v, %+v; message:\n%s", err, vs, msg)
	}
}

// TestEngineSignsDSN: a DSN of ours (From: MAILER-DAEMON@<hostname>) is
// signed when the hostname's domain has a block.
func TestEngineSignsDSN(t *testing.T) {
	k, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := dkim.NewKeys([]dkim.Domain{{Name: "example.org", Selector: "s1", Key: k}})
	h := newEngHarness(t, func(o *delivery.Options) { o.DKIM = keys })
	h.tr.Script("bob@example.net", deliverytest.Perm(550, sdk.EnhancedCode{5, 1, 1}, "no such user"))
	h.start()
	h.enqueueFrom(false)
	dsn := string(sent(t, h, h.sink).Body)
	if !strings.HasPrefix(dsn, "DKIM-Signature: ") || !strings.Contains(dsn, "MAILER-DAEMON@"+engHost) {
		t.Fatalf("DSN %q, want it signed", dsn)
	}
	dkimVerifies(t, dsn, func(name string) ([]string, error) {
		if name == "s1._domainkey.example.org" {
			return []string{k.Record()}, nil
		}
		return nil, io.EOF
	})
}
