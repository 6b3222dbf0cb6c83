package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/plugins/internal/address"
	"github.com/mailgate/gateway/plugins/internal/expn"
	"github.com/mailgate/gateway/sdk"
)

const (
	name    = "lists"
	version = "0.1.0"

	// noteList is the note that says which list a transaction is for: the
	// rcpt hook writes it (the host files it as "plugin.<name>/list") and
	// the transaction ends it.
	noteList = "list"
)

// removedFields are dropped from a list message before the list's own
// fields are added, so that a message from another list does not carry
// that list's fields too.
var removedFields = []string{
	"List-Id", "List-Post", "List-Owner", "List-Unsubscribe", "List-Unsubscribe-Post", "Precedence",
}

// Lists expands mailing lists: a list address is replaced by the list's
// members at rcpt (when the sender may post), and the message gets the
// list's header fields and envelope sender at data.
type Lists struct {
	now func() time.Time

	lists atomic.Pointer[set]

	mu        sync.Mutex // guards the fields below; held while reloading
	cfg       config
	host      sdk.Host
	lastCheck time.Time
}

// New returns an unconfigured Lists: no lists until Configure.
func New() *Lists {
	p := &Lists{now: time.Now}
	p.lists.Store(&set{byAddr: map[string]*list{}})
	return p
}

func (p *Lists) Info() sdk.Info {
	return sdk.Info{Name: name, Version: version, Schema: schema()}
}

// Configure parses the config block and reads the lists.
func (p *Lists) Configure(ctx context.Context, m map[string]any, host sdk.Host) error {
	c, err := parseConfig(m)
	if err != nil {
		return err
	}
	s, field, err := load(c)
	if err != nil {
		return sdk.ConfigErrors{{Field: field, Message: err.Error()}}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.host, p.lastCheck = c, host, p.now()
	p.lists.Store(s)
	return nil
}

// Rcpt replaces a list address by the list's members, when the sender may
// post to it, and accepts. A list goes in a transaction of its own: a list
// address after other recipients, or another recipient after a list
// address, gets 452 4.5.3 (the client sends it again in a new
// transaction). Other recipients continue.
func (p *Lists) Rcpt(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	if r.Rcpt == nil || r.Txn == nil {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	p.maybeReload(ctx)
	addr := r.Rcpt.Address.String()
	l := p.lists.Load().byAddr[strings.ToLower(addr)]
	if l == nil {
		return p.afterList(r, addr), sdk.Effects{}, nil
	}
	sender := r.Txn.Sender.String()
	owner := sender != "" && strings.EqualFold(sender, l.owner)
	switch {
	case l.posters == PostersModerated && !owner:
		return sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "List is moderated").
			WithReason(fmt.Sprintf("lists: <%s> is not the owner of moderated list %s", sender, l.addr)), sdk.Effects{}, nil
	case l.posters == PostersMembers && !owner && !l.isMember[strings.ToLower(sender)]:
		return sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "Not allowed to post to this list").
			WithReason(fmt.Sprintf("lists: <%s> is not a member of %s", sender, l.addr)), sdk.Effects{}, nil
	}
	if len(r.Txn.Recipients) > 0 {
		return sdk.DeferDecision(452, sdk.EnhancedCode{4, 5, 3}, "Send to the list in a separate transaction").
			WithReason("lists: list " + l.addr + " after other recipients"), sdk.Effects{}, nil
	}
	if len(l.members) == 0 {
		return sdk.DropDecision().WithReason("lists: list " + l.addr + " has no members"), sdk.Effects{}, nil
	}
	eff := sdk.Effects{
		Recipients: make([]sdk.Address, len(l.members)),
		Notes:      map[string]string{noteList: l.addr},
	}
	for i, m := range l.members {
		eff.Recipients[i] = address.Split(m)
	}
	d := sdk.AcceptDecision().WithReason(fmt.Sprintf("lists: %s expands to %d members", l.addr, len(l.members)))
	return d, eff, nil
}

// afterList answers a recipient that is no list, rcpt: 452 4.5.3 in a
// list's transaction, else continue. It runs at rcpt and, for RCPT, at
// the command stage too, before any rcpt hook: a hook earlier in the
// pipeline that accepts the recipient (an alias) ends the rcpt stage
// before this plugin sees it.
func (p *Lists) afterList(r *sdk.Request, rcpt string) sdk.Decision {
	l := p.listOf(r)
	if l == nil {
		return sdk.ContinueDecision()
	}
	return sdk.DeferDecision(452, sdk.EnhancedCode{4, 5, 3}, "Send to this recipient in a separate transaction").
		WithReason("lists: " + rcpt + " after list " + l.addr)
}

