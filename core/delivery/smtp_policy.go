package delivery

// This file decides how the SMTP transport secures each exchanger: the
// route's TLS level, raised by the destination's MTA-STS policy (RFC 8461)
// and the exchanger's DANE TLSA records (RFC 7672), checked against a
// message's REQUIRETLS (RFC 8689), with every policy session's outcome
// handed to TLS-RPT (RFC 8460).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"

	"github.com/mailgate/gateway/core/dane"
	"github.com/mailgate/gateway/core/mtasts"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/tlsrpt"
)

// TLS levels a recipient domain's policy sets for an MX delivery, above the
// route's (Result.TLSPolicy and connKey.tls name them too).
const (
	TLSDANE   = "dane"    // TLS mandatory, the certificate matched against the exchanger's TLSA records
	TLSMTASTS = "mta-sts" // TLS mandatory, chain and MX name verified: the domain's MTA-STS policy in enforce mode
)

// STSPolicies gives recipient domains' MTA-STS policies; *mtasts.Client
// implements it.
type STSPolicies interface {
	Policy(ctx context.Context, domain string) (*mtasts.Policy, error)
}

// TLSReporter records the TLS outcome of sessions for TLS-RPT;
// *tlsrpt.Reporter implements it. Its methods are called on the delivery
// path and must not block.
type TLSReporter interface {
	Success(ctx context.Context, p tlsrpt.Policy)
	Failure(ctx context.Context, p tlsrpt.Policy, f tlsrpt.Failure)
}

// tlsPlan is how one exchanger is to be secured.
type tlsPlan struct {
	level  string          // connKey.tls: a Route.TLS level, TLSDANE or TLSMTASTS
	tlsa   []resolver.TLSA // TLSDANE: the usable records
	sts    *mtasts.Policy  // the domain's MTA-STS policy (enforce or testing); nil = none
	report *tlsrpt.Policy  // what TLS-RPT files the session's outcome under; nil = nothing
	// testErr is what verifying the certificate as the MTA-STS policy
	// in testing mode wants found: reported, never enforced.
	testErr error
	// unlisted says the host is not in the MTA-STS policy (testing mode:
	// its sessions are reported as failures).
	unlisted bool
}

// relaxed reports whether job's sender asked, with "TLS-Required: No"
// (RFC 8689 §5), that recipients' TLS policies be ignored for it. A
// REQUIRETLS message cannot ask that.
func relaxed(job *Job) bool {
	return job.Envelope != nil && job.Envelope.TLSOptional && !job.Envelope.RequireTLS
}

// requiresTLS reports whether job's message was sent with REQUIRETLS.
func requiresTLS(job *Job) bool { return job.Envelope != nil && job.Envelope.RequireTLS }

// stsFor returns the MTA-STS policy of job's domain in testing or enforce
// mode, or nil. A policy that cannot be had is reported and delivery goes
// on without one (RFC 8461 §5: a sender must not defer for want of one).
func (s *SMTP) stsFor(ctx context.Context, job *Job) *mtasts.Policy {
	if s.opt.MTASTS == nil || relaxed(job) {
		return nil
	}
	p, err := s.opt.MTASTS.Policy(ctx, job.Domain)
	if err != nil {
		s.log.InfoContext(ctx, "smtp: no MTA-STS policy to apply", "id", job.ID, "domain", job.Domain, "err", err)
		s.reportFailure(ctx, tlsrpt.Policy{Domain: job.Domain, Type: tlsrpt.TypeSTS}, tlsrpt.Failure{ResultType: mtasts.FailureType(err)})
		return nil
	}
	if p == nil || p.Mode == mtasts.ModeNone {
		return nil
	}
	return p
}

// destination is where a job may go and what vouches for the list.
type destination struct {
	hosts []smtpHost
	// mx says the hosts are the domain's exchangers (not a route's via,
	// not an address literal): the recipients' policies apply.
	mx bool
	// secure says DNSSEC validated the MX list (RFC 8689 §4.2.1).
	secure bool
	sts    *mtasts.Policy // the domain's MTA-STS policy (enforce or testing); nil = none
}

