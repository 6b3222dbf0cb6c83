package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/queue"
)

// defaultLimit is how many messages GET /v1/queue returns without ?limit.
const defaultLimit = 1000

// Message is a queued message as the API shows it. GET /v1/queue lists
// them without Envelope; GET /v1/queue/{id} adds it, and the recipients'
// Updated, Notify and ORCPT.
type Message struct {
	// Node is the cluster node whose copy this is, in a listing of every
	// node's copies (GET /v1/queue?cluster=1); "" otherwise.
	Node       string      `json:"node,omitempty"`
	ID         string      `json:"id"`
	Sender     string      `json:"sender"` // "" for the null sender <>
	Recipients []Recipient `json:"recipients"`
	Created    time.Time   `json:"created"` // arrival, UTC
	Size       int64       `json:"size"`    // bytes, trace header included
	Attempts   int         `json:"attempts"`
	// NextAttempt is absent when the message is due now.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Held        bool      `json:"held"`
	Envelope    *Envelope `json:"envelope,omitempty"`
}

// Recipient is one recipient of a Message and its delivery state.
type Recipient struct {
	Address   string    `json:"address"`
	Status    string    `json:"status"`               // pending, delivered, deferred or failed
	LastReply string    `json:"last_reply"`           // last SMTP reply or error; "not tried: …" for mail parked as it came (its domain down)
	TLSPolicy string    `json:"tls_policy,omitempty"` // TLS level of the last SMTP attempt: dane, mta-sts, verify, encrypt, opportunistic, none
	Attempts  int       `json:"attempts"`
	Updated   time.Time `json:"updated,omitzero"`
	Held      string    `json:"held,omitempty"`   // what holds an undelivered recipient's domain: "hold_domains bk.test", "operator hold *.bk.test"
	Notify    []string  `json:"notify,omitempty"` // DSN NOTIFY=: NEVER, or SUCCESS, FAILURE, DELAY
	ORCPT     string    `json:"orcpt,omitempty"`  // DSN ORCPT=
}

// Envelope holds the MAIL parameters and client facts of a Message.
type Envelope struct {
	Ret          string    `json:"ret,omitempty"`           // DSN RET=: FULL or HDRS
	EnvID        string    `json:"envid,omitempty"`         // DSN ENVID= (xtext)
	Body         string    `json:"body,omitempty"`          // BODY=
	SMTPUTF8     bool      `json:"smtputf8"`                // SMTPUTF8 given
	DeclaredSize int64     `json:"declared_size,omitempty"` // SIZE=
	Auth         string    `json:"auth,omitempty"`          // AUTH= of MAIL
	ClientIP     string    `json:"client_ip"`
	ClientHELO   string    `json:"client_helo"`
	AuthUser     string    `json:"auth_user,omitempty"`
	TLS          bool      `json:"tls"`
	Received     time.Time `json:"received,omitzero"` // end of data, UTC
}

// Result answers an operation on one message.
type Result struct {
	ID     string `json:"id"`
	Action string `json:"action"` // retry, hold, release, bounce or remove
}

