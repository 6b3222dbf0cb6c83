package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/sdk"
)

const pluginSynopsis = "<command>\n\n" +
	"Commands:\n" +
	"  probe PATH [flags]   start a plugin, print its info and config schema, and optionally send it one sample request"

// runPlugin is `gateway plugin …`, tools for plugin authors.
func runPlugin(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "plugin", pluginSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch sub := fs.Arg(0); sub {
	case "probe":
		return runPluginProbe(ctx, c, fs, fs.Args()[1:])
	case "":
	default:
		fmt.Fprintf(c.Stderr, "gateway plugin: unknown command %q\n", sub)
	}
	fs.Usage()
	return errUsage
}

// setFlags collects repeated -set name=value flags.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

// runPluginProbe starts the plugin at PATH, prints its Info (name,
// version, protocol versions, stages, transports and its config schema as
// a table) and stops it. With -stage it also configures the plugin (-set
// name=value for each setting) and sends it one sample request, printing
// the decision, the reply a client would read and the effects. The
// plugin's host services are the machine's resolver and, for both kinds
// of key-value store, memory that ends with the probe.
func runPluginProbe(ctx context.Context, c *cli, cmd *flag.FlagSet, args []string) error {
	fs := newFlags(c, "plugin probe", "PATH [-stage rcpt -rcpt a@b -sender c@d -set name=value …]")
	stage := fs.String("stage", "", "send one sample request at this stage (rcpt, mail, data, …)")
	rcpt := fs.String("rcpt", "rcpt@example.test", "the sample request's recipient")
	sender := fs.String("sender", "sender@example.org", "the sample request's sender (\"\" for <>)")
	clientIP := fs.String("client", "192.0.2.1", "the sample session's client IP")
	helo := fs.String("helo", "client.example.org", "the sample session's HELO name")
	arg := fs.String("arg", "", "command: the verb's argument; auth: the mechanism")
	command := fs.String("command", "VRFY", "command stage: the verb")
	msgFile := fs.String("message", "", "data, predelivery: the message file (default: a small sample)")
	timeout := fs.Duration("timeout", 5*time.Second, "the sample request's deadline")
	var sets setFlags
	fs.Var(&sets, "set", "a config setting name=value for the sample request (repeat it); lists and maps as JSON")
	// The path may come before or after the flags.
	pos, err := parseVerbFlags(fs, cmd, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		fmt.Fprintf(c.Stderr, "gateway plugin probe: one PATH only; got %q\n", pos)
		return errUsage
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	path := pos[0]
	log := slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	info, err := pluginhost.Probe(ctx, path, log)
	if err != nil {
		return err
	}
	printInfo(c.Stdout, info)
	if *stage == "" {
		return nil
	}

	st := sdk.Stage(*stage)
	if !slices.Contains(sdk.Stages, st) {
		return fmt.Errorf("-stage %q: not a stage", *stage)
	}
	config, err := probeConfig(info.Schema, sets)
	if err != nil {
		return err
	}
	dns, err := resolver.New(resolver.Options{})
	if err != nil {
		return err
	}
	svc := hostsvc.New(hostsvc.Options{Resolver: dns, Durable: hostsvc.NewMemory(hostsvc.MemoryOptions{}), Log: log})
	p, err := pluginhost.Start(ctx, pluginhost.Options{Name: "probe", Path: path, Config: config, Log: log, Services: svc})
	if _, ok := errors.AsType[*pluginhost.ConfigError](err); ok {
		return fmt.Errorf("%w\n(give the sample request's settings with -set name=value)", err)
	}
	if err != nil {
		return err
	}
	defer p.Close()
	req, err := sampleRequest(st, *sender, *rcpt, *clientIP, *helo, *command, *arg, *msgFile)
	if err != nil {
		return err
	}
	chain := hook.NewChain(log, hook.Entry{Handler: p, Timeout: *timeout, OnError: hook.OnErrorDefer})
	fmt.Fprintf(c.Stdout, "\nsample %s request:\n", st)
	if !slices.Contains(info.Stages, st) {
		fmt.Fprintf(c.Stdout, "  the plugin does not handle %s: the gateway never calls it there\n", st)
		return nil
	}
	res := chain.Dispatch(ctx, req)
	printResult(c.Stdout, st, res)
	return nil
}

// printInfo writes what a plugin says about itself.
func printInfo(w io.Writer, info sdk.Info) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", info.Name)
	fmt.Fprintf(tw, "version:\t%s\n", info.Version)
	fmt.Fprintf(tw, "protocols:\t%s\n", joinInts(info.ProtocolVersions))
	fmt.Fprintf(tw, "stages:\t%s\n", orNone(stageNames(info.Stages)))
	fmt.Fprintf(tw, "transports:\t%s\n", orNone(info.Transports))
	tw.Flush()
	if len(info.Schema) == 0 {
		fmt.Fprintln(w, "config: none")
		return
	}
	fmt.Fprintln(w, "config:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SETTING\tTYPE\tREQUIRED\tDEFAULT\tDESCRIPTION")
	for _, f := range info.Schema {
		req, def := "no", "-"
		if f.Required {
			req = "yes"
		}
		if f.Default != nil {
			def = fmt.Sprint(f.Default)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", f.Name, f.Type, req, def, f.Description)
	}
	tw.Flush()
}

// pluginSummary is one line about a started plugin, for gateway check.
func pluginSummary(name string, info sdk.Info) string {
	return fmt.Sprintf("%s: %s %s (protocol %s), stages %s, transports %s", name, info.Name, info.Version,
		joinInts(info.ProtocolVersions), orNone(stageNames(info.Stages)), orNone(info.Transports))
}

func printResult(w io.Writer, st sdk.Stage, res hook.Result) {
	d := res.Decision
	fmt.Fprintf(w, "  verdict: %s\n", d.Verdict)
	if d.Verdict == sdk.Reject || d.Verdict == sdk.Defer || d.Code != 0 {
		r := hook.DefaultReply(st, d)
		line := strconv.Itoa(r.Code)
		if !r.Enhanced.IsZero() {
			line += " " + r.Enhanced.String()
		}
		if r.Message != "" {
			line += " " + r.Message
		}
		fmt.Fprintf(w, "  reply:   %s\n", line)
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "  reason:  %s\n", d.Reason)
	}
	e := res.Effects
	for _, h := range e.AddHeaders {
		fmt.Fprintf(w, "  add header: %s: %s\n", h.Name, h.Value)
	}
	for _, h := range e.RemoveHeaders {
		fmt.Fprintf(w, "  remove header: %s\n", h)
	}
	if len(e.Recipients) > 0 {
		var rs []string
		for _, a := range e.Recipients {
			rs = append(rs, "<"+a.String()+">")
		}
		fmt.Fprintf(w, "  recipients: %s\n", strings.Join(rs, " "))
	}
	if e.Sender != nil {
		fmt.Fprintf(w, "  sender: <%s>\n", e.Sender.String())
	}
	if e.Body != nil {
		fmt.Fprintf(w, "  body: replaced (%d bytes)\n", len(e.Body))
	}
	if e.Route != nil {
		fmt.Fprintf(w, "  route: transport %q via %q\n", e.Route.Transport, e.Route.Via)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Notes)) {
		fmt.Fprintf(w, "  note %s = %q\n", k, e.Notes[k])
	}
	if len(e.Skip) > 0 {
		fmt.Fprintf(w, "  skip: %s\n", strings.Join(e.Skip, " "))
	}
	for _, l := range e.ReplyLines {
		fmt.Fprintf(w, "  reply line: %s\n", l)
	}
}

