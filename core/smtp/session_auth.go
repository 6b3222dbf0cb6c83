package smtp

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// authOffered reports whether EHLO lists AUTH: an Authenticator is set, the
// session is under TLS (or the listener allows AUTH in the clear), and the
// client has not authenticated yet.
func (s *session) authOffered() bool {
	return s.srv.opt.Auth != nil && (s.tls || s.srv.opt.Listener.AuthInsecure) && s.authUser == ""
}

// cmdAuth answers AUTH PLAIN and AUTH LOGIN (RFC 4954). Credentials are
// never logged.
func (s *session) cmdAuth(ctx context.Context, arg string) {
	switch {
	case s.srv.opt.Auth == nil:
		s.reply(R(502, enh551, "AUTH not available"))
		return
	case !s.tls && !s.srv.opt.Listener.AuthInsecure:
		s.reply(R(503, enh551, "Issue STARTTLS first"))
		return
	case !s.esmtp:
		s.reply(R(503, enh551, "Send EHLO first"))
		return
	case s.authUser != "":
		s.reply(R(503, enh551, "Already authenticated"))
		return
	case s.tx != nil:
		s.reply(R(503, enh551, "AUTH not allowed during a mail transaction"))
		return
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var user, pass string
	var ok bool
	switch mech {
	case "PLAIN":
		user, pass, ok = s.saslPlain(initial, hasInitial)
	case "LOGIN":
		user, pass, ok = s.saslLogin(initial, hasInitial)
	default:
		s.reply(R(504, enh554, "Unrecognized authentication type"))
		return
	}
	if !ok {
		return // answered
	}
	s.authenticate(ctx, mech, user, pass)
}

// errAuthAnswered means the exchange failed and the client got its reply.
var errAuthAnswered = errors.New("smtp: auth exchange failed")

// saslPlain runs PLAIN (RFC 4616): one response "authzid\0authcid\0passwd".
func (s *session) saslPlain(initial string, hasInitial bool) (user, pass string, ok bool) {
	var resp []byte
	var err error
	if hasInitial {
		resp, err = s.decodeResponse(initial)
	} else {
		resp, err = s.challenge("")
	}
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(string(resp), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		s.reply(R(501, enh552, "Cannot decode response"))
		return "", "", false
	}
	if parts[0] != "" && parts[0] != parts[1] {
		// Acting for another identity is not supported.
		s.reply(R(535, enh578, "Authentication credentials invalid"))
		return "", "", false
	}
	return parts[1], parts[2], true
}

// saslLogin runs LOGIN: user name, then password, each base64 after a
// "Username:" / "Password:" challenge; the user name may come with AUTH.
func (s *session) saslLogin(initial string, hasInitial bool) (user, pass string, ok bool) {
	var u, p []byte
	var err error
	if hasInitial {
		u, err = s.decodeResponse(initial)
	} else {
		u, err = s.challenge("VXNlcm5hbWU6") // Username:
	}
	if err != nil {
		return "", "", false
	}
	if p, err = s.challenge("UGFzc3dvcmQ6"); err != nil { // Password:
		return "", "", false
	}
	if len(u) == 0 {
		s.reply(R(535, enh578, "Authentication credentials invalid"))
		return "", "", false
	}
	return string(u), string(p), true
}

// challenge sends a 334 and reads the client's base64 response.
func (s *session) challenge(text string) ([]byte, error) {
	s.reply(Reply{Code: 334, Lines: []string{text}})
	s.setReadDeadline(nowPlus(s.lim.cmdTimeout))
	line, err := s.readLine()
	switch {
	case err == nil:
	case errors.Is(err, errLineTooLong):
		s.reply(R(500, enh556, "Authentication exchange line is too long"))
		return nil, errAuthAnswered
	case errors.Is(err, errBareLF):
		s.reply(R(500, enh552, "Bare LF not allowed"))
		return nil, errAuthAnswered
	default:
		s.connFailed(err)
		return nil, err
	}
	return s.decodeResponse(string(line))
}

// decodeResponse decodes one SASL response: base64, "=" for empty, "*"
// to cancel.
func (s *session) decodeResponse(r string) ([]byte, error) {
	switch r {
	case "*":
		s.reply(R(501, enh500, "Authentication cancelled"))
		return nil, errAuthAnswered
	case "=":
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(r)
	if err != nil {
		s.reply(R(501, enh552, "Cannot decode response"))
		return nil, errAuthAnswered
	}
	return b, nil
}

// authenticate decides the credentials: the auth hook first (Accept is a
// success, Reject or Defer a failure), then Options.Auth on Continue. The
// hook sees the claimed identity as Session.AuthUser and the mechanism as
// Arg; it never sees the password.
func (s *session) authenticate(ctx context.Context, mech, user, pass string) {
	hs := s.hookSession()
	hs.AuthUser = user
	res := s.dispatch(ctx, &hook.Request{Stage: sdk.StageAuth, Session: &hs, Arg: mech})
	switch res.Decision.Verdict {
	case sdk.Accept:
	case sdk.Reject, sdk.Defer:
		s.log.Info("smtp: authentication refused by hook", "mech", mech, "user", user)
		s.replyDecision(sdk.StageAuth, res.Decision)
		return
	case sdk.Drop:
		s.log.Info("smtp: authentication dropped by hook", "mech", mech, "user", user)
		s.reply(R(535, enh578, "Authentication credentials invalid"))
		return
	default:
		ok, err := s.srv.opt.Auth.Authenticate(ctx, user, pass)
		if err != nil {
			s.log.Warn("smtp: authenticator failed", "mech", mech, "user", user, "err", err)
			s.reply(R(454, enh470, "Temporary authentication failure"))
			return
		}
		if !ok {
			s.log.Info("smtp: authentication failed", "mech", mech, "user", user)
			s.reply(R(535, enh578, "Authentication credentials invalid"))
			return
		}
	}
	s.authUser = user
	s.log.Info("smtp: authenticated", "mech", mech, "user", user)
	s.reply(R(235, enh270, "Authentication successful"))
}
