package main

// gateway sendmail: the sendmail(8) command line as local programs call
// it (cron, monitoring, PHP's mail()), also run as `sendmail` or `mailq`
// through a symlink. A message goes into the pickup directory under
// data_dir (core/pickup), where the running server finds it: nothing is
// lost while the server is down. The options follow Postfix's
// sendmail(1); what Postfix ignores is ignored here too, and the exit
// codes are sysexits.h's.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
)

// Exit codes of sysexits.h that sendmail uses.
const (
	exUsage       = 64 // bad command line
	exDataErr     = 65 // bad input
	exNoUser      = 67 // bad recipient address
	exUnavailable = 69 // the server (its admin API) cannot be reached
	exSoftware    = 70 // our bug
	exOSErr       = 71 // no login name, and the like
	exCantCreat   = 73 // the pickup directory cannot be made
	exTempFail    = 75 // try again later: writing the message failed
	exNoPerm      = 77 // not allowed to write the pickup directory
	exConfig      = 78 // the configuration does not load
)

// exitError is an error that ends the process with its own exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exit wraps a message as an exitError with code.
func exit(code int, format string, a ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, a...)}
}

// systemConfig is where sendmail looks for the configuration when there is
// no -C and no gateway.hcl in the working directory.
const systemConfig = "/etc/gateway/gateway.hcl"

// sendmailMode is what one sendmail run does.
type sendmailMode int

const (
	modeEnqueue sendmailMode = iota // read a message from stdin (-bm, the default)
	modeMailq                       // list the queue (-bp, mailq)
	modeFlush                       // deliver what is queued now (-q, -qR, -qI)
	modeSMTP                        // SMTP on stdin and stdout (-bs)
	modeIgnore                      // do nothing and succeed (-bh, -bH, -bi, -I, -q<interval>)
)

// sendmailOptions are the command line, understood.
type sendmailOptions struct {
	mode       sendmailMode
	config     string // -C
	sender     string // -f or -r
	senderSet  bool
	fullName   string // -F
	extract    bool   // -t
	dotEnds    bool   // a line "." ends the input: no -i, no -oi
	notify     envelope.Notify
	ret        envelope.Ret
	envID      string        // -V, as xtext
	body       envelope.Body // -B
	flushSite  string        // -qR
	flushID    string        // -qI
	recipients []string
}

// sendmailValued are the options that take a value, attached ("-oi") or
// as the next argument ("-f alice"); sendmailFlags those that take none.
// Any other letter is a usage error.
const (
	sendmailValued = "ABCFLNORVXbefhopqr"
	sendmailFlags  = "GIUcimntvx"
)

// runSendmail is `gateway sendmail`.
func runSendmail(ctx context.Context, c *cli, args []string) error {
	o, err := parseSendmail(args)
	if err != nil {
		return err
	}
	if o.mode == modeIgnore {
		return nil
	}
	path := o.config
	if path == "" {
		path = defaultConfig
		if _, err := os.Stat(path); err != nil {
			path = systemConfig
		}
	}
	// Any local user runs sendmail: it reads only the settings, never the
	// keys and secrets the configuration names (the server's files).
	cfg, err := config.LoadSettings(path)
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	switch o.mode {
	case modeMailq:
		return sendmailMailq(ctx, c, cfg)
	case modeFlush:
		return sendmailFlush(ctx, cfg, o)
	case modeSMTP:
		return sendmailSMTP(ctx, c, cfg)
	default:
		return sendmailEnqueue(c, cfg, o)
	}
}

// parseSendmail reads the command line as getopt would (options first,
// then recipients; "--" ends the options) and checks that the options go
// together.
func parseSendmail(args []string) (*sendmailOptions, error) {
	o := &sendmailOptions{dotEnds: true}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if a == "-q" { // not getopt's: a -q with no value
			o.mode = modeFlush
			continue
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			opt := a[j]
			if strings.IndexByte(sendmailFlags, opt) >= 0 {
				if err := o.flag(opt); err != nil {
					return nil, err
				}
				continue
			}
			if strings.IndexByte(sendmailValued, opt) < 0 {
				return nil, exit(exUsage, "unknown option -%c", opt)
			}
			value := a[j+1:]
			if value == "" {
				if i++; i == len(args) {
					return nil, exit(exUsage, "option -%c needs a value", opt)
				}
				value = args[i]
			}
			if err := o.option(opt, value); err != nil {
				return nil, err
			}
			break
		}
	}
	if i < len(args) {
		o.recipients = args[i:]
	}
	return o, o.check()
}

