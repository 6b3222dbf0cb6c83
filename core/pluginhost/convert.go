package pluginhost

import (
	"fmt"
	"net/netip"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// requestParts holds a request and the parts it points to, so that a
// call takes them at once, from Plugin.parts: they are the call's only
// until it returns (the call channel and gRPC both encode the request
// before they wait), and go back then.
type requestParts struct {
	r  sdk.Request
	s  sdk.Session
	t  sdk.Txn
	rc sdk.Recipient
}

// request converts a hook request into the plugin's view. The message is
// read only at data and predelivery (the stages that have one): its
// header, and its body up to BodyLimit bytes.
func (p *Plugin) request(req *hook.Request) (*requestParts, error) {
	parts, _ := p.parts.Get().(*requestParts)
	if parts == nil {
		parts = new(requestParts)
	}
	r := &parts.r
	*r = sdk.Request{
		Stage:   req.Stage,
		Command: req.Command,
		Arg:     req.Arg,
		Notes:   req.Notes, // read-only on both sides; the wire copies it
	}
	if s := req.Session; s != nil {
		parts.s = sdk.Session{
			ID:       s.ID,
			Listener: s.Listener,
			Port:     s.Port,
			HELO:     s.HELO,
			ESMTP:    s.ESMTP,
			TLS:      s.TLS,
			AuthUser: s.AuthUser,
		}
		parts.s.ClientIP = clientIP(s.ClientIP, req.Envelope)
		r.Session = &parts.s
	}
	if env := req.Envelope; env != nil {
		parts.t = txn(env)
		r.Txn = &parts.t
	}
	if req.Rcpt != nil {
		parts.rc = recipient(*req.Rcpt)
		r.Rcpt = &parts.rc
	}
	if req.Message != nil && (req.Stage == sdk.StageData || req.Stage == sdk.StagePredelivery) {
		m, err := p.message(req.Message)
		if err != nil {
			p.release(parts)
			return nil, err
		}
		m.Auth = req.Auth
		r.Message = m
	}
	return parts, nil
}

// release gives a call's request back for another call.
func (p *Plugin) release(parts *requestParts) {
	*parts = requestParts{} // nothing of this call kept
	p.parts.Put(parts)
}

// clientIP is ip as the plugin sees it: unmapped, as text, "" for none.
// The envelope, once there is one, has the text already.
func clientIP(ip netip.Addr, env *envelope.Envelope) string {
	if !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap()
	if env != nil && env.ClientIP != "" {
		if got, err := netip.ParseAddr(env.ClientIP); err == nil && got == ip {
			return env.ClientIP
		}
	}
	return ip.String()
}

// message reads the header and up to BodyLimit bytes of the body.
func (p *Plugin) message(msg hook.Message) (*sdk.Message, error) {
	h, err := msg.Header()
	if err != nil {
		return nil, fmt.Errorf("reading the message header: %w", err)
	}
	limit := p.opt.BodyLimit
	body, err := msg.Body(int(limit + 1))
	if err != nil {
		return nil, fmt.Errorf("reading the message body: %w", err)
	}
	m := &sdk.Message{Header: h, Body: body, Size: msg.Size()}
	if int64(len(body)) > limit {
		m.Body, m.Truncated = body[:limit], true
	}
	return m, nil
}

func txn(env *envelope.Envelope) sdk.Txn {
	t := sdk.Txn{
		Sender:   address(env.Sender),
		Size:     env.Size,
		Body:     string(env.Body),
		SMTPUTF8: env.SMTPUTF8,
		Ret:      string(env.Ret),
		EnvID:    env.EnvID,
		Received: env.Received,
	}
	if len(env.Recipients) > 0 {
		t.Recipients = make([]sdk.Recipient, len(env.Recipients))
		for i, rc := range env.Recipients {
			t.Recipients[i] = recipient(rc)
		}
	}
	return t
}

func address(a envelope.Address) sdk.Address { return sdk.Address{Local: a.Local, Domain: a.Domain} }

func recipient(r envelope.Recipient) sdk.Recipient {
	return sdk.Recipient{Address: address(r.Address), Notify: r.Notify.Names(), ORCPT: r.ORCPT}
}
