package main

// sendmail's default mode: one message from stdin into the pickup
// directory.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/pickup"
	"github.com/mailgate/gateway/sdk"
)

// sendmailEnqueue reads one message from c.Stdin, completes its envelope
// and header as the options say, and leaves it in the pickup directory.
func sendmailEnqueue(c *cli, cfg *config.Config, o *sendmailOptions) error {
	raw, err := readSendmailInput(c.Stdin, o.dotEnds, cfg.Listeners[0].MaxMessageSize)
	if err != nil {
		return exit(exDataErr, "%v", err)
	}
	local := localSender{hostname: cfg.Hostname}
	local.login, local.loginErr = loginName()
	sender, err := local.envelopeSender(o)
	if err != nil {
		return err
	}
	rcpts, err := o.envelopeRecipients(raw, cfg.Hostname)
	if err != nil {
		return err
	}
	msg, err := local.completeMessage(raw, o, sender)
	if err != nil {
		return exit(exSoftware, "%v", err)
	}
	if limit := cfg.Listeners[0].MaxMessageSize; limit > 0 && int64(len(msg)) > limit {
		return exit(exDataErr, "the message is larger than max_message_size (%d bytes)", limit)
	}
	env := &pickup.Envelope{Sender: sender, Ret: o.ret, EnvID: o.envID, Body: o.body, UID: os.Getuid()}
	for _, a := range rcpts {
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a, Notify: o.notify})
		env.SMTPUTF8 = env.SMTPUTF8 || !isASCII(a.String())
	}
	env.SMTPUTF8 = env.SMTPUTF8 || !isASCII(sender.String())
	if env.Body == "" && !isASCII(string(msg)) {
		env.Body = envelope.Body8BitMIME
	}
	return dropMessage(gateway.PickupDir(cfg.DataDir), env, msg)
}

// readSendmailInput reads the message as sendmail does: lines end with LF
// (a CR before it is dropped), leading "From " lines (mbox separators)
// are skipped, and a line with only "." ends the input when dotEnds. It
// returns the message with CRLF line endings, and reads no more than
// limit bytes of it (0: no limit).
//
// The server counts max_message_size in the message as it is submitted:
// CRLF line ends (RFC 1870), and the fields sendmail adds. sendmailEnqueue
// compares the finished message; this only bounds what is read.
func readSendmailInput(r io.Reader, dotEnds bool, limit int64) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: 1 << 62}
	if limit > 0 {
		lr.N = limit + 1
	}
	br := bufio.NewReader(lr)
	var out bytes.Buffer
	start := true
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			text := bytes.TrimRight(bytes.TrimSuffix(line, []byte("\n")), "\r")
			switch {
			case start && bytes.HasPrefix(bytes.TrimLeft(text, ">"), []byte("From ")):
				continue
			case dotEnds && string(text) == ".":
				return out.Bytes(), nil
			}
			start = false
			out.Write(text)
			out.WriteString("\r\n")
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the message: %w", err)
		}
	}
	if limit > 0 && lr.N == 0 {
		return nil, fmt.Errorf("the message is larger than max_message_size (%d bytes)", limit)
	}
	return out.Bytes(), nil
}

// envelopeRecipients are the recipients on the command line and, with
// -t, those of the header's To, Cc and Bcc (or of its Resent- fields, if
// it has any), each once.
func (o *sendmailOptions) envelopeRecipients(raw []byte, hostname string) ([]envelope.Address, error) {
	var out []envelope.Address
	for _, arg := range o.recipients {
		as, err := parseAddressList(arg, hostname)
		if err != nil {
			return nil, exit(exUsage, "recipient %q: %v", arg, err)
		}
		out = append(out, as...)
	}
	if o.extract {
		fields, _, err := message.ParseHeader(bytes.NewReader(raw))
		if err != nil {
			return nil, exit(exDataErr, "reading the header: %v", err)
		}
		for _, f := range recipientFields(fields) {
			as, err := parseAddressList(f.Value, hostname)
			if err != nil {
				return nil, exit(exDataErr, "unable to extract recipients: %s: %v", f.Name, err)
			}
			out = append(out, as...)
		}
	}
	out = uniqueAddresses(out)
	if len(out) == 0 {
		if o.extract {
			return nil, exit(exUsage, "no recipient addresses found in message header")
		}
		return nil, exit(exUsage, "recipient addresses must be specified on the command line or via the -t option")
	}
	if len(out) > pickup.MaxRecipients {
		return nil, exit(exUsage, "more than %d recipients", pickup.MaxRecipients)
	}
	return out, nil
}

