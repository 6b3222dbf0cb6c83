package pluginhost

import (
	"fmt"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// request converts a hook request into the plugin's view. The message is
// read only at data and predelivery (the stages that have one): its
// header, and its body up to BodyLimit bytes.
func (p *Plugin) request(req *hook.Request) (*sdk.Request, error) {
	r := &sdk.Request{
		Stage:   req.Stage,
		Command: req.Command,
		Arg:     req.Arg,
		Notes:   req.Notes, // read-only on both sides; the wire copies it
	}
	if s := req.Session; s != nil {
		r.Session = &sdk.Session{
			ID:       s.ID,
			Listener: s.Listener,
			Port:     s.Port,
			HELO:     s.HELO,
			ESMTP:    s.ESMTP,
			TLS:      s.TLS,
			AuthUser: s.AuthUser,
		}
		if s.ClientIP.IsValid() {
			r.Session.ClientIP = s.ClientIP.Unmap().String()
		}
	}
	if env := req.Envelope; env != nil {
		t := txn(env)
		r.Txn = &t
	}
	if req.Rcpt != nil {
		rc := recipient(*req.Rcpt)
		r.Rcpt = &rc
	}
	if req.Message != nil && (req.Stage == sdk.StageData || req.Stage == sdk.StagePredelivery) {
		m, err := p.message(req.Message)
		if err != nil {
			return nil, err
		}
		m.Auth = req.Auth
		r.Message = m
	}
	return r, nil
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
