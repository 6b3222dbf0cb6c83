package main

// This file is `gateway queue hold|release [-domain D]` and `gateway
// queue holds`: holding a message or a recipient domain, and listing the
// held domains.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/mailgate/gateway/core/admin"
)

// hold is `queue hold` and `queue release`: of one message (ID) or of a
// domain's mail (-domain D).
func (q *queueCmd) hold(op string, args []string) (func(context.Context) error, error) {
	var domain string
	pos, err := q.subFlags(op, "[-json] ID | -domain D", args, func(fs *flag.FlagSet) {
		fs.StringVar(&domain, "domain", "", "the domain (or \"*.domain\", its subdomains) whose mail to "+op)
	})
	if err != nil {
		return nil, err
	}
	if domain == "" {
		id, err := q.oneID(op, pos)
		if err != nil {
			return nil, err
		}
		return q.single(op, id), nil
	}
	if len(pos) != 0 {
		fmt.Fprintf(q.c.Stderr, "usage: gateway queue %s ID | -domain D\n", op)
		return nil, errUsage
	}
	return func(ctx context.Context) error {
		raw, err := q.api.do(ctx, http.MethodPost, "/v1/domains/"+url.PathEscape(domain)+"/"+op, nil)
		if err != nil || q.printJSON(raw) {
			return err
		}
		var res admin.DomainResult
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		if op == "hold" {
			fmt.Fprintf(q.c.Stdout, "%s: held\n", clean(res.Domain))
			return nil
		}
		fmt.Fprintf(q.c.Stdout, "%s: released, %d %s due now\n", clean(res.Domain), res.Count, plural(res.Count, "message", "messages"))
		return nil
	}, nil
}

// holds is `queue holds`: the held domains.
func (q *queueCmd) holds(args []string) (func(context.Context) error, error) {
	pos, err := q.subFlags("holds", "[-json]", args, nil)
	if err != nil {
		return nil, err
	}
	if len(pos) != 0 {
		fmt.Fprintln(q.c.Stderr, "usage: gateway queue holds [-json]")
		return nil, errUsage
	}
	return func(ctx context.Context) error {
		raw, err := q.api.do(ctx, http.MethodGet, "/v1/domains", nil)
		if err != nil || q.printJSON(raw) {
			return err
		}
		var list []admin.DomainHold
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		writeHolds(q.c.Stdout, list)
		return nil
	}, nil
}

// writeHolds prints the held domains, one a line: the domain, what holds
// it, and since when for the operator's holds.
func writeHolds(w io.Writer, list []admin.DomainHold) {
	if len(list) == 0 {
		fmt.Fprintln(w, "No domain is held")
		return
	}
	for _, h := range list {
		line := fmt.Sprintf("%-30s %s", clean(h.Domain), clean(h.Source))
		if !h.Since.IsZero() {
			line += " since " + h.Since.UTC().Format(timeLayout) + " UTC"
		}
		fmt.Fprintln(w, line)
	}
}