// recipientFields are the header fields -t takes recipients from: the
// Resent- ones when there are any (the message is being resent), else To,
// Cc and Bcc.
func recipientFields(fields []sdk.HeaderField) []sdk.HeaderField {
	var plain, resent []sdk.HeaderField
	for _, f := range fields {
		switch strings.ToLower(f.Name) {
		case "to", "cc", "bcc":
			plain = append(plain, f)
		case "resent-to", "resent-cc", "resent-bcc":
			resent = append(resent, f)
		}
	}
	if len(resent) > 0 {
		return resent
	}
	return plain
}

// parseAddressList parses a header's or an argument's address list
// ("a@b, Bob <c@d>", groups too); a bare login name, as cron writes
// "root", is a mailbox of this host.
func parseAddressList(s, hostname string) ([]envelope.Address, error) {
	list, err := mail.ParseAddressList(s)
	if err != nil {
		list = nil
		for _, item := range splitAddressList(s) {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			a, err := mail.ParseAddress(item)
			if err != nil && !strings.ContainsAny(item, "@<>\" ") {
				a, err = &mail.Address{Address: item + "@" + hostname}, nil
			}
			if err != nil {
				return nil, err
			}
			list = append(list, a)
		}
	}
	out := make([]envelope.Address, 0, len(list))
	for _, a := range list {
		ea, err := mailbox(a.Address)
		if err != nil {
			return nil, err
		}
		out = append(out, ea)
	}
	return out, nil
}

// splitAddressList splits an address list at its commas, but not at those
// inside a quoted string, an angle-bracketed address or a comment:
// `root, "Doe, John" <j@x>` is two items.
func splitAddressList(s string) []string {
	var items []string
	quoted, escaped := false, false
	angle, comment, start := 0, 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\' && (quoted || comment > 0):
			escaped = true
		case c == '"' && comment == 0:
			quoted = !quoted
		case quoted:
		case c == '(':
			comment++
		case c == ')' && comment > 0:
			comment--
		case comment > 0:
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == ',' && angle == 0:
			items = append(items, s[start:i])
			start = i + 1
		}
	}
	return append(items, s[start:])
}

// mailbox converts net/mail's unquoted addr-spec to an envelope address,
// quoting the local part again when it needs it ("x y"@b).
func mailbox(s string) (envelope.Address, error) {
	a, err := envelope.ParseAddress(s)
	if err == nil {
		return a, nil
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return envelope.Address{}, err
	}
	local := strings.ReplaceAll(strings.ReplaceAll(s[:at], `\`, `\\`), `"`, `\"`)
	if a, qerr := envelope.ParseAddress(`"` + local + `"` + s[at:]); qerr == nil {
		return a, nil
	}
	return envelope.Address{}, err
}

// uniqueAddresses keeps the first of each mailbox.
func uniqueAddresses(as []envelope.Address) []envelope.Address {
	seen := make(map[string]bool, len(as))
	out := as[:0]
	for _, a := range as {
		key := a.Local + "@" + a.DomainFold()
		if !seen[key] {
			seen[key] = true
			out = append(out, a)
		}
	}
	return out
}

// localSender is the local user who runs sendmail, on this host.
type localSender struct {
	hostname string
	login    string
	loginErr error
}

// loginName is the user's login name.
func loginName() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("no login name found for user ID %d: %w", os.Getuid(), err)
	}
	return u.Username, nil
}

