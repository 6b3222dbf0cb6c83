package main

// sendmail -bp (mailq) and -q: the queue through the running server's
// admin API, as `gateway queue ls` and `retry` do, and the messages still
// waiting in the pickup directory.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/pickup"
)

// mailqLimit bounds the messages mailq lists.
const mailqLimit = 100000

// sendmailAPI is a client of the admin API the configuration names.
func sendmailAPI(cfg *config.Config) (*apiClient, error) {
	if cfg.Admin.Address == "" {
		return nil, exit(exConfig, "%s has no admin block: the queue cannot be reached", cfg.File)
	}
	base, err := adminURL(cfg.Admin.Address)
	if err != nil {
		return nil, exit(exConfig, "%v", err)
	}
	return &apiClient{base: base, addr: cfg.Admin.Address, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// sendmailMailq prints the pickup directory's messages (when this user
// may read it) and the queue, like Postfix's mailq.
func sendmailMailq(ctx context.Context, c *cli, cfg *config.Config) error {
	msgs := pickupListing(gateway.PickupDir(cfg.DataDir))
	api, err := sendmailAPI(cfg)
	if err != nil {
		return err
	}
	raw, err := api.do(ctx, http.MethodGet, "/v1/queue", url.Values{"limit": {strconv.Itoa(mailqLimit)}})
	if err != nil {
		if len(msgs) > 0 {
			writeQueue(c.Stdout, msgs, 0)
		}
		return exit(exUnavailable, "%v (is the gateway running?)", err)
	}
	var queued []admin.Message
	if err := json.Unmarshal(raw, &queued); err != nil {
		return exit(exUnavailable, "admin API: unexpected answer: %v", err)
	}
	writeQueue(c.Stdout, append(msgs, queued...), mailqLimit+len(msgs))
	return nil
}

// pickupListing is the pickup directory's messages as queue entries,
// their recipients in state "pickup"; none when this user may not list
// the directory (it is the server's, mode 1733).
func pickupListing(dir string) []admin.Message {
	names, err := pickup.List(dir)
	if err != nil {
		return nil
	}
	var out []admin.Message
	for _, name := range names {
		m, err := pickup.Open(dir, name, 1<<40)
		if err != nil {
			continue
		}
		_, id, _ := strings.Cut(name, ".")
		am := admin.Message{ID: id, Sender: m.Env.Sender.String(), Created: m.Created, Size: m.Size}
		for _, r := range m.Env.Recipients {
			am.Recipients = append(am.Recipients, admin.Recipient{Address: r.Address.String(), Status: "pickup"})
		}
		m.Close()
		out = append(out, am)
	}
	return out
}

// sendmailFlush makes queued mail due now: all of it (-q), a domain's
// (-qR) or one message (-qI).
func sendmailFlush(ctx context.Context, cfg *config.Config, o *sendmailOptions) error {
	api, err := sendmailAPI(cfg)
	if err != nil {
		return err
	}
	path, query := "/v1/queue/retry", url.Values{"all": {"1"}}
	switch {
	case o.flushID != "":
		path, query = "/v1/queue/"+url.PathEscape(o.flushID)+"/retry", nil
	case o.flushSite != "":
		query = url.Values{"domain": {o.flushSite}}
	}
	if _, err := api.do(ctx, http.MethodPost, path, query); err != nil {
		return exit(exUnavailable, "%v", err)
	}
	return nil
}
