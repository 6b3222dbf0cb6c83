package sdk

import (
	"errors"
	"fmt"
	"strconv"
)

// Stage names a hook point (DESIGN.md, Hook points).
type Stage string

const (
	StageConnect     Stage = "connect"
	StageHelo        Stage = "helo"
	StageAuth        Stage = "auth"
	StageMail        Stage = "mail"
	StageRcpt        Stage = "rcpt"
	StageCommand     Stage = "command"
	StageData        Stage = "data"
	StagePredelivery Stage = "predelivery"

	// Notifications: every handler runs, verdicts are ignored.
	StageDelivered  Stage = "delivered"
	StageDeferred   Stage = "deferred"
	StageBounced    Stage = "bounced"
	StageDisconnect Stage = "disconnect"
)

// Stages lists every stage in the order a message meets them.
var Stages = []Stage{
	StageConnect, StageHelo, StageAuth, StageMail, StageRcpt, StageCommand,
	StageData, StagePredelivery, StageDelivered, StageDeferred, StageBounced,
	StageDisconnect,
}

// IsNotification reports whether verdicts at s are ignored.
func (s Stage) IsNotification() bool {
	switch s {
	case StageDelivered, StageDeferred, StageBounced, StageDisconnect:
		return true
	}
	return false
}

// Verdict is a hook's answer. The zero value is Continue.
type Verdict uint8

const (
	Continue Verdict = iota // no opinion: run the next hook
	Accept                  // positive outcome; stop this stage's chain
	Reject                  // permanent failure (5xx); stop
	Defer                   // temporary failure (4xx); stop
	Drop                    // quietly discard the current unit of work; stop
)

func (v Verdict) String() string {
	switch v {
	case Continue:
		return "continue"
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Defer:
		return "defer"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// EnhancedCode is an RFC 3463 status code class.subject.detail, e.g.
// {5, 7, 1}. The zero value means "the stage default".
type EnhancedCode [3]uint16

func (e EnhancedCode) String() string { return string(e.Append(make([]byte, 0, 11))) }

// Append appends e as String renders it ("5.7.1") to b: the SMTP server
// writes it into every reply that has one, without fmt or a string.
func (e EnhancedCode) Append(b []byte) []byte {
	b = strconv.AppendUint(b, uint64(e[0]), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(e[1]), 10)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(e[2]), 10)
}

// IsZero reports whether e is unset.
func (e EnhancedCode) IsZero() bool { return e == EnhancedCode{} }

// ParseEnhancedCode parses "5.7.1": class 2, 4 or 5, then subject and
// detail of one to three digits each (RFC 3463).
func ParseEnhancedCode(s string) (EnhancedCode, error) {
	var e EnhancedCode
	part, digits := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9' && digits < 3:
			e[part] = e[part]*10 + uint16(c-'0')
			digits++
		case c == '.' && digits > 0 && part < 2:
			part, digits = part+1, 0
		default:
			return EnhancedCode{}, fmt.Errorf("sdk: bad enhanced status code %q", s)
		}
	}
	if part != 2 || digits == 0 || (e[0] != 2 && e[0] != 4 && e[0] != 5) {
		return EnhancedCode{}, fmt.Errorf("sdk: bad enhanced status code %q", s)
	}
	return e, nil
}

// Decision is what a hook decides. Build it with the constructors; the zero
// value is Continue.
type Decision struct {
	Verdict    Verdict
	Code       int          // SMTP reply code; 0 = stage default for the verdict
	Enhanced   EnhancedCode // zero = stage default
	Message    string       // client-visible, generic, single line
	Reason     string       // for logs only
	Disconnect bool         // Reject/Defer only: reply, then close the connection
}

// ContinueDecision is the zero Decision, named for readability.
func ContinueDecision() Decision { return Decision{} }

// AcceptDecision accepts; at rcpt it authorizes relaying for the recipient.
func AcceptDecision() Decision { return Decision{Verdict: Accept} }

// RejectDecision fails permanently with a 5xx code.
func RejectDecision(code int, enhanced EnhancedCode, msg string) Decision {
	return Decision{Verdict: Reject, Code: code, Enhanced: enhanced, Message: msg}
}

// DeferDecision fails temporarily with a 4xx code.
func DeferDecision(code int, enhanced EnhancedCode, msg string) Decision {
	return Decision{Verdict: Defer, Code: code, Enhanced: enhanced, Message: msg}
}

// DropDecision quietly discards the current unit of work.
func DropDecision() Decision { return Decision{Verdict: Drop} }

// WithReason returns d with a log-only reason.
func (d Decision) WithReason(reason string) Decision { d.Reason = reason; return d }

// MaxMessageLen bounds the client-visible text of a decision.
const MaxMessageLen = 400

// ErrInvalidDecision is wrapped by every Validate error.
var ErrInvalidDecision = errors.New("invalid decision")

// Validate checks d for use at stage: Reject uses a 5xx code with class 5,
// Defer a 4xx code with class 4, Accept a 2xx code (3xx at data and the
// command stage, for 354), and the message is printable, single-line and
// short. A zero code or enhanced code is always valid (the stage default
// fills it in).
func (d Decision) Validate(stage Stage) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("sdk: %s at %s: %s: %w", d.Verdict, stage, fmt.Sprintf(format, a...), ErrInvalidDecision)
	}
	var lo, hi int
	var class uint16
	switch d.Verdict {
	case Continue, Drop:
		if d.Code != 0 || !d.Enhanced.IsZero() {
			return bad("%s takes no reply code", d.Verdict)
		}
	case Accept:
		lo, hi, class = 200, 299, 2
		if stage == StageData || stage == StageCommand {
			hi = 399
		}
	case Reject:
		lo, hi, class = 500, 599, 5
	case Defer:
		lo, hi, class = 400, 499, 4
	default:
		return bad("unknown verdict")
	}
	if d.Code != 0 && (d.Code < lo || d.Code > hi) {
		return bad("code %d outside %d-%d", d.Code, lo, hi)
	}
	if !d.Enhanced.IsZero() {
		if d.Verdict == Accept {
			if d.Enhanced[0] != 2 {
				return bad("enhanced code %s is not class 2", d.Enhanced)
			}
		} else if d.Enhanced[0] != class {
			return bad("enhanced code %s is not class %d", d.Enhanced, class)
		}
		if d.Enhanced[1] > 999 || d.Enhanced[2] > 999 {
			return bad("enhanced code %s out of range", d.Enhanced)
		}
	}
	if d.Disconnect && d.Verdict != Reject && d.Verdict != Defer {
		return bad("disconnect needs reject or defer")
	}
	if len(d.Message) > MaxMessageLen {
		return bad("message longer than %d bytes", MaxMessageLen)
	}
	for i := 0; i < len(d.Message); i++ {
		if c := d.Message[i]; c < 0x20 || c == 0x7f {
			return bad("message has control byte %#x", c)
		}
	}
	return nil
}
