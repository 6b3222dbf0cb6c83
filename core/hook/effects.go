package hook

// This file is the one effects model (DESIGN.md, "Effects: one model for
// every handler"): the chain checks what every handler asks for, Lua or
// plugin alike, once, and the SMTP session and the delivery engine apply
// the result as it is.

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// Effects are the effects of one dispatch, checked for its stage: the
// addresses parsed as they would be on the wire and recipients each
// mailbox once, nothing the stage does not take. Handlers ask with
// sdk.Effects; the chain gives callers this.
type Effects struct {
	AddHeaders    []sdk.HeaderField  // data, predelivery: applied only if the message is accepted
	RemoveHeaders []string           // data, predelivery
	Recipients    []envelope.Address // rcpt, data, predelivery: the recipient(s) become these; nil = unchanged
	Sender        *envelope.Address  // mail, data, predelivery: the envelope sender becomes it (<> allowed)
	Body          []byte             // data, predelivery: the message becomes it; nil = unchanged
	Notes         map[string]string  // written in this dispatch, each key "<handler>/<name>"
	Skip          []string           // handlers to skip for the rest of the transaction
	Route         *sdk.Route         // predelivery
	ReplyLines    []string           // command: the reply to VRFY, EXPN or HELP
}

// Effect names one kind of effect.
type Effect uint8

const (
	EffectAddHeaders Effect = iota
	EffectRemoveHeaders
	EffectRecipients
	EffectSender
	EffectBody
	EffectRoute
	EffectReplyLines
	EffectNotes
	EffectSkip
	numEffects
)

var effectNames = [numEffects]string{
	"add_headers", "remove_headers", "recipients", "sender", "body", "route", "reply_lines", "notes", "skip",
}

// effectStages is the stage × effect table (DESIGN.md, Hook points): the
// stages that take each effect, in sdk.Stages order; nil means every
// stage. An effect given elsewhere is removed, with a warning.
var effectStages = [numEffects][]sdk.Stage{
	EffectAddHeaders:    {sdk.StageData, sdk.StagePredelivery},
	EffectRemoveHeaders: {sdk.StageData, sdk.StagePredelivery},
	EffectRecipients:    {sdk.StageRcpt, sdk.StageData, sdk.StagePredelivery},
	EffectSender:        {sdk.StageMail, sdk.StageData, sdk.StagePredelivery},
	EffectBody:          {sdk.StageData, sdk.StagePredelivery},
	EffectRoute:         {sdk.StagePredelivery},
	EffectReplyLines:    {sdk.StageCommand},
}

func (e Effect) String() string {
	if e < numEffects {
		return effectNames[e]
	}
	return fmt.Sprintf("effect(%d)", uint8(e))
}

// Stages returns the stages that take e, in sdk.Stages order.
func (e Effect) Stages() []sdk.Stage {
	if e >= numEffects {
		return nil
	}
	if s := effectStages[e]; s != nil {
		return slices.Clone(s)
	}
	return slices.Clone(sdk.Stages)
}

// TakenAt reports whether stage takes e.
func (e Effect) TakenAt(stage sdk.Stage) bool {
	if e >= numEffects {
		return false
	}
	s := effectStages[e]
	return s == nil || slices.Contains(s, stage)
}

// joinEffects names effects for a log line: "add_headers, route".
func joinEffects(es []Effect) string {
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.String()
	}
	return strings.Join(names, ", ")
}

// MaxRecipients is the most recipients one handler's answer may give (an
// alias or a list expanded): Postfix's virtual_alias_expansion_limit. More
// is a malformed effect, not a silent cut, so the handler's on_error
// decides.
const MaxRecipients = 1000

// Limits on the notes of one handler's answer.
const (
	MaxNotes     = 1000
	MaxNoteKey   = 200  // bytes, the handler's name and "/" included
	MaxNoteValue = 4096 // bytes
)

// ErrBadEffect is wrapped by the error of a malformed effect: an address
// that would not pass as a path on the wire, a bad route, notes over the
// limits. The chain treats it as the handler's failure (its on_error).
var ErrBadEffect = errors.New("hook: bad effect")

// checkEffects returns eff, given by the handler named name at stage, as
// Effects: what stage does not take is left out and listed in off; a
// malformed effect is an error. utf8 allows UTF-8 in addresses (the
// transaction is SMTPUTF8).
func checkEffects(stage sdk.Stage, name string, utf8 bool, eff sdk.Effects) (out Effects, off []Effect, err error) {
	take := func(e Effect, given bool) bool {
		if given && !e.TakenAt(stage) {
			off = append(off, e)
			return false
		}
		return given
	}
	if take(EffectAddHeaders, len(eff.AddHeaders) > 0) {
		out.AddHeaders = eff.AddHeaders
	}
	if take(EffectRemoveHeaders, len(eff.RemoveHeaders) > 0) {
		out.RemoveHeaders = eff.RemoveHeaders
	}
	if take(EffectBody, eff.Body != nil) {
		out.Body = eff.Body
	}
	if take(EffectReplyLines, len(eff.ReplyLines) > 0) {
		out.ReplyLines = eff.ReplyLines
	}
	if take(EffectSkip, len(eff.Skip) > 0) {
		out.Skip = eff.Skip
	}
	if take(EffectRecipients, len(eff.Recipients) > 0) {
		if out.Recipients, err = recipients(eff.Recipients, utf8); err != nil {
			return Effects{}, nil, err
		}
	}
	if take(EffectSender, eff.Sender != nil) {
		a, err := address(*eff.Sender, true, utf8)
		if err != nil {
			return Effects{}, nil, fmt.Errorf("sender: %w", err)
		}
		out.Sender = &a
	}
	if take(EffectRoute, eff.Route != nil) {
		if err := checkRoute(*eff.Route); err != nil {
			return Effects{}, nil, err
		}
		out.Route = eff.Route
	}
	if take(EffectNotes, len(eff.Notes) > 0) {
		if out.Notes, err = notes(name, eff.Notes); err != nil {
			return Effects{}, nil, err
		}
	}
	return out, off, nil
}