// flag takes an option without a value.
func (o *sendmailOptions) flag(opt byte) error {
	switch opt {
	case 'I':
		o.mode = modeIgnore // newaliases: there is no alias database
	case 'i':
		o.dotEnds = false
	case 't':
		o.extract = true
	case 'n':
		return exit(exUsage, "-n is not supported")
	}
	return nil // G, U, c, m, v, x: ignored, as Postfix does
}

// option takes an option with its value.
func (o *sendmailOptions) option(opt byte, v string) error {
	switch opt {
	case 'B':
		switch strings.ToUpper(v) {
		case "8BITMIME":
			o.body = envelope.Body8BitMIME
		case "7BIT":
			o.body = envelope.Body7Bit
		default:
			return exit(exUsage, "-B needs 8BITMIME or 7BIT")
		}
	case 'C':
		o.config = v
	case 'F':
		o.fullName = v
	case 'f', 'r':
		o.sender, o.senderSet = v, true
	case 'N':
		n, err := envelope.ParseNotify(strings.ReplaceAll(v, " ", ""))
		if err != nil {
			return exit(exUsage, "-N needs never, or some of success, failure and delay: %q", v)
		}
		o.notify = n
	case 'R':
		switch r := envelope.Ret(strings.ToUpper(v)); r {
		case envelope.RetFull, envelope.RetHdrs:
			o.ret = r
		} // Postfix ignores -R: only sendmail's full and hdrs mean something
	case 'V':
		if len(v) > 100 || strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
			return exit(exUsage, "-V needs an envelope ID of up to 100 printable characters")
		}
		o.envID = smtp.EncodeXText(v)
	case 'X':
		return exit(exUsage, "unsupported: -X%s", v)
	case 'b':
		return o.modeOption(v)
	case 'o':
		if v == "i" {
			o.dotEnds = false
		} // -oem, -odb, -oee, -om, -o7, -oA… are ignored
	case 'q':
		return o.queueOption(v)
	}
	return nil // A, L, O, e, h, p: ignored
}

// modeOption takes -b's value.
func (o *sendmailOptions) modeOption(v string) error {
	switch v {
	case "m":
		o.mode = modeEnqueue
	case "p":
		o.mode = modeMailq
	case "s":
		o.mode = modeSMTP
	case "h", "H", "i":
		o.mode = modeIgnore
	case "d":
		return exit(exUsage, "-bd: run `gateway serve` to start the server")
	default:
		return exit(exUsage, "unsupported: -b%s", v)
	}
	return nil
}

// queueOption takes -q's value: an interval (ignored, as outside daemon
// mode in Postfix), R and a domain, or I and a queue ID.
func (o *sendmailOptions) queueOption(v string) error {
	switch {
	case v == "":
		return exit(exUsage, "-q needs no value, or an interval, R and a domain, or I and a queue ID")
	case v[0] >= '0' && v[0] <= '9':
		o.mode = modeIgnore
	case v[0] == 'R' && len(v) > 1:
		o.flushSite = v[1:]
	case v[0] == 'I' && len(v) > 1:
		o.flushID = v[1:]
	default:
		return exit(exUsage, "-q%s is not supported: use -q, -qRdomain or -qIqueueid", v)
	}
	return nil
}

// check refuses options that do not go together, as Postfix does.
func (o *sendmailOptions) check() error {
	if o.mode == modeIgnore {
		return nil
	}
	if o.extract && o.mode != modeEnqueue {
		return exit(exUsage, "-t can be used only in delivery mode")
	}
	if o.flushSite != "" || o.flushID != "" {
		if o.mode != modeEnqueue && o.mode != modeFlush {
			return exit(exUsage, "-qR and -qI can be used only in delivery mode")
		}
		o.mode = modeFlush
	}
	if len(o.recipients) > 0 {
		switch o.mode {
		case modeMailq:
			return exit(exUsage, "display queue mode requires no recipient")
		case modeFlush:
			return exit(exUsage, "flush queue mode requires no recipient")
		case modeSMTP:
			return exit(exUsage, "stand-alone mode requires no recipient")
		}
	}
	return nil
}

// sendmailArgs maps the program's name to gateway's arguments: run as
// sendmail or mailq (a symlink to the binary), it is `gateway sendmail`
// or `gateway sendmail -bp`.
func sendmailArgs(name string, args []string) []string {
	switch name {
	case "sendmail":
		return append([]string{"sendmail"}, args...)
	case "mailq":
		return append([]string{"sendmail", "-bp"}, args...)
	}
	return args
}

// asExitError is err's exit code, if it carries one.
func asExitError(err error) (int, bool) {
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code, true
	}
	return 0, false
}