// probeConfig converts -set name=value flags into a config block: each
// value parsed by its setting's type (a number, a bool, or JSON for a
// list or a map); unknown settings are left as strings for the plugin's
// check to report.
func probeConfig(schema []sdk.ConfigField, sets []string) (map[string]any, error) {
	config := map[string]any{}
	for _, s := range sets {
		name, val, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("-set %q: want name=value", s)
		}
		typ := ""
		for _, f := range schema {
			if f.Name == name {
				typ = f.Type
			}
		}
		v, err := parseSetting(typ, val)
		if err != nil {
			return nil, fmt.Errorf("-set %s: %w", name, err)
		}
		config[name] = v
	}
	return config, nil
}

func parseSetting(typ, val string) (any, error) {
	switch typ {
	case sdk.TypeNumber:
		return strconv.ParseFloat(val, 64)
	case sdk.TypeBool:
		return strconv.ParseBool(val)
	case sdk.TypeList, sdk.TypeMap:
		var v any
		if err := json.Unmarshal([]byte(val), &v); err != nil {
			return nil, fmt.Errorf("want JSON for %s: %w", typ, err)
		}
		return v, nil
	}
	return val, nil
}

// sampleRequest builds the request probe sends.
func sampleRequest(st sdk.Stage, sender, rcpt, clientIP, helo, command, arg, msgFile string) (*hook.Request, error) {
	ip, err := netip.ParseAddr(clientIP)
	if err != nil {
		return nil, fmt.Errorf("-client %q: %w", clientIP, err)
	}
	req := &hook.Request{Stage: st}
	if st != sdk.StagePredelivery && !st.IsNotification() || st == sdk.StageDisconnect {
		req.Session = &hook.Session{ID: "probe", Listener: "probe", ClientIP: ip, Port: 40000, HELO: helo, ESMTP: true}
	}
	var from envelope.Address
	if sender != "" {
		if from, err = envelope.ParseAddress(sender); err != nil {
			return nil, fmt.Errorf("-sender: %w", err)
		}
	}
	to, err := envelope.ParseAddress(rcpt)
	if err != nil {
		return nil, fmt.Errorf("-rcpt: %w", err)
	}
	switch st {
	case sdk.StageConnect, sdk.StageHelo, sdk.StageAuth, sdk.StageMail, sdk.StageCommand:
	default:
		req.Envelope = &envelope.Envelope{Sender: from, ClientIP: ip.String(), ClientHELO: helo, Received: time.Now()}
		if st != sdk.StageRcpt {
			req.Envelope.Recipients = []envelope.Recipient{{Address: to}}
		}
	}
	if st == sdk.StageMail {
		req.Envelope = &envelope.Envelope{Sender: from}
	}
	switch st {
	case sdk.StageRcpt, sdk.StagePredelivery, sdk.StageDelivered, sdk.StageDeferred, sdk.StageBounced:
		req.Rcpt = &envelope.Recipient{Address: to}
	}
	switch st {
	case sdk.StageCommand:
		req.Command, req.Arg = strings.ToUpper(command), arg
	case sdk.StageAuth:
		req.Arg = arg
	case sdk.StagePredelivery:
		req.Arg = to.DomainFold()
	}
	if st == sdk.StageData || st == sdk.StagePredelivery {
		content := []byte("From: <" + from.String() + ">\r\nTo: <" + to.String() + ">\r\nSubject: gateway plugin probe\r\n\r\nA sample message.\r\n")
		if msgFile != "" {
			if content, err = os.ReadFile(msgFile); err != nil {
				return nil, fmt.Errorf("-message: %w", err)
			}
		}
		req.Message = message.NewView(int64(len(content)), func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(string(content))), nil
		})
	}
	return req, nil
}

func stageNames(stages []sdk.Stage) []string {
	out := make([]string, len(stages))
	for i, s := range stages {
		out[i] = string(s)
	}
	return out
}

func joinInts(vs []int) string {
	if len(vs) == 0 {
		return "none"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ", ")
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return strings.Join(ss, ", ")
}
