package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/config"
)

const queueSynopsis = "[-config gateway.hcl | -admin host:port] [-json] <command>\n\n" +
	"Commands:\n" +
	"  ls [-limit N] [-domain D]   list the queue (like mailq; ! marks a held message)\n" +
	"  show ID                     one message with its envelope and recipients\n" +
	"  retry ID | -all | -domain D make messages due now (-domain: D's held mail too, once)\n" +
	"  hold ID | -domain D         stop deliveries of a message, or of D's mail (D: a name, or *.name)\n" +
	"  release ID | -domain D      undo hold (D's mail is due now)\n" +
	"  holds                       list the held domains (hold_domains and hold -domain)\n" +
	"  bounce ID                   fail the undelivered recipients now, with DSNs\n" +
	"  rm ID                       remove a message without any DSN\n\n" +
	"Flags (before or after the command):"

// maxAnswer bounds what is read of one API answer.
const maxAnswer = 256 << 20

// runQueue is `gateway queue`: the queue through the admin API.
func runQueue(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "queue", queueSynopsis)
	path := fs.String("config", defaultConfig, "configuration file whose admin { address } to use")
	addr := fs.String("admin", "", "admin API address host:port (default: from the configuration)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit of each API request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	q := &queueCmd{c: c, flags: fs, json: asJSON}
	sub, subArgs := fs.Arg(0), fs.Args()[1:]
	// The subcommand's flags (and the queue command's given after it) are
	// parsed first, so that a usage error is reported before anything is
	// looked up.
	var run func(ctx context.Context) error
	var err error
	switch sub {
	case "ls":
		run, err = q.ls(subArgs)
	case "show":
		run, err = q.show(subArgs)
	case "retry":
		run, err = q.retry(subArgs)
	case "hold", "release":
		run, err = q.hold(sub, subArgs)
	case "holds":
		run, err = q.holds(subArgs)
	case "bounce", "rm":
		run, err = q.operate(sub, subArgs)
	default:
		fmt.Fprintf(c.Stderr, "gateway queue: unknown command %q\n", sub)
		fs.Usage()
		return errUsage
	}
	if err != nil {
		return err
	}
	if *addr == "" {
		cfg, err := config.Load(*path)
		if err != nil {
			return err
		}
		if cfg.Admin.Address == "" {
			return fmt.Errorf("%s has no admin block, so the admin API is off; add admin { address = \"127.0.0.1:8025\" } or give -admin", *path)
		}
		*addr = cfg.Admin.Address
	}
	base, err := adminURL(*addr)
	if err != nil {
		return err
	}
	q.api = &apiClient{base: base, addr: *addr, http: &http.Client{Timeout: *timeout}}
	return run(ctx)
}

// adminURL turns the admin address into the API's base URL. An
// unspecified host (":8025", "0.0.0.0:8025") means this machine.
func adminURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %w", addr, err)
	}
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.Equal(net.IPv4zero)):
		host = "127.0.0.1"
	case ip != nil && ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

type queueCmd struct {
	c     *cli
	flags *flag.FlagSet // the queue command's, which every subcommand takes too
	json  *bool
	api   *apiClient
}

// subFlags parses a subcommand's flags, and the queue command's, which may
// come before, after or between its arguments, and returns the arguments.
func (q *queueCmd) subFlags(name, synopsis string, args []string, setup func(fs *flag.FlagSet)) ([]string, error) {
	fs := newFlags(q.c, "queue "+name, synopsis)
	if setup != nil {
		setup(fs)
	}
	return parseVerbFlags(fs, q.flags, args)
}

// oneID checks that args is exactly one queue ID.
func (q *queueCmd) oneID(name string, args []string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		fmt.Fprintf(q.c.Stderr, "usage: gateway queue %s ID\n", name)
		return "", errUsage
	}
	return args[0], nil
}

// print writes raw when -json is given and returns true.
func (q *queueCmd) printJSON(raw []byte) bool {
	if *q.json {
		q.c.Stdout.Write(raw)
	}
	return *q.json
}

func (q *queueCmd) ls(args []string) (func(context.Context) error, error) {
	var limit int
	var domain string
	var all bool
	pos, err := q.subFlags("ls", "[-json] [-limit N] [-domain D] [-cluster]", args, func(fs *flag.FlagSet) {
		fs.IntVar(&limit, "limit", 1000, "list at most this many messages")
		fs.StringVar(&domain, "domain", "", "only messages with a recipient in this domain")
		fs.BoolVar(&all, "cluster", false, "every cluster node's copies on the queue's stream (IDs as node/ID)")
	})
	if err != nil {
		return nil, err
	}
	if len(pos) != 0 || limit <= 0 {
		fmt.Fprintln(q.c.Stderr, "usage: gateway queue ls [-json] [-limit N>0] [-domain D] [-cluster]")
		return nil, errUsage
	}
	return func(ctx context.Context) error {
		v := url.Values{"limit": {strconv.Itoa(limit)}}
		if domain != "" {
			v.Set("domain", domain)
		}
		if all {
			v.Set("cluster", "1")
		}
		raw, err := q.api.do(ctx, http.MethodGet, "/v1/queue", v)
		if err != nil || q.printJSON(raw) {
			return err
		}
		var msgs []admin.Message
		if err := json.Unmarshal(raw, &msgs); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		writeQueue(q.c.Stdout, msgs, limit)
		return nil
	}, nil
}