// envelopeSender is -f's address ("<>" or "" for the null sender), or the
// login name at this host.
func (l *localSender) envelopeSender(o *sendmailOptions) (envelope.Address, error) {
	if !o.senderSet {
		if l.loginErr != nil {
			return envelope.Address{}, exit(exOSErr, "%v", l.loginErr)
		}
		return mailbox(l.login + "@" + l.hostname)
	}
	s := strings.TrimSpace(o.sender)
	if s == "" || s == "<>" {
		return envelope.Address{}, nil
	}
	as, err := parseAddressList(s, l.hostname)
	if err != nil || len(as) != 1 {
		return envelope.Address{}, exit(exUsage, "-f %q is not one address", o.sender)
	}
	return as[0], nil
}

// completeMessage adds From: (with -F's name), Date: and Message-ID: when
// the header has none, and with -t removes Bcc: (and Resent-Bcc:).
func (l *localSender) completeMessage(raw []byte, o *sendmailOptions, sender envelope.Address) ([]byte, error) {
	fields, _, err := message.ParseHeader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	has := map[string]bool{}
	for _, f := range fields {
		has[strings.ToLower(f.Name)] = true
	}
	var add []sdk.HeaderField
	if !has["from"] {
		add = append(add, sdk.HeaderField{Name: "From", Value: l.from(o, sender)})
	}
	if !has["date"] {
		add = append(add, sdk.HeaderField{Name: "Date", Value: time.Now().Format(time.RFC1123Z)})
	}
	if !has["message-id"] {
		var r [8]byte
		rand.Read(r[:])
		id := fmt.Sprintf("<%s.%s@%s>", time.Now().UTC().Format("20060102150405"), hex.EncodeToString(r[:]), l.hostname)
		add = append(add, sdk.HeaderField{Name: "Message-ID", Value: id})
	}
	var remove []string
	if o.extract {
		remove = []string{"Bcc", "Resent-Bcc"}
	}
	if len(add) == 0 && len(remove) == 0 {
		return raw, nil
	}
	var out bytes.Buffer
	if err := message.Rewrite(&out, bytes.NewReader(raw), add, remove); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// from is the From: field for a message without one: the sender (or the
// user, or MAILER-DAEMON, for the null sender) with -F's name, else $NAME, else the name
// in the password database.
func (l *localSender) from(o *sendmailOptions, sender envelope.Address) string {
	addr := sender.String()
	switch {
	case !sender.IsNull():
	case l.loginErr == nil:
		addr = l.login + "@" + l.hostname
	default:
		addr = "MAILER-DAEMON@" + l.hostname
	}
	name := o.fullName
	if name == "" {
		name = os.Getenv("NAME")
	}
	if name == "" {
		if u, err := user.Current(); err == nil {
			name, _, _ = strings.Cut(u.Name, ",") // the GECOS field's first part
		}
	}
	return (&mail.Address{Name: message.OneLine(name), Address: addr}).String()
}

// dropMessage writes the message into the pickup directory dir.
func dropMessage(dir string, env *pickup.Envelope, msg []byte) error {
	if err := preparePickup(dir); err != nil {
		return err
	}
	if _, err := pickup.Write(dir, env, bytes.NewReader(msg)); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return exit(exNoPerm, "%v", err)
		}
		return exit(exTempFail, "%v", err)
	}
	return nil
}

// preparePickup makes the pickup directory dir if the server never ran,
// but only when data_dir is this user's (or does not exist yet): the
// server refuses a pickup directory another user owns.
func preparePickup(dir string) error {
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return nil // there, or a problem Write reports
	}
	if st, err := os.Stat(filepath.Dir(dir)); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
			return exit(exCantCreat, "%s does not exist: start the gateway once, it makes it", dir)
		}
	}
	if err := pickup.Prepare(dir); err != nil {
		return exit(exCantCreat, "%v", err)
	}
	return nil
}
