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
	fs := newFlags(c, "send", "--from ADDR --to ADDR[,ADDR...] [flags] [FILE|-]")
	server := fs.String("server", "127.0.0.1:2525", "SMTP server, host:port")
	from := fs.String("from", "", `envelope sender ("<>" for the null sender)`)
	var to addrList
	fs.Var(&to, "to", "recipient; a comma-separated list, repeatable")
	subject := fs.String("subject", "", `Subject when the headers are composed (default "(no subject)")`)
	startTLS := fs.Bool("starttls", false, "require STARTTLS")
	insecure := fs.Bool("insecure-tls", false, "do not verify the server certificate")
	auth := fs.String("auth", "", "authenticate with AUTH PLAIN as user:password")
	helo := fs.String("helo", "localhost", "EHLO name")
	timeout := fs.Duration("timeout", time.Minute, "timeout of each SMTP command")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || len(to) == 0 || fs.NArg() > 1 {
		fs.Usage()
		return errUsage
	}

	env := &envelope.Envelope{}
	if *from != "<>" {
		a, err := envelope.ParseAddress(*from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		env.Sender = a
	}
	rcpts, err := parseRecipients("--to", to)
	if err != nil {
		return err
	}
	env.Recipients = rcpts
	env.SMTPUTF8 = !isASCII(*from) || !isASCII(strings.Join(to, ""))

	var in io.Reader = c.Stdin
	if name := fs.Arg(0); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	text, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	msg := text
	if !hasHeader(text) {
		msg = composeMessage(env, to, *subject, *helo, text, time.Now())
	}
	msg = toCRLF(msg)
	if !isASCII(string(msg)) {
		env.Body = envelope.Body8BitMIME
	}
	env.Size = int64(len(msg))

	cl, err := smtp.Dial(ctx, *server, smtp.ClientOptions{LocalName: *helo, Timeout: *timeout})
	if err != nil {
		return err
	}
	defer cl.Close()
	if *startTLS {
		if err := cl.StartTLS(ctx, &tls.Config{InsecureSkipVerify: *insecure}); err != nil {
			return err
		}
	}
	if *auth != "" {
		user, pass, ok := strings.Cut(*auth, ":")
		if !ok {
			return errors.New("--auth: want user:password")
		}
		if err := cl.Auth(ctx, sasl.NewPlainClient("", user, pass)); err != nil {
			return err
		}
	}
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