// Columns of the ls table, as in Postfix's mailq: the ID with a held
// mark, size, arrival, then sender and recipients.
const (
	lsHeader    = "-Queue ID-------- --Size-- ---Arrival (UTC)--- -Sender/Recipient-------"
	lsIndent    = 47 // the Sender/Recipient column
	statusWidth = 10 // "delivered" and a space
	timeLayout  = "2006-01-02 15:04:05"
)

// writeQueue prints msgs as a mailq-like table and a summary line.
func writeQueue(w io.Writer, msgs []admin.Message, limit int) {
	if len(msgs) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	fmt.Fprintln(w, lsHeader)
	pad := strings.Repeat(" ", lsIndent)
	for _, m := range msgs {
		id := clean(m.ID)
		if m.Node != "" {
			id = clean(m.Node) + "/" + id
		}
		if m.Held {
			id += "!"
		}
		fmt.Fprintf(w, "%-17s %8d %s %s\n", id, m.Size, m.Created.UTC().Format(timeLayout), sender(m.Sender))
		for _, r := range m.Recipients {
			fmt.Fprintf(w, "%s%-*s%s\n", pad, statusWidth, rcptStatus(r), clean(r.Address))
			if r.Held != "" {
				fmt.Fprintf(w, "%s%s(%s)\n", pad, strings.Repeat(" ", statusWidth), clean(r.Held))
			}
			if r.LastReply != "" {
				fmt.Fprintf(w, "%s%s(%s)\n", pad, strings.Repeat(" ", statusWidth), clean(r.LastReply))
			}
		}
	}
	summary := fmt.Sprintf("-- %d %s", len(msgs), plural(len(msgs), "message", "messages"))
	if len(msgs) == limit {
		summary += fmt.Sprintf(" (the first %d; -limit shows more)", limit)
	}
	fmt.Fprintln(w, summary)
}

// rcptStatus is a recipient's status as ls and show print it: "held"
// when its domain is held.
func rcptStatus(r admin.Recipient) string {
	if r.Held != "" {
		return "held"
	}
	return r.Status
}

func (q *queueCmd) show(args []string) (func(context.Context) error, error) {
	pos, err := q.subFlags("show", "[-json] ID", args, nil)
	if err != nil {
		return nil, err
	}
	id, err := q.oneID("show", pos)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		raw, err := q.api.do(ctx, http.MethodGet, "/v1/queue/"+url.PathEscape(id), nil)
		if err != nil || q.printJSON(raw) {
			return err
		}
		var m admin.Message
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		writeMessage(q.c.Stdout, &m)
		return nil
	}, nil
}

// writeMessage prints one message with its envelope, one field a line.
func writeMessage(w io.Writer, m *admin.Message) {
	field := func(name, format string, v ...any) {
		fmt.Fprintf(w, "%-12s %s\n", name+":", fmt.Sprintf(format, v...))
	}
	field("ID", "%s", clean(m.ID))
	switch {
	case m.Held:
		field("State", "held")
	case m.NextAttempt.IsZero():
		field("State", "due now")
	default:
		field("State", "next attempt %s UTC", m.NextAttempt.UTC().Format(timeLayout))
	}
	field("Arrival", "%s UTC", m.Created.UTC().Format(timeLayout))
	field("Size", "%d bytes", m.Size)
	field("Attempts", "%d", m.Attempts)
	field("Sender", "%s", sender(m.Sender))
	if e := m.Envelope; e != nil {
		client := clean(e.ClientHELO) + " [" + clean(e.ClientIP) + "]"
		if e.TLS {
			client += ", TLS"
		}
		if e.AuthUser != "" {
			client += ", authenticated as " + clean(e.AuthUser)
		}
		field("Client", "%s", client)
		if !e.Received.IsZero() {
			field("Received", "%s UTC", e.Received.UTC().Format(timeLayout))
		}
		var params []string
		for _, p := range []struct{ name, value string }{
			{"RET", e.Ret}, {"ENVID", e.EnvID}, {"BODY", e.Body}, {"AUTH", e.Auth},
		} {
			if p.value != "" {
				params = append(params, p.name+"="+clean(p.value))
			}
		}
		if e.DeclaredSize > 0 {
			params = append(params, "SIZE="+strconv.FormatInt(e.DeclaredSize, 10))
		}
		if e.SMTPUTF8 {
			params = append(params, "SMTPUTF8")
		}
		if len(params) > 0 {
			field("MAIL", "%s", strings.Join(params, " "))
		}
	}
	fmt.Fprintln(w, "Recipients:")
	for _, r := range m.Recipients {
		fmt.Fprintf(w, "  %-*s%s\n", statusWidth, rcptStatus(r), clean(r.Address))
		var facts []string
		if r.Attempts > 0 {
			facts = append(facts, fmt.Sprintf("%d %s", r.Attempts, plural(r.Attempts, "attempt", "attempts")))
		}
		if !r.Updated.IsZero() {
			facts = append(facts, "updated "+r.Updated.UTC().Format(timeLayout)+" UTC")
		}
		if len(r.Notify) > 0 {
			facts = append(facts, "NOTIFY="+strings.Join(r.Notify, ","))
		}
		if r.ORCPT != "" {
			facts = append(facts, "ORCPT="+clean(r.ORCPT))
		}
		if r.TLSPolicy != "" {
			facts = append(facts, "tls "+clean(r.TLSPolicy))
		}
		if r.Held != "" {
			facts = append(facts, clean(r.Held))
		}
		indent := strings.Repeat(" ", 2+statusWidth)
		if len(facts) > 0 {
			fmt.Fprintf(w, "%s%s\n", indent, strings.Join(facts, ", "))
		}
		if r.LastReply != "" {
			fmt.Fprintf(w, "%s(%s)\n", indent, clean(r.LastReply))
		}
	}
}

