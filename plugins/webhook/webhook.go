package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/mailgate/gateway/sdk"
)

const (
	name    = "webhook"
	version = "0.1.0"

	// transportName is the transport this plugin provides.
	transportName = "webhook"

	// maxResponseRead bounds how much of a response body is read (and
	// thrown away) so the connection can be reused.
	maxResponseRead = 64 << 10
)

// Webhook is a transport: it delivers each message as a JSON Document by
// HTTP POST to the configured URL.
type Webhook struct {
	mu     sync.RWMutex
	cfg    config
	client *http.Client
}

// New returns an unconfigured Webhook; Deliver fails until Configure.
func New() *Webhook { return &Webhook{} }

func (p *Webhook) Info() sdk.Info {
	return sdk.Info{Name: name, Version: version, Schema: schema(), Transports: []string{transportName}}
}

func (p *Webhook) Configure(ctx context.Context, m map[string]any, host sdk.Host) error {
	c, err := parseConfig(m)
	if err != nil {
		return err
	}
	client := &http.Client{
		// A redirect is not followed: a 301/302 would turn the POST into
		// a GET, and a 2xx to that would be taken for a delivery.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	p.mu.Lock()
	p.cfg, p.client = c, client
	p.mu.Unlock()
	return nil
}

// errNotConfigured is returned by Deliver before Configure.
var errNotConfigured = errors.New("webhook: not configured")

// Deliver POSTs the message as JSON and maps the answer to one result for
// every recipient: 2xx delivered; 408, 429 and 5xx, other codes, time-outs
// and connection errors temporary; other 4xx permanent. It returns an
// error only when it could not try: no configuration, another transport,
// or ctx ended.
func (p *Webhook) Deliver(ctx context.Context, d *sdk.Delivery) ([]sdk.DeliveryResult, error) {
	p.mu.RLock()
	c, client := p.cfg, p.client
	p.mu.RUnlock()
	if client == nil {
		return nil, errNotConfigured
	}
	if d.Transport != "" && d.Transport != transportName {
		return nil, fmt.Errorf("webhook: transport %q: %w", d.Transport, sdk.ErrNotHandled)
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // "<p>" rather than "\u003cp\u003e": the same JSON, easier to read
	if err := enc.Encode(newDocument(d, c.maxAttach, c.includeRaw)); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	res := p.post(ctx, client, c, bytes.TrimSuffix(body.Bytes(), []byte("\n")))
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]sdk.DeliveryResult, len(d.Recipients))
	for i := range out {
		out[i] = res
	}
	return out, nil
}

// post makes one request and says what came of it.
func (p *Webhook) post(ctx context.Context, client *http.Client, c config, body []byte) sdk.DeliveryResult {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url.String(), bytes.NewReader(body))
	if err != nil {
		return temporary(c, "webhook request: "+err.Error())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gateway-plugin-webhook/"+version)
	for k, vs := range c.headers {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return temporary(c, fmt.Sprintf("webhook timed out after %s", c.timeout))
		}
		// url.Error repeats the URL, which may hold a secret: keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return temporary(c, "webhook unreachable: "+err.Error())
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	resp.Body.Close()
	text := fmt.Sprintf("webhook returned %d", resp.StatusCode)
	switch s := resp.StatusCode; {
	case s >= 200 && s <= 299:
		return sdk.DeliveryResult{Outcome: sdk.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: text, RemoteMTA: c.url.Host}
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests:
		return temporary(c, text)
	case s >= 400 && s <= 499:
		return sdk.DeliveryResult{Outcome: sdk.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 0, 0}, Text: text, RemoteMTA: c.url.Host}
	}
	return temporary(c, text)
}

func temporary(c config, text string) sdk.DeliveryResult {
	return sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1}, Text: text, RemoteMTA: c.url.Host}
}

var (
	_ sdk.Describer  = (*Webhook)(nil)
	_ sdk.Configurer = (*Webhook)(nil)
	_ sdk.Transport  = (*Webhook)(nil)
)
