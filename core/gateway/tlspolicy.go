package gateway

// This file wires outbound transport security (delivery's mta_sts, dane,
// tls_ca_file and tls_reports): the trust anchors, the MTA-STS client and
// the TLS-RPT reporter, whose reports by mail go through our own queue.

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/inject"
	"github.com/mailgate/gateway/core/mtasts"
	"github.com/mailgate/gateway/core/tlsrpt"
)

// rootCAs is the system's roots plus the certificates of file, or nil
// (crypto/tls's default: the system roots) when file is "".
func rootCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("delivery: tls_ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("delivery: tls_ca_file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// transportSecurity is what the SMTP transport is given to honour and
// report recipients' TLS policies.
type transportSecurity struct {
	roots   *x509.CertPool
	sts     delivery.STSPolicies // nil: mta_sts = false
	reports *tlsrpt.Reporter     // nil: no tls_reports block
}

// newTransportSecurity builds the parts delivery's block asks for. The
// MTA-STS cache lives in the spool's key-value store, so a restart does
// not fetch every policy again.
func (g *Gateway) newTransportSecurity(opt Options) (transportSecurity, error) {
	d := g.cfg.Delivery
	var ts transportSecurity
	var err error
	if ts.roots, err = rootCAs(d.TLSCAFile); err != nil {
		return ts, err
	}
	if d.MTASTS {
		ts.sts = mtasts.New(mtasts.Options{Resolver: g.dns, RootCAs: ts.roots, Port: opt.HTTPSPort,
			Store: g.spool, Log: g.log.With("part", "mta-sts")})
	}
	if r := d.TLSReports; r != nil {
		ts.reports = tlsrpt.New(tlsrpt.Options{
			Organization: r.Organization, From: r.From,
			Resolver: g.dns, RootCAs: ts.roots, HTTPSPort: opt.HTTPSPort,
			Mail: g.submitReport, Store: g.spool, Log: g.log.With("part", "tls-rpt"),
		})
	}
	return ts, nil
}

// reporter is ts.reports as the transport's interface: nil when off.
func (ts transportSecurity) reporter() delivery.TLSReporter {
	if ts.reports == nil {
		return nil
	}
	return ts.reports
}

// submitReport queues a TLS-RPT report by mail: an in-process session of
// the pickup's server, as a local authenticated submission, so the report
// is signed by the dkim block of its sender's domain (RFC 8460 §3 wants
// it signed) and meets the hooks other mail meets.
func (g *Gateway) submitReport(ctx context.Context, from string, to []string, msg []byte) error {
	sender, err := envelope.ParseAddress(from)
	if err != nil {
		return fmt.Errorf("tls-rpt: sender %q: %w", from, err)
	}
	env := &envelope.Envelope{Sender: sender}
	for _, t := range to {
		a, err := envelope.ParseAddress(t)
		if err != nil {
			return fmt.Errorf("tls-rpt: recipient %q: %w", t, err)
		}
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a})
	}
	res, err := inject.Submit(ctx, g.pickup.srv, inject.Submission{
		Client:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0),
		AuthUser:  "tls-rpt",
		LocalName: "tls-rpt",
		Envelope:  env,
		Message:   bytes.NewReader(msg),
	}, g.log)
	if err != nil {
		return fmt.Errorf("tls-rpt: queueing the report: %w", err)
	}
	for i, r := range res.Rcpts {
		if r.Code/100 != 2 {
			return fmt.Errorf("tls-rpt: report to %s refused: %w", to[i], r)
		}
	}
	if res.Data.Code/100 != 2 {
		return fmt.Errorf("tls-rpt: report refused: %w", res.Data)
	}
	return nil
}