func (q *queueCmd) retry(args []string) (func(context.Context) error, error) {
	var all bool
	var domain string
	pos, err := q.subFlags("retry", "[-json] ID | -all | -domain D", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&all, "all", false, "make every message due now")
		fs.StringVar(&domain, "domain", "", "make the messages for this domain due now")
	})
	if err != nil {
		return nil, err
	}
	given := len(pos)
	if all {
		given++
	}
	if domain != "" {
		given++
	}
	if given != 1 || len(pos) > 1 {
		fmt.Fprintln(q.c.Stderr, "usage: gateway queue retry ID | -all | -domain D")
		return nil, errUsage
	}
	if len(pos) == 1 {
		return q.single("retry", pos[0]), nil
	}
	return func(ctx context.Context) error {
		v := url.Values{"all": {"1"}}
		if domain != "" {
			v = url.Values{"domain": {domain}}
		}
		raw, err := q.api.do(ctx, http.MethodPost, "/v1/queue/retry", v)
		if err != nil || q.printJSON(raw) {
			return err
		}
		var n admin.Count
		if err := json.Unmarshal(raw, &n); err != nil {
			return fmt.Errorf("admin API: unexpected answer: %w", err)
		}
		fmt.Fprintf(q.c.Stdout, "%d %s due now\n", n.Count, plural(n.Count, "message", "messages"))
		return nil
	}, nil
}

func (q *queueCmd) operate(op string, args []string) (func(context.Context) error, error) {
	pos, err := q.subFlags(op, "[-json] ID", args, nil)
	if err != nil {
		return nil, err
	}
	id, err := q.oneID(op, pos)
	if err != nil {
		return nil, err
	}
	return q.single(op, id), nil
}

// queueDone is what each single-message operation prints after the ID.
var queueDone = map[string]string{
	"retry":   "due now",
	"hold":    "held",
	"release": "released",
	"bounce":  "bounced",
	"rm":      "removed",
}

// single runs op on message id.
func (q *queueCmd) single(op, id string) func(context.Context) error {
	return func(ctx context.Context) error {
		method, path := http.MethodPost, "/v1/queue/"+url.PathEscape(id)+"/"+op
		if op == "rm" {
			method, path = http.MethodDelete, "/v1/queue/"+url.PathEscape(id)
		}
		raw, err := q.api.do(ctx, method, path, nil)
		if err != nil || q.printJSON(raw) {
			return err
		}
		fmt.Fprintf(q.c.Stdout, "%s: %s\n", clean(id), queueDone[op])
		return nil
	}
}

// apiClient makes requests to the admin API.
type apiClient struct {
	base string // http://host:port
	addr string // as configured, for messages
	http *http.Client
}

// do makes one request and returns the body of a 2xx answer; any other
// answer becomes an error carrying the API's message.
func (a *apiClient) do(ctx context.Context, method, path string, query url.Values) ([]byte, error) {
	u := a.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach the admin API at %s: %w", a.addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: reading the answer: %w", a.addr, err)
	}
	if resp.StatusCode/100 == 2 {
		return raw, nil
	}
	var e admin.Error
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return nil, errors.New(clean(e.Error))
	}
	return nil, fmt.Errorf("admin API at %s: %s", a.addr, resp.Status)
}

// sender shows the null reverse-path as <>.
func sender(s string) string {
	if s == "" {
		return "<>"
	}
	return clean(s)
}

// clean replaces control characters, so that text from the queue (a remote
// server's reply, a client's address) cannot drive the terminal.
func clean(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '?'
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