// Count answers POST /v1/queue/retry: how many messages were made due.
type Count struct {
	Count int `json:"count"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

func (a *Admin) routes() http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{a},
		ErrorHandling: promhttp.ContinueOnError,
	})
	// Methods are checked by methods, not by the mux, so that a wrong
	// method gets a JSON 405 like every other error.
	mux.Handle("/", methods{}) // anything else: 404
	mux.Handle("/healthz", methods{http.MethodGet: a.healthz})
	mux.Handle("/metrics", methods{http.MethodGet: metrics.ServeHTTP})
	mux.Handle("/v1/cluster", methods{http.MethodGet: a.cluster})
	mux.Handle("/v1/queue", methods{http.MethodGet: a.list})
	mux.Handle("/v1/queue/retry", methods{http.MethodPost: a.retryMany})
	mux.Handle("/v1/queue/{id}", methods{http.MethodGet: a.show, http.MethodDelete: a.remove})
	mux.Handle("/v1/queue/{id}/{op}", methods{http.MethodPost: a.operate})
	mux.Handle("/v1/reload", methods{http.MethodPost: a.reload})
	mux.Handle("/v1/domains", methods{http.MethodGet: a.heldDomains})
	mux.Handle("/v1/domains/{domain}/{op}", methods{http.MethodPost: a.domainOp})

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return loopbackHost(cop.Handler(mux))
}

// methods routes by request method and answers 405 for the others (and
// 404 when empty). HEAD is served as GET.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(m) == 0 {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	h, ok := m[r.Method]
	if !ok && r.Method == http.MethodHead {
		h, ok = m[http.MethodGet]
	}
	if !ok {
		allow := make([]string, 0, len(m))
		for meth := range m {
			allow = append(allow, meth)
		}
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	h(w, r)
}

// loopbackHost refuses requests whose Host is neither localhost nor a
// loopback IP: a web page whose name was rebound to 127.0.0.1 must not read
// the queue.
func loopbackHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackName(r.Host) {
			writeError(w, http.StatusForbidden, "host "+strconv.Quote(r.Host)+" refused: use a loopback address")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func loopbackName(hostport string) bool {
	if hostport == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// healthz answers 200 {"status":"ok"}, or 503 with the reason while a
// cluster node refuses new mail, cut off from NATS or with JetStream not
// taking its writes, so that a load balancer sends it elsewhere.
func (a *Admin) healthz(w http.ResponseWriter, r *http.Request) {
	if c := a.opt.Cluster; c != nil {
		reason := ""
		switch st := c.ClusterStats(); {
		case !st.Connected:
			reason = "not connected to NATS: new mail is answered 451 4.3.0 until it is"
		case st.WriteError != "":
			reason = "JetStream does not take writes (" + st.WriteError + "): new mail is answered 451 4.3.0 until it does"
		}
		if reason != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": reason})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *Admin) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer, not "+strconv.Quote(v))
			return
		}
		limit = n
	}
	domain := foldDomain(q.Get("domain"))
	if q.Has("domain") && domain == "" {
		writeError(w, http.StatusBadRequest, "domain must not be empty")
		return
	}
	out := []Message{}
	add := func(node string, m *queue.Message) bool {
		if domain != "" && !hasDomain(m, domain) {
			return true
		}
		lm := a.markHeld(listed(m), m)
		lm.Node = node
		out = append(out, lm)
		return len(out) < limit
	}
	var err error
	if q.Has("cluster") {
		if a.opt.Cluster == nil {
			writeError(w, http.StatusNotFound, "this gateway has no cluster block")
			return
		}
		err = a.opt.Cluster.ClusterQueue(r.Context(), add)
	} else {
		err = a.opt.Queue.List(func(m *queue.Message) bool { return add("", m) })
	}
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Admin) show(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m, err := a.opt.Queue.Get(id)
	if err != nil {
		a.fail(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, a.markHeld(detailed(m), m))
}

func (a *Admin) remove(w http.ResponseWriter, r *http.Request) {
	a.apply(w, r, r.PathValue("id"), "remove")
}

func (a *Admin) operate(w http.ResponseWriter, r *http.Request) {
	switch op := r.PathValue("op"); op {
	case "retry", "hold", "release", "bounce":
		a.apply(w, r, r.PathValue("id"), op)
	default:
		writeError(w, http.StatusNotFound, "not found")
	}
}

// apply runs the engine operation op on message id.
func (a *Admin) apply(w http.ResponseWriter, r *http.Request, id, op string) {
	e := a.opt.Engine
	if e == nil {
		writeError(w, http.StatusServiceUnavailable, "no delivery engine")
		return
	}
	ctx := r.Context()
	fn := map[string]func(context.Context, string) error{
		"retry":   e.Retry,
		"hold":    e.Hold,
		"release": e.Release,
		"bounce":  e.Bounce,
		"remove":  e.Remove,
	}[op]
	if err := fn(ctx, id); err != nil {
		a.fail(w, r, id, err)
		return
	}
	a.log.Info("admin: "+op, "id", id, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, Result{ID: id, Action: op})
}

func (a *Admin) retryMany(w http.ResponseWriter, r *http.Request) {
	e := a.opt.Engine
	if e == nil {
		writeError(w, http.StatusServiceUnavailable, "no delivery engine")
		return
	}
	q := r.URL.Query()
	all := false
	if v := q.Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "all must be 1 or 0, not "+strconv.Quote(v))
			return
		}
		all = b
	}
	domain := foldDomain(q.Get("domain"))
	var (
		n   int
		err error
	)
	switch {
	case all && q.Has("domain"):
		writeError(w, http.StatusBadRequest, "give domain or all=1, not both")
		return
	case all:
		n, err = e.RetryAll(r.Context())
	case domain != "":
		n, err = e.RetryDomain(r.Context(), domain)
	default:
		writeError(w, http.StatusBadRequest, "give domain=D or all=1")
		return
	}
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	a.log.Info("admin: retry", "domain", domain, "all", all, "count", n, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, Count{Count: n})
}

func (a *Admin) reload(w http.ResponseWriter, r *http.Request) {
	if a.opt.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload is not supported")
		return
	}
	if err := a.opt.Reload(r.Context()); err != nil {
		a.log.Error("admin: reload failed", "err", err, "remote", r.RemoteAddr)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.log.Info("admin: reloaded", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}

// fail answers err: 404 for an unknown message, 409 for a busy one, 503 if
// the request was cancelled, 500 otherwise.
func (a *Admin) fail(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("message %s not found", id))
	case errors.Is(err, delivery.ErrNotHeld):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, delivery.ErrBadDomain):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, delivery.ErrBusy):
		writeError(w, http.StatusConflict, fmt.Sprintf("message %s is being delivered; try again when the attempt is over", id))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, queue.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		a.log.Error("admin: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(Error{Error: "encoding the answer: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
}

func foldDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// hasDomain reports whether m has a recipient in domain (folded).
func hasDomain(m *queue.Message, domain string) bool {
	for _, rc := range m.Envelope.Recipients {
		if rc.Address.DomainFold() == domain {
			return true
		}
	}
	return false
}

// listed is m as GET /v1/queue shows it.
func listed(m *queue.Message) Message {
	out := Message{
		ID:          m.ID,
		Sender:      m.Envelope.Sender.String(),
		Recipients:  make([]Recipient, len(m.Envelope.Recipients)),
		Created:     m.Created.UTC(),
		Size:        m.Size,
		Attempts:    m.Attempts,
		NextAttempt: utc(m.NextAttempt),
		Held:        m.Held,
	}
	for i, rc := range m.Envelope.Recipients {
		out.Recipients[i] = Recipient{Address: rc.Address.String(), Status: queue.Pending.String()}
		if i < len(m.Recipients) {
			st := m.Recipients[i]
			out.Recipients[i].Status = st.Status.String()
			out.Recipients[i].LastReply = st.LastReply
			out.Recipients[i].TLSPolicy = st.TLSPolicy
			out.Recipients[i].Attempts = st.Attempts
		}
	}
	return out
}

// detailed is m as GET /v1/queue/{id} shows it.
func detailed(m *queue.Message) Message {
	out := listed(m)
	e := &m.Envelope
	for i, rc := range e.Recipients {
		out.Recipients[i].Notify = rc.Notify.Names()
		out.Recipients[i].ORCPT = rc.ORCPT
		if i < len(m.Recipients) {
			out.Recipients[i].Updated = utc(m.Recipients[i].Updated)
		}
	}
	out.Envelope = &Envelope{
		Ret:          string(e.Ret),
		EnvID:        e.EnvID,
		Body:         string(e.Body),
		SMTPUTF8:     e.SMTPUTF8,
		DeclaredSize: e.Size,
		Auth:         e.Auth,
		ClientIP:     e.ClientIP,
		ClientHELO:   e.ClientHELO,
		AuthUser:     e.AuthUser,
		TLS:          e.TLS,
		Received:     utc(e.Received),
	}
	return out
}

// utc is t in UTC, keeping the zero time zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// slogPrinter lets promhttp log through the Admin's logger.
type slogPrinter struct{ a *Admin }

func (p slogPrinter) Println(v ...any) {
	p.a.log.Warn("admin: metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
