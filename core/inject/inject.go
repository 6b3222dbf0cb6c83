// Package inject owns the HTTP injection endpoint: POST /v1/messages takes
// a message as a JSON document (jsonmail.Document, the shape the webhook
// transport sends),
// authenticated by a bearer token, and submits it through an SMTP session
// served in-process (smtp.Server.ServeConn over a net.Pipe), so it meets
// exactly the hooks, relay rule, limits and spool that SMTP mail meets. It
// answers with the queue ID, or with the SMTP rejection as JSON.
package inject

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk/jsonmail"
)

// AuthUser is the identity injected sessions are authenticated as; hooks
// see it as the session's auth user.
const AuthUser = "api"

// Options configure a Handler.
type Options struct {
	Server   *smtp.Server  // serves the in-process sessions
	Token    string        // the bearer token every request must carry
	Hostname string        // for Message-IDs of composed messages
	MaxSize  int64         // largest request body in bytes; default 64 MiB
	Timeout  time.Duration // one submission; default 2m
	Log      *slog.Logger
	Now      func() time.Time
}

// Handler is the endpoint's http.Handler.
type Handler struct{ opt Options }

// New returns the endpoint's handler.
func New(opt Options) *Handler {
	if opt.MaxSize <= 0 {
		opt.MaxSize = 64 << 20
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Minute
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Handler{opt: opt}
}

// Accepted is the answer to a message that was queued.
type Accepted struct {
	ID       string      `json:"id"`
	Rejected []Rejection `json:"rejected,omitempty"` // recipients refused while others were accepted
}

// Rejection is an SMTP refusal as JSON.
type Rejection struct {
	Recipient string `json:"recipient,omitempty"`
	Code      int    `json:"code"`
	Enhanced  string `json:"enhanced,omitempty"`
	Error     string `json:"error"`
}

// Refused is the answer to a message that was not queued.
type Refused struct {
	Rejection
	Recipients []Rejection `json:"recipients,omitempty"` // per-recipient refusals
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" {
		writeJSON(w, http.StatusNotFound, Refused{Rejection: Rejection{Error: "not found"}})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, Refused{Rejection: Rejection{Error: "use POST"}})
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gateway"`)
		writeJSON(w, http.StatusUnauthorized, Refused{Rejection: Rejection{Error: "missing or wrong bearer token"}})
		return
	}
	var doc jsonmail.Document
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.opt.MaxSize))
	if err := dec.Decode(&doc); err != nil {
		writeJSON(w, http.StatusBadRequest, Refused{Rejection: Rejection{Error: "bad JSON document: " + err.Error()}})
		return
	}
	env, err := envelopeOf(&doc)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Refused{Rejection: Rejection{Error: err.Error()}})
		return
	}
	msg, err := Message(&doc, h.opt.Hostname, h.opt.Now())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Refused{Rejection: Rejection{Error: err.Error()}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opt.Timeout)
	defer cancel()
	res, err := Submit(ctx, h.opt.Server, Submission{
		Client: clientAddr(r), AuthUser: AuthUser, LocalName: "inject", Envelope: env, Message: bytes.NewReader(msg),
	}, h.opt.Log)
	status, body := answer(env, res, err)
	h.opt.Log.Info("inject: message", "from", env.Sender.String(), "rcpts", len(env.Recipients), "status", status, "id", res.ID)
	writeJSON(w, status, body)
}

// authorized checks the bearer token in constant time.
func (h *Handler) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && h.opt.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(h.opt.Token)) == 1
}

// Submission is one message for Submit.
type Submission struct {
	Client    netip.AddrPort // the session's client address
	AuthUser  string         // the identity the session is authenticated as
	LocalName string         // the client's EHLO name
	Envelope  *envelope.Envelope
	Message   io.Reader
}

// Submit talks SMTP to an in-process session of srv (over net.Pipe): the
// one way a part of the gateway submits a message so that it meets the
// hooks, relay rule, limits and spool that SMTP mail meets. Result and
// error are smtp.Client.Send's.
func Submit(ctx context.Context, srv *smtp.Server, sub Submission, log *slog.Logger) (smtp.Result, error) {
	ours, theirs := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(theirs, sub.Client, sub.AuthUser) }()
	defer func() { <-served }()
	c, err := smtp.NewClient(ctx, ours, smtp.ClientOptions{LocalName: sub.LocalName, Log: log})
	if err != nil {
		ours.Close()
		return smtp.Result{}, err
	}
	defer c.Close()
	if err := c.Hello(ctx); err != nil {
		return smtp.Result{}, err
	}
	res, err := c.Send(ctx, sub.Envelope, sub.Message)
	if err == nil {
		c.Quit(ctx)
	}
	return res, err
}

// answer maps the SMTP outcome to an HTTP status and body: 202 queued,
// 422 refused for good (5xx), 503 refused for now (4xx), 502 otherwise.
func answer(env *envelope.Envelope, res smtp.Result, err error) (int, any) {
	var rej []Rejection
	for i, r := range res.Rcpts {
		if r.Code/100 != 2 && i < len(env.Recipients) {
			rej = append(rej, rejection(env.Recipients[i].Address.String(), r))
		}
	}
	if err == nil && res.Data.Code/100 == 2 {
		return http.StatusAccepted, Accepted{ID: res.ID, Rejected: rej}
	}
	var reply smtp.Reply
	switch {
	case errors.As(err, &reply): // MAIL or DATA refused
	case err != nil:
		return http.StatusBadGateway, Refused{Rejection: Rejection{Error: err.Error()}}
	case len(rej) > 0 && len(rej) == len(env.Recipients):
		// Every recipient refused: the first refusal stands for all (the
		// pipelined DATA only got "503 No valid recipients").
		reply = res.Rcpts[0]
	default:
		reply = res.Data
	}
	status := http.StatusUnprocessableEntity
	if reply.Temporary() {
		status = http.StatusServiceUnavailable
	}
	return status, Refused{Rejection: rejection("", reply), Recipients: rej}
}

func rejection(rcpt string, r smtp.Reply) Rejection {
	out := Rejection{Recipient: rcpt, Code: r.Code, Error: strings.Join(r.Lines, " ")}
	if !r.Enhanced.IsZero() {
		out.Enhanced = r.Enhanced.String()
	}
	return out
}

// envelopeOf checks and converts the document's envelope.
func envelopeOf(d *jsonmail.Document) (*envelope.Envelope, error) {
	env := &envelope.Envelope{}
	if d.Envelope.From != "" {
		a, err := envelope.ParseAddress(d.Envelope.From)
		if err != nil {
			return nil, fmt.Errorf("envelope.from: %w", err)
		}
		env.Sender = a
	}
	if len(d.Envelope.To) == 0 {
		return nil, errors.New("envelope.to: at least one recipient is needed")
	}
	for _, to := range d.Envelope.To {
		a, err := envelope.ParseAddress(to)
		if err != nil {
			return nil, fmt.Errorf("envelope.to: %w", err)
		}
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a})
	}
	return env, nil
}

// clientAddr is the HTTP client's address, for the session's client IP.
func clientAddr(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPortFrom(netip.IPv6Loopback(), 0)
	}
	return ap
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
