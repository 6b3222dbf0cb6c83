package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
)

// maxPolicySize is the largest policy file read (RFC 8461 §3.3: 64 KiB).
const maxPolicySize = 64 << 10

// wellKnownPath is where a policy host serves the policy (§3.2).
const wellKnownPath = "/.well-known/mta-sts.txt"

// newHTTPClient returns the client of policy fetches: its connections go
// to the addresses the Resolver gives at Options.Port, the certificate is
// verified against roots for the URL's host (mta-sts.<domain>), redirects
// are not followed (§3.3), no proxy is used and no connection is kept.
func (c *Client) newHTTPClient(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            c.res.DialFunc(c.port),
			TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch gets and parses the policy of domain from its policy host.
func (c *Client) fetch(ctx context.Context, domain string) (*Policy, error) {
	host := "mta-sts." + domain
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+wellKnownPath, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, host, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var cert *tls.CertificateVerificationError
		if errors.As(err, &cert) {
			return nil, fmt.Errorf("%w: %s: %w", ErrWebPKI, host, cert.Err)
		}
		var u *url.Error
		if errors.As(err, &u) {
			err = u.Err // it repeats the URL
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		what := "HTTP status " + strconv.Itoa(resp.StatusCode)
		if loc := resp.Header.Get("Location"); loc != "" {
			what += ", redirect to " + strconv.Quote(loc) + " not followed"
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrFetch, host, what)
	}
	if ct := resp.Header.Get("Content-Type"); !isTextPlain(ct) {
		return nil, fmt.Errorf("%w: %s: Content-Type %q is not text/plain", ErrInvalid, host, ct)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, host, err)
	case len(body) > maxPolicySize:
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalid, host, maxPolicySize)
	}
	p, err := parsePolicy(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, host, err)
	}
	return p, nil
}

// isTextPlain reports whether a Content-Type is text/plain, with any
// parameters (a charset).
func isTextPlain(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/plain"
}
