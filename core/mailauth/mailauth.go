// Package mailauth owns the checks of inbound mail: SPF (RFC 7208, with
// blitiri.com.ar/go/spf), DKIM verification (RFC 6376 and RFC 8463, with
// go-msgauth/dkim), DMARC (RFC 7489: go-msgauth/dmarc parses the record,
// alignment and the organizational domain through the public suffix list
// are here), a slot for an ARC verifier, and the Authentication-Results
// field (RFC 8601) that reports them. Every DNS look-up goes through
// core/resolver, so its cache and its errors apply. A Checker is built
// once per gateway from the authentication block and is safe for
// concurrent use; Check judges one message.
package mailauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/sdk"
)

// DMARC modes of Options.DMARC (the config's dmarc = …).
const (
	DMARCOff     = "off"     // not evaluated
	DMARCReport  = "report"  // results in the header only
	DMARCEnforce = "enforce" // p=reject refused, p=quarantine marked, DNS trouble deferred
)

// QuarantineField is the header field added to a message that fails DMARC
// under a quarantine policy with dmarc = "enforce": hooks (and the
// mailbox's filters) act on it.
const QuarantineField = "X-Gateway-Quarantine"

// DefaultTimeout bounds one Check's DNS work (RFC 7208 §4.6.4 asks for at
// least 20 seconds for SPF).
const DefaultTimeout = 20 * time.Second

// maxSignatures is the most DKIM-Signature fields verified per message:
// each costs a key look-up and a public-key operation.
const maxSignatures = 10

// maxAuthorDomains is the most distinct From: domains DMARC looks up per
// message (each costs up to two look-ups); a message with more is
// permerror, refused under dmarc = "enforce".
const maxAuthorDomains = 5

// ARCVerifier checks a message's ARC chain (RFC 8617). result is the
// chain's status ("none", "pass", "fail", "temperror"); resinfo is its
// clause for Authentication-Results, e.g. "arc=pass (i=2 d=lists.example)".
type ARCVerifier func(ctx context.Context, msg []byte) (result, resinfo string)

// Options configure a Checker.
type Options struct {
	SPF        bool
	DKIM       bool
	DMARC      string // DMARCOff ("" too), DMARCReport or DMARCEnforce
	AuthservID string // required: the authserv-id of our Authentication-Results
	Resolver   *resolver.Resolver
	// ARC, when set, verifies ARC chains; nil leaves ctx.auth.arc "none"
	// and the header without an arc clause.
	ARC ARCVerifier
	// Timeout bounds the DNS work of one Check; 0 is DefaultTimeout.
	Timeout time.Duration
	// Sample reports whether a message falls in a DMARC pct= sample of pct
	// percent; nil draws at random.
	Sample func(pct int) bool
	Log    *slog.Logger
}

// Checker evaluates messages; build it with New.
type Checker struct {
	opt Options
	log *slog.Logger
}