// address converts an address from a handler into an envelope address,
// checked as the path <local@domain> would be checked on the wire (RFC
// 5321 syntax, no source route, UTF-8 only when utf8 is set); the null
// path <> only when sender is set. It is the one conversion from sdk
// addresses into envelope addresses.
func address(a sdk.Address, sender, utf8 bool) (envelope.Address, error) {
	path := "<" + a.String() + ">"
	addr, rest, err := envelope.ParsePath(path, sender, utf8)
	if err == nil && (rest != "" || addr.Local != a.Local || addr.Domain != a.Domain) {
		err = errors.New("not a plain local@domain")
	}
	if err != nil {
		return envelope.Address{}, fmt.Errorf("%w: address %q: %w", ErrBadEffect, path, err)
	}
	return addr, nil
}

// recipients converts a recipient list, keeping the first of the
// addresses that name one mailbox (envelope.Address.Mailbox).
func recipients(as []sdk.Address, utf8 bool) ([]envelope.Address, error) {
	if len(as) > MaxRecipients {
		return nil, fmt.Errorf("%w: %d recipients, at most %d", ErrBadEffect, len(as), MaxRecipients)
	}
	out := make([]envelope.Address, 0, len(as))
	seen := make(map[string]bool, len(as))
	for _, a := range as {
		addr, err := address(a, false, utf8)
		if err != nil {
			return nil, fmt.Errorf("recipient: %w", err)
		}
		if k := addr.Mailbox(); !seen[k] {
			seen[k] = true
			out = append(out, addr)
		}
	}
	return out, nil
}

// checkRoute checks a route: a transport name without spaces or control
// characters, and a next hop that is "" or host:port.
func checkRoute(r sdk.Route) error {
	bad := func(s string) bool {
		return strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c == 0x7f })
	}
	if bad(r.Transport) || bad(r.Via) {
		return fmt.Errorf("%w: route %+v: space or control character", ErrBadEffect, r)
	}
	if r.Via != "" {
		if host, port, err := net.SplitHostPort(r.Via); err != nil || host == "" || port == "" {
			return fmt.Errorf("%w: route via %q: not host:port", ErrBadEffect, r.Via)
		}
	}
	return nil
}

// notes returns a handler's notes with every key in its namespace: a key
// that does not start with "<name>/" gets that prefix, so a note tells
// which handler wrote it and no handler writes another's.
func notes(name string, in map[string]string) (map[string]string, error) {
	if len(in) > MaxNotes {
		return nil, fmt.Errorf("%w: %d notes, at most %d", ErrBadEffect, len(in), MaxNotes)
	}
	prefix := name + "/"
	out := make(map[string]string, len(in))
	for k, v := range in {
		if !strings.HasPrefix(k, prefix) {
			k = prefix + k
		}
		if len(k) > MaxNoteKey || len(v) > MaxNoteValue {
			return nil, fmt.Errorf("%w: note %.40q: key over %d bytes or value over %d", ErrBadEffect, k, MaxNoteKey, MaxNoteValue)
		}
		out[k] = v
	}
	return out, nil
}

// MergeNotes returns base with add on top, as a new map: base is not
// changed (a request may still hold it). It returns base itself when add
// is empty.
func MergeNotes(base, add map[string]string) map[string]string {
	if len(add) == 0 {
		return base
	}
	m := make(map[string]string, len(base)+len(add))
	maps.Copy(m, base)
	maps.Copy(m, add)
	return m
}

// merge adds the effects of a later handler of the same dispatch to dst:
// lists accumulate; recipients, sender, body, route and reply lines are
// the last handler's that gave them.
func (dst *Effects) merge(src Effects) {
	dst.AddHeaders = append(dst.AddHeaders, src.AddHeaders...)
	dst.RemoveHeaders = append(dst.RemoveHeaders, src.RemoveHeaders...)
	if src.Recipients != nil {
		dst.Recipients = src.Recipients
	}
	if src.Sender != nil {
		dst.Sender = src.Sender
	}
	if src.Body != nil {
		dst.Body = src.Body
	}
	dst.Notes = MergeNotes(dst.Notes, src.Notes)
	dst.Skip = append(dst.Skip, src.Skip...)
	if src.Route != nil {
		dst.Route = src.Route
	}
	if src.ReplyLines != nil {
		dst.ReplyLines = src.ReplyLines
	}
}