// stsHosts keeps the exchangers d's MTA-STS policy lets job go to (RFC
// 8461 §4.1): under enforce, a host the policy does not list is skipped;
// under testing every host stays, and a session with one the policy does
// not list is reported as a failure (see planFor). When enforce leaves
// none, the job waits (451 4.7.5) and that is reported once.
func (s *SMTP) stsHosts(ctx context.Context, job *Job, d *destination) *Result {
	if d.sts == nil || d.sts.Mode != mtasts.ModeEnforce {
		return nil
	}
	var kept []smtpHost
	for _, h := range d.hosts {
		if d.sts.Match(h.name) {
			kept = append(kept, h)
			continue
		}
		s.log.InfoContext(ctx, "smtp: exchanger not in the MTA-STS policy, skipped", "id", job.ID, "domain", job.Domain, "host", h.name)
	}
	if len(kept) == 0 {
		s.reportFailure(ctx, stsReport(job.Domain, d.sts, ""), tlsrpt.Failure{ResultType: tlsrpt.ResultValidationFailure,
			ReasonCode: "no MX host is listed in the MTA-STS policy"})
		r := localResult(Temporary, 451, 4, 7, 5, "no exchanger of "+job.Domain+" is listed in its MTA-STS policy (mx: "+
			strings.Join(d.sts.MX, ", ")+")")
		r.TLSPolicy = TLSMTASTS
		return &r
	}
	d.hosts = kept
	return nil
}

// stsReport is the TLS-RPT policy of an MTA-STS session with mxHost.
func stsReport(domain string, sts *mtasts.Policy, mxHost string) tlsrpt.Policy {
	return tlsrpt.Policy{Domain: domain, Type: tlsrpt.TypeSTS, Strings: sts.Strings(), MXHost: mxHost}
}

// planFor decides how h is to be secured for job, starting from the route's
// level. For an MX delivery: DANE when the resolver vouches for h's usable
// TLSA records (it wins over everything but "none", RFC 7672 §2.2 and RFC
// 8461 §2); else the MTA-STS policy in enforce mode; else at least
// "encrypt" when h has validated TLSA records none of which is usable. A
// failed TLSA look-up makes h unusable (no fall-back to clear text), and a
// REQUIRETLS message needs a verified level; either way h is skipped with
// the failure.
func (s *SMTP) planFor(ctx context.Context, job *Job, h smtpHost, d *destination, level string) (*tlsPlan, *Result) {
	plan := &tlsPlan{level: level}
	if fail := unvouchedMX(job, h.name, d, level); fail != nil {
		return plan, fail // before any look-up: nothing can make this host right
	}
	if level == TLSNone || !d.mx {
		return plan, requireTLSFailure(job, plan, h.name)
	}
	if s.opt.DANE && s.opt.Resolver != nil && !relaxed(job) && !h.ip.IsValid() {
		if fail := s.danePlan(ctx, job, h, plan); fail != nil {
			return plan, fail
		}
		if plan.level == TLSDANE {
			return plan, requireTLSFailure(job, plan, h.name)
		}
	}
	switch {
	case d.sts != nil:
		p := stsReport(job.Domain, d.sts, h.name)
		plan.sts, plan.report = d.sts, &p
		plan.unlisted = !d.sts.Match(h.name) // testing mode: reported, not enforced
		if d.sts.Mode == mtasts.ModeEnforce {
			plan.level = TLSMTASTS
		}
	case plan.report == nil && s.opt.Reports != nil && !relaxed(job):
		// A "TLS-Required: No" message (TLS-RPT's own reports among
		// them, RFC 8460 §5.3) is not evaluated against any policy.
		plan.report = &tlsrpt.Policy{Domain: job.Domain, Type: tlsrpt.TypeNoPolicy, MXHost: h.name}
	}
	return plan, requireTLSFailure(job, plan, h.name)
}

// danePlan looks up h's DANE policy (dane.Lookup: TLSA records count when
// the resolver vouches for them and for h's addresses) and raises plan:
// TLSDANE with the usable records, or "encrypt" (TLS stays mandatory, RFC
// 7672 §2.2) when none is usable, which MTA-STS may raise further. A
// look-up that failed for now makes h unusable: it cannot be reached
// safely, and clear text is no fall-back.
func (s *SMTP) danePlan(ctx context.Context, job *Job, h smtpHost, plan *tlsPlan) *Result {
	p, err := dane.Lookup(ctx, s.opt.Resolver, h.name)
	if err != nil && resolver.IsTemporary(err) {
		s.log.InfoContext(ctx, "smtp: DANE look-up failed", "id", job.ID, "host", h.name, "err", err)
		s.reportFailure(ctx, tlsrpt.Policy{Domain: job.Domain, Type: tlsrpt.TypeTLSA, MXHost: h.name},
			tlsrpt.Failure{ResultType: dane.FailureType(err), ReceivingMXHostname: h.name})
		r := localResult(Temporary, 451, 4, 7, 5, "DANE: the TLSA look-up for "+h.name+" failed, so it cannot be reached safely: "+resultText(err))
		r.TLSPolicy = TLSDANE
		return &r
	}
	if err != nil || p.Level == dane.LevelNone {
		return nil // a permanent failure is the address look-up's to report
	}
	strs := make([]string, len(p.All))
	for i, r := range p.All {
		strs[i] = r.String()
	}
	plan.report = &tlsrpt.Policy{Domain: job.Domain, Type: tlsrpt.TypeTLSA, Strings: strs}
	switch {
	case p.Level == dane.LevelVerify:
		plan.level, plan.tlsa = TLSDANE, p.Usable
	case !tlsMandatory(plan.level):
		plan.level = TLSEncrypt
	}
	return nil
}