// New checks opt and returns a Checker.
func New(opt Options) (*Checker, error) {
	switch opt.DMARC {
	case "":
		opt.DMARC = DMARCOff
	case DMARCOff, DMARCReport, DMARCEnforce:
	default:
		return nil, fmt.Errorf("mailauth: dmarc must be off, report or enforce, not %q", opt.DMARC)
	}
	if opt.AuthservID == "" {
		return nil, errors.New("mailauth: no authserv-id")
	}
	if opt.Resolver == nil {
		return nil, errors.New("mailauth: no resolver")
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Sample == nil {
		opt.Sample = func(pct int) bool { return rand.IntN(100) < pct }
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{opt: opt, log: log}, nil
}

// AuthservID is the authserv-id of our Authentication-Results fields.
func (c *Checker) AuthservID() string { return c.opt.AuthservID }

// Message is what Check looks at.
type Message struct {
	ClientIP netip.Addr
	HELO     string
	Sender   envelope.Address  // MAIL FROM; the null path for <>
	Header   []sdk.HeaderField // the header fields in order, values unfolded
	// Open returns the whole content, for DKIM and ARC.
	Open func() (io.ReadCloser, error)
}

// Action is what the gateway does with a message after the checks.
type Action int

const (
	Accept     Action = iota
	Quarantine        // accept, with the QuarantineField
	Reject            // 550 5.7.1
	Defer             // 451 4.7.5
)

// Verdict is the outcome of Check.
type Verdict struct {
	Results sdk.AuthResults
	Action  Action
	// Reply is the client-visible text for Reject and Defer.
	Reply string
	// Header is the fields to put at the top of the message, each ending
	// in CRLF: Authentication-Results, and the QuarantineField on
	// Quarantine.
	Header []byte
}

// Check runs the configured checks on m. An error is a local failure
// (reading the content), not a verdict on the message.
func (c *Checker) Check(ctx context.Context, m *Message) (*Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opt.Timeout)
	defer cancel()
	authors, authorErr := authorDomains(m.Header)
	var (
		wg     sync.WaitGroup
		spf    spfOutcome
		dkims  []dkimOutcome
		dkErr  error
		arc    arcOutcome
		arcEr  error
		recs   []policyRecord
		panics [4]error
	)
	if c.opt.SPF {
		wg.Go(func() { panics[0] = safely("SPF", func() { spf = c.checkSPF(ctx, m) }) })
	}
	if c.opt.DKIM {
		wg.Go(func() { panics[1] = safely("DKIM", func() { dkims, dkErr = c.verifyDKIM(ctx, m) }) })
	}
	if c.opt.ARC != nil {
		wg.Go(func() { panics[2] = safely("ARC", func() { arc, arcEr = c.verifyARC(ctx, m) }) })
	}
	if c.opt.DMARC != DMARCOff {
		wg.Go(func() { panics[3] = safely("DMARC", func() { recs = c.lookupPolicies(ctx, authors) }) })
	}
	wg.Wait()
	if err := errors.Join(dkErr, arcEr, errors.Join(panics[:]...)); err != nil {
		return nil, err
	}
	v := &Verdict{}
	var dm dmarcOutcome
	if c.opt.DMARC != DMARCOff {
		dm = c.evaluateDMARC(authorErr, recs, spf, dkims)
	}
	v.Results = results(spf, dkims, dm, arc)
	c.decide(v, dm)
	v.Header = c.header(spf, dkims, dm, arc, v.Action == Quarantine)
	return v, nil
}

// safely runs check and turns a panic in it (a library meeting input it
// cannot take) into an error, a local failure: the checks run on their
// own goroutines, where the session's recover cannot catch a panic, and
// one there would end the whole process.
func safely(name string, check func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("mailauth: the %s check panicked: %v\n%s", name, r, debug.Stack())
		}
	}()
	check()
	return nil
}

// decide sets the action: only dmarc = "enforce" refuses, defers or
// quarantines.
func (c *Checker) decide(v *Verdict, dm dmarcOutcome) {
	if c.opt.DMARC != DMARCEnforce {
		return
	}
	switch {
	case dm.unjudged:
		v.Action = Reject
		v.Reply = "DMARC cannot judge this message (" + dm.reason + ")"
	case dm.result == "fail" && dm.policy == "reject":
		v.Action = Reject
		v.Reply = "DMARC policy of " + dm.domain + " rejects this message (From: not aligned with a passing SPF or DKIM)"
	case dm.result == "fail" && dm.policy == "quarantine":
		v.Action = Quarantine
	case dm.result == "temperror" && dm.policy != "none":
		v.Action = Defer
		v.Reply = "DMARC check of " + dm.domain + " failed temporarily (DNS), try again later"
	}
}

// results are the outcomes as hooks see them.
func results(spf spfOutcome, dkims []dkimOutcome, dm dmarcOutcome, arc arcOutcome) sdk.AuthResults {
	r := sdk.AuthResults{
		SPF:   sdk.SPFResult{Result: orNone(spf.result), Domain: spf.domain},
		DMARC: sdk.DMARCResult{Result: orNone(dm.result), Policy: dm.policy, Domain: dm.domain},
		ARC:   sdk.ARCResult{Result: orNone(arc.result)},
	}
	for _, d := range dkims {
		r.DKIM = append(r.DKIM, sdk.DKIMResult{Result: d.result, Domain: d.domain, Selector: d.selector})
	}
	return r
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// arcOutcome is the ARC verifier's answer.
type arcOutcome struct{ result, resinfo string }

// verifyARC reads the content and hands it to the ARC verifier.
func (c *Checker) verifyARC(ctx context.Context, m *Message) (arcOutcome, error) {
	rc, err := m.Open()
	if err != nil {
		return arcOutcome{}, fmt.Errorf("mailauth: open: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return arcOutcome{}, fmt.Errorf("mailauth: read: %w", err)
	}
	res, info := c.opt.ARC(ctx, b)
	return arcOutcome{result: res, resinfo: info}, nil
}