// Data gives the message of a list transaction the list's header fields
// (RFC 2369, RFC 2919) and its envelope sender becomes the list's bounce
// address. It continues (so later data hooks still run), with effects.
// A message that already carries the list's List-Id came back round a
// loop: 554 5.4.6.
func (p *Lists) Data(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	l := p.listOf(r)
	if l == nil {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	listID := "<" + l.id + ">"
	if r.Message != nil {
		for _, h := range r.Message.Header {
			if strings.EqualFold(h.Name, "List-Id") && strings.Contains(strings.ToLower(h.Value), strings.ToLower(listID)) {
				return sdk.RejectDecision(554, sdk.EnhancedCode{5, 4, 6}, "List loop detected").
					WithReason("lists: the message already has List-Id " + listID), sdk.Effects{}, nil
			}
		}
	}
	if l.name != "" {
		listID = l.name + " " + listID
	}
	eff := sdk.Effects{
		RemoveHeaders: slices.Clone(removedFields),
		AddHeaders: []sdk.HeaderField{
			{Name: "List-Id", Value: listID},
			{Name: "List-Post", Value: "<mailto:" + l.addr + ">"},
		},
	}
	if l.owner != "" {
		eff.AddHeaders = append(eff.AddHeaders, sdk.HeaderField{Name: "List-Owner", Value: "<mailto:" + l.owner + ">"})
	}
	if l.unsubscribe != "" {
		eff.AddHeaders = append(eff.AddHeaders, sdk.HeaderField{Name: "List-Unsubscribe", Value: "<" + l.unsubscribe + ">"})
	}
	eff.AddHeaders = append(eff.AddHeaders, sdk.HeaderField{Name: "Precedence", Value: "list"})
	bounce := address.Split(l.bounce)
	eff.Sender = &bounce
	return sdk.ContinueDecision().WithReason("lists: message to list " + l.addr), eff, nil
}

// listOf finds the list whose transaction r's is: the list of the note
// the rcpt hook wrote, while the recipients are exactly its members
// (sending to a list's members one by one is no list post). The note's
// key is "<hook>/list", the hook being this plugin under the name the
// gateway's config gives it.
func (p *Lists) listOf(r *sdk.Request) *list {
	if r.Txn == nil || len(r.Txn.Recipients) == 0 {
		return nil
	}
	s := p.lists.Load()
	for k, v := range r.Notes {
		if !strings.HasSuffix(k, "/"+noteList) {
			continue
		}
		if l := s.byAddr[strings.ToLower(v)]; l != nil && l.is(r.Txn.Recipients) {
			return l
		}
	}
	return nil
}

// is reports whether rcpts are exactly the members of l.
func (l *list) is(rcpts []sdk.Recipient) bool {
	seen := map[string]bool{}
	for _, rc := range rcpts {
		k := strings.ToLower(rc.Address.String())
		if !l.isMember[k] {
			return false
		}
		seen[k] = true
	}
	return len(seen) == len(l.isMember)
}

// Command keeps the one-list rule for RCPT (see afterList), and answers
// VRFY of a list with its address and EXPN of one with its members, to
// the clients the expn settings trust. A name without @ is taken to be of
// the domain setting.
func (p *Lists) Command(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	verb := strings.ToUpper(r.Command)
	switch verb {
	case "RCPT":
		return p.afterList(r, "RCPT "+r.Arg), sdk.Effects{}, nil
	case "VRFY", "EXPN":
	default:
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	p.maybeReload(ctx)
	p.mu.Lock()
	policy, domain := p.cfg.expn, p.cfg.domain
	p.mu.Unlock()
	if !policy.Allows(r.Session) {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	l := p.lists.Load().byAddr[strings.ToLower(expn.Address(r.Arg, domain))]
	if l == nil || len(l.members) == 0 {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	var eff sdk.Effects
	if verb == "VRFY" {
		line := "<" + l.addr + ">"
		if l.name != "" {
			line = l.name + " " + line
		}
		eff.ReplyLines = []string{line}
	} else {
		for _, m := range l.members {
			eff.ReplyLines = append(eff.ReplyLines, "<"+m+">")
		}
	}
	return sdk.AcceptDecision().WithReason("lists: " + verb + " " + l.addr), eff, nil
}

// maybeReload re-reads the lists when reload_interval has passed since the
// last check and lists_dir or one of its files changed. Lists that no
// longer read stay as they were, and the failure is logged.
func (p *Lists) maybeReload(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.reload <= 0 || p.cfg.dir == "" || p.now().Sub(p.lastCheck) < p.cfg.reload {
		return
	}
	p.lastCheck = p.now()
	if !changed(p.lists.Load().files) {
		return
	}
	s, _, err := load(p.cfg)
	if err != nil {
		p.log(ctx, "error", "lists: reload failed, keeping the lists read before", map[string]string{"err": err.Error()})
		return
	}
	p.lists.Store(s)
	p.log(ctx, "info", "lists: lists reloaded", map[string]string{"lists": fmt.Sprint(len(s.byAddr))})
}

// log writes through the host; p.mu is held.
func (p *Lists) log(ctx context.Context, level, msg string, fields map[string]string) {
	if p.host != nil {
		p.host.Log(ctx, level, msg, fields)
	}
}

var (
	_ sdk.Describer   = (*Lists)(nil)
	_ sdk.Configurer  = (*Lists)(nil)
	_ sdk.RcptHook    = (*Lists)(nil)
	_ sdk.DataHook    = (*Lists)(nil)
	_ sdk.CommandHook = (*Lists)(nil)
)