// requireTLSFailure is the failure of a REQUIRETLS message for a host
// that plan does not reach over verified TLS (RFC 8689 §4.2.1: DANE or
// PKIX), or nil.
func requireTLSFailure(job *Job, plan *tlsPlan, host string) *Result {
	if !requiresTLS(job) || tlsVerified(plan.level) {
		return nil
	}
	return requireTLSResult(host, plan.level,
		"no DANE, no MTA-STS policy in enforce mode, and the TLS level is "+plan.level)
}

// unvouchedMX is the failure of a REQUIRETLS message for an exchanger
// nothing vouches for (RFC 8689 §4.2.1): the MX answer was not
// DNSSEC-validated and no MTA-STS policy of the domain lists the host (in
// either mode: the policy came over verified HTTPS, and the name match is
// RFC 8461 §4.1's). Nil for a route's via or an address literal, which
// the operator named.
func unvouchedMX(job *Job, host string, d *destination, level string) *Result {
	if !requiresTLS(job) || !d.mx || d.secure || (d.sts != nil && d.sts.Match(host)) {
		return nil
	}
	return requireTLSResult(host, level, "the MX answer for "+job.Domain+
		" is not DNSSEC-validated and no MTA-STS policy of the domain lists the host")
}

// requireTLSResult is the 550 5.7.30 of a REQUIRETLS message that cannot go
// to host.
func requireTLSResult(host, level, why string) *Result {
	r := localResult(Permanent, 550, 5, 7, 30, "REQUIRETLS: "+host+" cannot be reached over verified TLS ("+why+")")
	r.TLSPolicy = level
	return &r
}

// policyTLSConfig is the STARTTLS config of the levels a policy sets, or
// of an MTA-STS policy in testing mode (whose check is recorded in plan,
// never enforced); nil for the others.
func (s *SMTP) policyTLSConfig(key connKey, plan *tlsPlan) *tls.Config {
	switch {
	case key.tls == TLSDANE:
		return dane.Config(key.host, plan.tlsa, []string{key.host})
	case key.tls == TLSMTASTS:
		return &tls.Config{ServerName: key.host, RootCAs: s.opt.RootCAs, MinVersion: tls.VersionTLS12}
	case plan.sts != nil && !tlsVerified(key.tls):
		roots := s.opt.RootCAs
		return &tls.Config{ServerName: key.host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				plan.testErr = verifyChain(cs, key.host, roots)
				return nil
			}}
	}
	return nil
}

// verifyChain verifies cs's chain against roots (nil: the system's) for
// host, as crypto/tls does when it is not told to skip that.
func verifyChain(cs tls.ConnectionState, host string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}

// reportTLS hands the outcome of sc's STARTTLS under plan to TLS-RPT:
// err is the handshake's failure, offered whether STARTTLS was offered.
func (s *SMTP) reportTLS(ctx context.Context, sc *smtpConn, plan *tlsPlan, offered bool, err error) {
	if plan == nil || plan.report == nil || s.opt.Reports == nil {
		return
	}
	if offered && err == nil {
		err = plan.testErr
	}
	if offered && err == nil && !plan.unlisted {
		s.opt.Reports.Success(ctx, *plan.report)
		return
	}
	f := tlsrpt.Failure{ResultType: tlsrpt.ResultSTARTTLSNotSupported, SendingMTAIP: sc.local,
		ReceivingMXHostname: sc.key.host, ReceivingIP: hostOf(sc.key.addr)}
	switch {
	case offered && err != nil:
		f.ResultType, f.ReasonCode = failureType(sc.key.tls, err), resultText(err)
	case offered:
		f.ResultType, f.ReasonCode = tlsrpt.ResultValidationFailure, "MX host not listed in the MTA-STS policy"
	}
	s.opt.Reports.Failure(ctx, *plan.report, f)
}

// reportFailure hands a failure found before any session to TLS-RPT.
func (s *SMTP) reportFailure(ctx context.Context, p tlsrpt.Policy, f tlsrpt.Failure) {
	if s.opt.Reports != nil {
		s.opt.Reports.Failure(ctx, p, f)
	}
}

// failureType is the RFC 8460 result-type of a failed handshake at level.
func failureType(level string, err error) string {
	if level == TLSDANE {
		return dane.FailureType(err)
	}
	var (
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		unknown x509.UnknownAuthorityError
	)
	switch {
	case errors.As(err, &host):
		return "certificate-host-mismatch"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "certificate-expired"
	case errors.As(err, &unknown):
		return "certificate-not-trusted"
	}
	return "validation-failure"
}

// hostOf is the host part of "host:port".
func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}
