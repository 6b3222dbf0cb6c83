package pluginhost_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/pluginhost"
)

// TestPluginTransportRefusesRequireTLS: a REQUIRETLS message (RFC 8689)
// routed to a plugin transport. sdk.Delivery and its Txn carry no
// REQUIRETLS, so the plugin cannot know the sender's demand and hands the
// message on however it likes; the host must not give it such a message
// (or must tell it). On main the plugin gets it and it counts as
// delivered.
func TestPluginTransportRefusesRequireTLS(t *testing.T) {
	out := t.TempDir()
	p, _ := start(t, pluginhost.Options{Config: map[string]any{"greeting": "hello", "outdir": out}})
	tr := p.Transport("testtransport")
	content := "Subject: secret\r\n\r\nFor TLS eyes only.\r\n"
	job := &delivery.Job{
		ID:         "RTLS1",
		Envelope:   &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "client.test"}, RequireTLS: true},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "ok", Domain: "example.test"}}},
		Domain:     "example.test",
		Route:      delivery.Route{Transport: "testtransport"},
		Size:       int64(len(content)),
		Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := tr.Deliver(ctx, job)
	if _, err := os.Stat(filepath.Join(out, "RTLS1")); err == nil || (len(got) == 1 && got[0].Class == delivery.Delivered) {
		t.Errorf("Deliver = %+v: a REQUIRETLS message went to a plugin transport that cannot see REQUIRETLS", got)
	}
}
