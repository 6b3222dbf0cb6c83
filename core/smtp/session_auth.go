package smtp

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

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
	if s.srv.opt.AuthGuard.Locked(s.ip) {
		s.authLockedOut(ctx, mech, "")
		return
	}
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

// authenticate decides the credentials, as one attempt of the client's
// network under the AuthGuard: a locked-out client is refused without a
// check; a failure counts and its reply may wait; a check that could not
// decide (454) does not count.
func (s *session) authenticate(ctx context.Context, mech, user, pass string) {
	try, err := s.srv.opt.AuthGuard.Begin(s.ip)
	if err != nil {
		s.authLockedOut(ctx, mech, user)
		return
	}
	defer try.Abandon() // if a panic ends the check: nothing else ended it
	d := s.checkCredentials(ctx, mech, user, pass)
	switch d.Verdict {
	case sdk.Accept:
		try.Succeed()
		s.authUser = user
		s.log.Info("smtp: authenticated", "mech", mech, "user", user)
		s.reply(R(235, enh270, "Authentication successful"))
		return
	case sdk.Reject:
		delay := try.Fail()
		s.authFailure(d.Reason, mech, user)
		pause(ctx, delay)
	default:
		try.Abandon()
		s.log.Warn("smtp: authentication undecided", "reason", d.Reason, "mech", mech, "user", user)
	}
	s.replyDecision(sdk.StageAuth, d)
}

// checkCredentials decides the credentials: the auth hook first (Accept is
// a success, Reject or Drop a failure, Defer undecided), then
// Options.Auth on Continue, on a worker of the AuthGuard's pool. The hook
// sees the claimed identity as Session.AuthUser and the mechanism as Arg;
// it never sees the password. The result is Accept, Reject (a failure) or
// Defer (undecided), with a Reason for the log.
func (s *session) checkCredentials(ctx context.Context, mech, user, pass string) sdk.Decision {
	invalid := sdk.RejectDecision(535, enh578, "Authentication credentials invalid")
	hs := s.hookSession()
	hs.AuthUser = user
	res := s.dispatch(ctx, hook.Request{Stage: sdk.StageAuth, Session: &hs, Arg: mech})
	d := res.Decision
	switch d.Verdict {
	case sdk.Accept:
		return d
	case sdk.Reject, sdk.Defer:
		d.Reason = strings.TrimSuffix("refused by hook: "+d.Reason, ": ")
		return d
	case sdk.Drop:
		invalid.Reason = "dropped by hook"
		return invalid
	}
	var ok bool
	var err error
	if busy := s.srv.opt.AuthGuard.Run(ctx, func() { ok, err = s.srv.opt.Auth.Authenticate(ctx, user, pass) }); busy != nil {
		err = busy
	}
	switch {
	case err != nil:
		d = sdk.DeferDecision(454, enh470, "Temporary authentication failure")
		d.Reason = err.Error()
	case ok:
		d = sdk.AcceptDecision()
	default:
		d = invalid
		d.Reason = "invalid credentials"
	}
	return d
}

// authLockedOut refuses AUTH from a client the AuthGuard locked out, with
// no password checked: 454, a temporary failure that a client should not
// take as a reason to ask the user for another password (RFC 4954 §6).
// The reply waits the guard's delay, as a failure's does: a guesser that
// reconnects at once gets few refusals a second.
func (s *session) authLockedOut(ctx context.Context, mech, user string) {
	s.authFailure("locked out", mech, user)
	pause(ctx, s.srv.opt.AuthGuard.Delay())
	s.reply(R(454, enh470, "Too many authentication failures, try again later"))
}

// authFailure logs a failed or refused AUTH in the one format fail2ban
// matches (README): the message itself names the client's address, so
// that it comes before anything the client sent (the user name).
func (s *session) authFailure(reason, mech, user string) {
	s.log.Warn("smtp: auth failure from "+s.ip.String(), "reason", reason, "mech", mech, "user", user)
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
