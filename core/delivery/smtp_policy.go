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

// stsHosts keeps the exchangers sts lets job go to (RFC 8461 §4.1):
// under enforce, a host the policy does not list is skipped and reported;
// under testing every host stays and the mismatches are only reported.
// When enforce leaves none, the job waits: 451 4.7.5.
func (s *SMTP) stsHosts(ctx context.Context, job *Job, hosts []smtpHost, sts *mtasts.Policy) ([]smtpHost, *Result) {
	if sts == nil {
		return hosts, nil
	}
	var kept []smtpHost
	for _, h := range hosts {
		if sts.Match(h.name) {
			kept = append(kept, h)
			continue
		}
		s.log.InfoContext(ctx, "smtp: exchanger not in the MTA-STS policy", "id", job.ID, "domain", job.Domain, "host", h.name, "mode", string(sts.Mode))
		s.reportFailure(ctx, stsReport(job.Domain, sts, h.name), tlsrpt.Failure{ResultType: "validation-failure",
			ReceivingMXHostname: h.name, AdditionalInfo: "MX host not listed in the MTA-STS policy"})
		if sts.Mode != mtasts.ModeEnforce {
			kept = append(kept, h)
		}
	}
	if len(kept) == 0 {
		r := localResult(Temporary, 451, 4, 7, 5, "no exchanger of "+job.Domain+" is listed in its MTA-STS policy (mx: "+
			strings.Join(sts.MX, ", ")+")")
		r.TLSPolicy = TLSMTASTS
		return nil, &r
	}
	return kept, nil
}

// stsReport is the TLS-RPT policy of an MTA-STS session with mxHost.
func stsReport(domain string, sts *mtasts.Policy, mxHost string) tlsrpt.Policy {
	return tlsrpt.Policy{Domain: domain, Type: tlsrpt.TypeSTS, Strings: sts.Strings(), MXHost: mxHost}
}

// planFor decides how h is to be secured for job, starting from the route's
// level: DANE when the resolver vouches for h's TLSA records (it wins over
// everything but "none", RFC 7672 §2.2 and RFC 8461 §2), else the MTA-STS
// policy sts. A failed TLSA look-up makes h unusable (no fall-back to
// clear text), and a REQUIRETLS message needs a verified level; either
// way h is skipped with the failure.
func (s *SMTP) planFor(ctx context.Context, job *Job, h smtpHost, sts *mtasts.Policy, level string) (*tlsPlan, *Result) {
	plan := &tlsPlan{level: level}
	if level == TLSNone {
		return plan, requireTLSFailure(job, plan, h.name)
	}
	if s.opt.DANE && s.opt.Resolver != nil && !relaxed(job) && !h.ip.IsValid() {
		done, fail := s.danePlan(ctx, job, h, plan)
		if fail != nil || done {
			return plan, fail
		}
	}
	switch {
	case sts != nil:
		p := stsReport(job.Domain, sts, h.name)
		plan.sts, plan.report = sts, &p
		if sts.Mode == mtasts.ModeEnforce {
			plan.level = TLSMTASTS
		}
	case s.opt.Reports != nil && !relaxed(job):
		// A "TLS-Required: No" message (TLS-RPT's own reports among
		// them, RFC 8460 §5.3) is not evaluated against any policy.
		plan.report = &tlsrpt.Policy{Domain: job.Domain, Type: tlsrpt.TypeNoPolicy, MXHost: h.name}
	}
	return plan, requireTLSFailure(job, plan, h.name)
}

// danePlan decides h's DANE policy (dane.Lookup: TLSA records count when
// the resolver vouches for them and for h's addresses) and sets plan's
// level: TLSDANE with the usable records, or "encrypt" when none is usable
// (RFC 7672 §2.2: TLS stays mandatory). A look-up that failed for now
// makes h unusable: it cannot be reached safely, and clear text is no
// fall-back. done says the plan is made.
func (s *SMTP) danePlan(ctx context.Context, job *Job, h smtpHost, plan *tlsPlan) (done bool, fail *Result) {
	p, err := dane.Lookup(ctx, s.opt.Resolver, h.name)
	if err != nil && resolver.IsTemporary(err) {
		s.log.InfoContext(ctx, "smtp: DANE look-up failed", "id", job.ID, "host", h.name, "err", err)
		s.reportFailure(ctx, tlsrpt.Policy{Domain: job.Domain, Type: tlsrpt.TypeTLSA, MXHost: h.name},
			tlsrpt.Failure{ResultType: dane.FailureType(err), ReceivingMXHostname: h.name})
		r := localResult(Temporary, 451, 4, 7, 5, "DANE: the TLSA look-up for "+h.name+" failed, so it cannot be reached safely: "+resultText(err))
		r.TLSPolicy = TLSDANE
		return true, &r
	}
	if err != nil || p.Level == dane.LevelNone {
		return false, nil // a permanent failure is the address look-up's to report
	}
	strs := make([]string, len(p.All))
	for i, r := range p.All {
		strs[i] = r.String()
	}
	plan.report = &tlsrpt.Policy{Domain: job.Domain, Type: tlsrpt.TypeTLSA, Strings: strs}
	plan.level, plan.tlsa = TLSEncrypt, p.Usable
	if p.Level == dane.LevelVerify {
		plan.level = TLSDANE
	}
	return true, requireTLSFailure(job, plan, h.name)
}

// requireTLSFailure is the failure of a REQUIRETLS message for a host
// that plan does not reach over verified TLS (RFC 8689 §4.1), or nil.
func requireTLSFailure(job *Job, plan *tlsPlan, host string) *Result {
	if !requiresTLS(job) || tlsVerified(plan.level) {
		return nil
	}
	r := localResult(Permanent, 550, 5, 7, 30, "REQUIRETLS: "+host+" cannot be reached over verified TLS "+
		"(no DANE, no MTA-STS policy in enforce mode, and the route's tls is "+plan.level+")")
	r.TLSPolicy = plan.level
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
	if offered && err == nil {
		s.opt.Reports.Success(ctx, *plan.report)
		return
	}
	f := tlsrpt.Failure{ResultType: "starttls-not-supported", SendingMTAIP: sc.local,
		ReceivingMXHostname: sc.key.host, ReceivingIP: hostOf(sc.key.addr)}
	if offered {
		f.ResultType, f.ReasonCode = failureType(sc.key.tls, err), resultText(err)
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
