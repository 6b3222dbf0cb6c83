package tlsrpt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/mailgate/gateway/core/resolver"
)

// Limits of one HTTPS POST.
const (
	postTimeout  = time.Minute // the whole request, connection to response
	maxReplyBody = 64 << 10    // bytes of the response read (and ignored)
)

// poster POSTs reports to HTTPS rua (§5.4): the host's addresses come from
// the Resolver, its certificate is verified against the RootCAs, redirects
// are not followed, and no connection outlives its request.
type poster struct {
	client *http.Client
}

func newPoster(res *resolver.Resolver, roots *x509.CertPool, port int) *poster {
	p := &poster{}
	dial := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no resolver") }
	if res != nil {
		dial = res.DialFunc(port)
	}
	p.client = &http.Client{
		Transport: &http.Transport{
			DialContext:            dial,
			TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives:      true,
			TLSHandshakeTimeout:    15 * time.Second,
			ResponseHeaderTimeout:  30 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
		},
		Timeout:       postTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p
}

// send POSTs the gzipped report to u; any answer but a 2xx is a failure.
func (p *poster) send(ctx context.Context, u *url.URL, gz []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(gz))
	if err != nil {
		return fmt.Errorf("tlsrpt: post %s: %w", u.Redacted(), err)
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("tlsrpt: post %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxReplyBody))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tlsrpt: post %s: %s", u.Redacted(), resp.Status)
	}
	return nil
}

// dial connects to the rua host at the addresses the Resolver gives, in
