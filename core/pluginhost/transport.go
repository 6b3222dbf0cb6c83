package pluginhost

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/sdk"
)

// MaxContent is the largest message a plugin transport is handed; a
// bigger one is deferred.
const MaxContent = 64 << 20

// Transport returns the delivery.Transport for one of the plugin's
// transports (Transports lists them), or nil if it provides none by that
// name. It does not own the plugin: Close the Plugin, not the transport.
func (p *Plugin) Transport(name string) delivery.Transport {
	if !slices.Contains(p.info.Transports, name) {
		return nil
	}
	return &transport{p: p, name: name}
}

// transport hands delivery jobs to a plugin's transport.
type transport struct {
	p    *Plugin
	name string
}

var _ delivery.Transport = (*transport)(nil)

// Deliver implements delivery.Transport: the whole message (job.Open) goes
// to the plugin with the envelope and this attempt's recipients, under
// ctx; each of its results becomes the recipient's. A failure of the call
// (the plugin down, a timeout, an error) defers every recipient. A
// REQUIRETLS message is refused (550 5.7.30) without calling the plugin:
// the sdk cannot tell a plugin of the demand, so nothing would keep it.
func (t *transport) Deliver(ctx context.Context, job *delivery.Job) []delivery.Result {
	if job.Envelope != nil && job.Envelope.RequireTLS {
		out := make([]delivery.Result, len(job.Recipients))
		for i := range out {
			out[i] = delivery.Result{Class: delivery.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 7, 30}, Local: true,
				Text: "REQUIRETLS: the plugin transport " + t.name + " cannot be told to keep the demand for TLS"}
		}
		return out
	}
	content, err := readJob(job)
	if err != nil {
		return allTemporary(job, 451, sdk.EnhancedCode{4, 3, 0}, "cannot read the queued message: "+err.Error())
	}
	d := &sdk.Delivery{
		ID:         job.ID,
		Domain:     job.Domain,
		Transport:  t.name,
		Via:        job.Route.Via,
		Content:    content,
		Recipients: make([]sdk.Recipient, len(job.Recipients)),
	}
	if job.Envelope != nil {
		d.Txn = txn(job.Envelope)
	}
	for i, rc := range job.Recipients {
		d.Recipients[i] = recipient(rc)
	}
	p := t.p
	inst, err := p.acquire()
	if err != nil {
		return allTemporary(job, 451, sdk.EnhancedCode{4, 4, 0}, err.Error())
	}
	res, err := inst.remote.Deliver(ctx, d)
	if err != nil {
		err = p.failed(ctx, inst, err)
		return allTemporary(job, 451, sdk.EnhancedCode{4, 4, 0}, fmt.Sprintf("transport %s: %v", t.name, err))
	}
	p.succeeded(inst)
	out := make([]delivery.Result, len(job.Recipients))
	for i := range out {
		if i >= len(res) {
			out[i] = temporary(451, sdk.EnhancedCode{4, 3, 0}, fmt.Sprintf("transport %s gave no result for this recipient", t.name))
			continue
		}
		out[i] = result(res[i])
	}
	if len(res) != len(job.Recipients) {
		p.log.Error("plugin transport returned the wrong number of results", "transport", t.name,
			"id", job.ID, "results", len(res), "rcpts", len(job.Recipients))
	}
	return out
}

func readJob(job *delivery.Job) ([]byte, error) {
	if job.Size > MaxContent {
		return nil, fmt.Errorf("%d bytes is more than a plugin transport takes (%d)", job.Size, MaxContent)
	}
	rc, err := job.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxContent+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxContent {
		return nil, fmt.Errorf("more than %d bytes, the most a plugin transport takes", MaxContent)
	}
	return b, nil
}

// result converts one recipient's result, filling in the codes the plugin
// left out and keeping the text on one line.
func result(r sdk.DeliveryResult) delivery.Result {
	out := delivery.Result{Code: r.Code, Enhanced: r.Enhanced, Text: oneLine(r.Text), RemoteMTA: oneLine(r.RemoteMTA)}
	switch r.Outcome {
	case sdk.Delivered:
		out.Class = delivery.Delivered
		if out.Code == 0 {
			out.Code = 250
		}
		if out.Enhanced.IsZero() {
			out.Enhanced = sdk.EnhancedCode{2, 0, 0}
		}
	case sdk.Permanent:
		out.Class = delivery.Permanent
		if out.Code < 500 || out.Code > 599 {
			out.Code = 550
		}
		if out.Enhanced[0] != 5 {
			out.Enhanced = sdk.EnhancedCode{5, 0, 0}
		}
	default: // Temporary, and anything this host does not know
		out.Class = delivery.Temporary
		if out.Code < 400 || out.Code > 499 {
			out.Code = 451
		}
		if out.Enhanced[0] != 4 {
			out.Enhanced = sdk.EnhancedCode{4, 0, 0}
		}
	}
	if out.Text == "" {
		out.Text = out.Class.String()
	}
	return out
}

func temporary(code int, enh sdk.EnhancedCode, text string) delivery.Result {
	return delivery.Result{Class: delivery.Temporary, Code: code, Enhanced: enh, Text: oneLine(text), Local: true}
}

func allTemporary(job *delivery.Job, code int, enh sdk.EnhancedCode, text string) []delivery.Result {
	out := make([]delivery.Result, len(job.Recipients))
	for i := range out {
		out[i] = temporary(code, enh, text)
	}
	return out
}

// oneLine replaces control characters (CR, LF and the rest) with spaces:
// results end up in logs and DSNs.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
