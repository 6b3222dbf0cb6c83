package main

// gateway send: submit one message from a file or stdin.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
)

// addrList is a repeatable flag of comma-separated values.
type addrList []string

func (l *addrList) String() string { return strings.Join(*l, ",") }

func (l *addrList) Set(s string) error {
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			*l = append(*l, a)
		}
	}
	return nil
}

func runSend(ctx context.Context, c *cli, args []string) error {
	o, err := parseSendFlags(c, args)
	if err != nil {
		return err
	}
	env, err := sendEnvelope(o.from, o.to)
	if err != nil {
		return err
	}
	text, err := readSendInput(c.Stdin, o.file)
	if err != nil {
		return err
	}
	msg := prepareMessage(env, o, text)
	cl, err := dialSend(ctx, o)
	if err != nil {
		return err
	}
	defer cl.Close()
	return submitMessage(ctx, c, cl, env, msg)
}

// sendOptions are send's flags and argument, checked.
type sendOptions struct {
	server   string
	from     string // "<>" for the null sender
	to       addrList
	subject  string
	startTLS bool
	insecure bool   // do not verify the server certificate
	auth     string // user:password, or "" for none
	helo     string
	timeout  time.Duration
	file     string // "" or "-" for stdin
}

// parseSendFlags reads send's flags and argument and checks them.
func parseSendFlags(c *cli, args []string) (sendOptions, error) {
	var o sendOptions
	fs := newFlags(c, "send", "--from ADDR --to ADDR[,ADDR...] [flags] [FILE|-]")
	fs.StringVar(&o.server, "server", "127.0.0.1:2525", "SMTP server, host:port")
	fs.StringVar(&o.from, "from", "", `envelope sender ("<>" for the null sender)`)
	fs.Var(&o.to, "to", "recipient; a comma-separated list, repeatable")
	fs.StringVar(&o.subject, "subject", "", `Subject when the headers are composed (default "(no subject)")`)
	fs.BoolVar(&o.startTLS, "starttls", false, "require STARTTLS")
	fs.BoolVar(&o.insecure, "insecure-tls", false, "do not verify the server certificate")
	fs.StringVar(&o.auth, "auth", "", "authenticate with AUTH PLAIN as user:password")
	fs.StringVar(&o.helo, "helo", "localhost", "EHLO name")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "timeout of each SMTP command")
	pos, err := parseInterspersed(fs, args) // gateway send FILE --from a --to b works too
	if err != nil {
		return o, err
	}
	if o.from == "" || len(o.to) == 0 || len(pos) > 1 {
		fs.Usage()
		return o, errUsage
	}
	if len(pos) == 1 {
		o.file = pos[0]
	}
	return o, nil
}

// sendEnvelope parses the sender ("<>" is the null sender) and the
// recipients; SMTPUTF8 is asked for when an address is not ASCII.
func sendEnvelope(from string, to []string) (*envelope.Envelope, error) {
	env := &envelope.Envelope{}
	if from != "<>" {
		a, err := envelope.ParseAddress(from)
		if err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
		env.Sender = a
	}
	rcpts, err := parseRecipients("--to", to)
	if err != nil {
		return nil, err
	}
	env.Recipients = rcpts
	env.SMTPUTF8 = !isASCII(from) || !isASCII(strings.Join(to, ""))
	return env, nil
}

// readSendInput reads the file name, or stdin when name is "" or "-".
func readSendInput(stdin io.Reader, name string) ([]byte, error) {
	if name == "" || name == "-" {
		return io.ReadAll(stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// prepareMessage makes text the message to send: a header block composed
// if it has none, every line ended with CRLF. It sets env's BODY and SIZE
// to match.
func prepareMessage(env *envelope.Envelope, o sendOptions, text []byte) []byte {
	msg := text
	if !hasHeader(text) {
		msg = composeMessage(env, o.to, o.subject, o.helo, text, time.Now())
	}
	msg = toCRLF(msg)
	if !isASCII(string(msg)) {
		env.Body = envelope.Body8BitMIME
	}
	env.Size = int64(len(msg))
	return msg
}

// dialSend connects to the server, says EHLO, and starts TLS and
// authenticates if asked to.
func dialSend(ctx context.Context, o sendOptions) (_ *smtp.Client, err error) {
	cl, err := smtp.Dial(ctx, o.server, smtp.ClientOptions{LocalName: o.helo, Timeout: o.timeout})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	if o.startTLS {
		if err := cl.StartTLS(ctx, &tls.Config{InsecureSkipVerify: o.insecure}); err != nil {
			return nil, err
		}
	}
	if o.auth != "" {
		user, pass, ok := strings.Cut(o.auth, ":")
		if !ok {
			return nil, errors.New("--auth: want user:password")
		}
		if err := cl.Auth(ctx, sasl.NewPlainClient("", user, pass)); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// submitMessage sends msg over cl, names each refused recipient on stderr and
// prints the server's reply to the message on stdout.
func submitMessage(ctx context.Context, c *cli, cl *smtp.Client, env *envelope.Envelope, msg []byte) error {
	res, err := cl.Send(ctx, env, bytes.NewReader(msg))
	refused := 0
	for i, r := range res.Rcpts {
		if r.Code/100 != 2 && r.Code != 0 {
			refused++
			fmt.Fprintf(c.Stderr, "gateway send: %s: %s\n", env.Recipients[i].Address.Path(), r)
		}
	}
	if err != nil {
		return err
	}
	if res.Data.Code/100 == 2 {
		fmt.Fprintln(c.Stdout, res.Data.String())
	}
	cl.Quit(ctx)
	if refused > 0 {
		return fmt.Errorf("%d of %d recipients refused", refused, len(res.Rcpts))
	}
	return nil
}

// parseRecipients parses addrs into recipients; an error names flag, the
// flag they came from.
func parseRecipients(flag string, addrs []string) ([]envelope.Recipient, error) {
	var rcpts []envelope.Recipient
	for _, s := range addrs {
		a, err := envelope.ParseAddress(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		rcpts = append(rcpts, envelope.Recipient{Address: a})
	}
	return rcpts, nil
}

// hasHeader reports whether msg starts with a header field ("Name: value"):
// a field name of printable ASCII other than ":", then ":".
func hasHeader(msg []byte) bool {
	for i, b := range msg {
		switch {
		case b == ':':
			return i > 0
		case b < 33 || b > 126:
			return false
		}
	}
	return false
}

// composeMessage puts a header block around a plain text.
func composeMessage(env *envelope.Envelope, to []string, subject, helo string, text []byte, now time.Time) []byte {
	if subject == "" {
		subject = "(no subject)"
	}
	from := env.Sender.String()
	if from == "" {
		from = "MAILER-DAEMON"
	}
	domain := env.Sender.Domain
	if domain == "" {
		domain = helo
	}
	var id [12]byte
	rand.Read(id[:])
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\n", from)
	fmt.Fprintf(&b, "To: %s\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: %s\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\n", hex.EncodeToString(id[:]), domain)
	if !isASCII(string(text)) {
		b.WriteString("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n")
	}
	b.WriteString("\n")
	b.Write(text)
	return b.Bytes()
}

// toCRLF makes every line end (CRLF, a bare LF or a bare CR) a CRLF and
// ends the message with one.
func toCRLF(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/32+2)
	for i := 0; i < len(msg); i++ {
		switch b := msg[i]; b {
		case '\r':
			if i+1 < len(msg) && msg[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b)
		}
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
