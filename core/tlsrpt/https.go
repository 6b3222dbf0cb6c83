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
	"net/netip"
	"net/url"
	"strconv"
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
	resolver *resolver.Resolver
	port     int // replaces the URL's port when not 0
	client   *http.Client
}

func newPoster(res *resolver.Resolver, roots *x509.CertPool, port int) *poster {
	p := &poster{resolver: res, port: port}
	p.client = &http.Client{
		Transport: &http.Transport{
			DialContext:            p.dial,
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
// turn, never asking the system resolver.
func (p *poster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if p.port != 0 {
		port = strconv.Itoa(p.port)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if p.resolver == nil {
		return nil, errors.New("no resolver")
	} else if ips, err = p.resolver.LookupIP(ctx, host); err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s: no address", host)
	}
	var d net.Dialer
	var errs []error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
