package delivery_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/arc"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/envelope"
)

// ourResults is the Authentication-Results the gateway wrote at data.
const ourResults = "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=alice@example.com;\r\n dkim=none; dmarc=none header.from=example.com; arc=none\r\n"

// sealing is an ARC sealer for forwarder.test (RSA) and a look-up that
// serves its key record.
func sealing(t *testing.T) (*delivery.ARCSealing, arc.LookupTXT) {
	t.Helper()
	k, err := dkim.GenerateKey("rsa", 1024)
	if err != nil {
		t.Fatal(err)
	}
	s := &delivery.ARCSealing{
		Sealer:     arc.Sealer{Domain: "forwarder.test", Selector: "arc", Key: k.Signer()},
		AuthservID: "mx.example.org",
	}
	return s, func(_ context.Context, name string) ([]string, error) {
		if name == "arc._domainkey.forwarder.test" {
			return []string{k.Record()}, nil
		}
		return nil, errors.New("no such record")
	}
}

// enqueueReceived queues body, received from an outside client (not
// submitted), from alice to bob@example.net.
func (h *engHarness) enqueueReceived(body string) {
	h.t.Helper()
	d := h.draft(body)
	env := &envelope.Envelope{Sender: engAddr(engSender), Recipients: engRcpts("bob@example.net"), Received: h.clock.Now()}
	if err := d.Commit(context.Background(), env, []byte(engTrace)); err != nil {
		h.t.Fatal(err)
	}
	h.eng.Kick()
}

// TestEngineSeals: mail from outside that carries our
// Authentication-Results and leaves again gets an ARC set (i=1, cv=none)
// that verifies and carries those results; mail without them, and
// submitted mail, is not sealed.
func TestEngineSeals(t *testing.T) {
	s, lookup := sealing(t)
	h := newEngHarness(t, func(o *delivery.Options) {})
	h.eng.SetARC(s)
	h.start()
	h.enqueueReceived(ourResults + engBody)
	body := string(sent(t, h, h.tr).Body)
	if !strings.HasPrefix(body, "ARC-Seal: i=1;") || !strings.HasSuffix(body, engTrace+ourResults+engBody) {
		t.Fatalf("sent %q, want an ARC set on top of the queued message", body)
	}
	res, err := arc.Verify(context.Background(), []byte(body), lookup)
	if err != nil || res.Status != arc.Pass || len(res.Sets) != 1 {
		t.Fatalf("arc.Verify = %+v, %v; want pass with one set", res, err)
	}
	if got, want := res.Sets[0].AuthResults, "mx.example.org; spf=pass smtp.mailfrom=alice@example.com; dkim=none; dmarc=none header.from=example.com; arc=none"; got != want {
		t.Errorf("the set's ARC-Authentication-Results = %q, want %q", got, want)
	}

	h.enqueueReceived(engBody) // never checked here: nothing to vouch for
	h.enqueueFrom(true)        // ours: DKIM signs it, ARC does not seal it
	h.waitFor("two more deliveries", func() bool { return h.tr.NumCalls() == 3 })
	for _, c := range h.tr.Calls()[1:] {
		if strings.Contains(string(c.Body), "ARC-Seal") {
			t.Errorf("sent %q sealed, want it as queued", c.Body)
		}
	}
}
