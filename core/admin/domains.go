package admin

// This file is the API's part of the per-domain hold: the held domains,
// holding and releasing one, and the hold shown on a queued recipient.

import (
	"net/http"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/queue"
)

// DomainHold is one held domain (GET /v1/domains): "domain" is a name or
// "*.name", "source" is "hold_domains" (the configuration) or "operator"
// (held through this API), and "since" when the operator held it.
type DomainHold = delivery.DomainHold

// DomainResult answers an operation on a held domain. Count is, for a
// release, how many messages were made due.
type DomainResult struct {
	Domain string `json:"domain"`
	Action string `json:"action"` // hold or release
	Count  int    `json:"count"`
}

func (a *Admin) heldDomains(w http.ResponseWriter, r *http.Request) {
	e := a.opt.Engine
	if e == nil {
		writeError(w, http.StatusServiceUnavailable, "no delivery engine")
		return
	}
	out := e.HeldDomains()
	if out == nil {
		out = []DomainHold{}
	}
	writeJSON(w, http.StatusOK, out)
}

// domainOp is POST /v1/domains/{domain}/hold and …/release.
func (a *Admin) domainOp(w http.ResponseWriter, r *http.Request) {
	e := a.opt.Engine
	op, domain := r.PathValue("op"), foldDomain(r.PathValue("domain"))
	if op != "hold" && op != "release" {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if e == nil {
		writeError(w, http.StatusServiceUnavailable, "no delivery engine")
		return
	}
	var err error
	res := DomainResult{Domain: domain, Action: op}
	if op == "hold" {
		err = e.HoldDomain(r.Context(), domain)
	} else {
		res.Count, err = e.ReleaseDomain(r.Context(), domain)
	}
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	a.log.Info("admin: "+op+" domain", "domain", domain, "count", res.Count, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
}

// markHeld fills in out the hold of each undelivered recipient of m whose
// domain is held.
func (a *Admin) markHeld(out Message, m *queue.Message) Message {
	e := a.opt.Engine
	if e == nil {
		return out
	}
	for i, rc := range m.Envelope.Recipients {
		if i < len(m.Recipients) && (m.Recipients[i].Status == queue.Delivered || m.Recipients[i].Status == queue.Failed) {
			continue
		}
		if h, ok := e.HoldOf(rc.Address.DomainFold()); ok {
			out.Recipients[i].Held = h.Reason()
		}
	}
	return out
}
