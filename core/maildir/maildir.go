// Package maildir writes messages into Maildirs (qmail's maildir(5)):
// one file per message per recipient at Root/<domain>/<local>, written the
// qmail way so that a reader never sees a partial message and a crash
// never loses an acknowledged one. The delivery engine's Maildir transport
// (core/delivery) is its only user; it holds no state but a Writer's file
// name counter.
package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/message"
)

// ErrBadMailbox is wrapped by the errors of Writer.Path: the recipient
// cannot name a folder under Root (empty, or it would escape Root).
var ErrBadMailbox = errors.New("maildir: recipient names no safe maildir")

// Writer delivers into Maildirs under Root, one per recipient at
// Root/<domain>/<local>. Use it through a pointer and do not copy it: the
// counter that keeps file names unique lives in it.
//
// Files are written with LF line endings, the Maildir convention (qmail's
// maildir(5); what Postfix local(8) and Dovecot write by default): CRLF in
// the message becomes LF unless CRLF is set. Each file starts with
// "Return-Path: <sender>" (the envelope sender, <> for a bounce: RFC 5321
// §4.4, the final delivery keeps it) and a "Delivered-To: <local@domain>"
// line, as Postfix local(8) adds, so that a later forward of the message
// can detect a loop.
type Writer struct {
	// Root is the directory that holds every domain's mailboxes. Required.
	Root string
	// Hostname goes into the unique file names; "" = os.Hostname().
	Hostname string
	// Now is the clock for file names; nil = time.Now.
	Now func() time.Time
	// CRLF keeps the message's CRLF line endings instead of writing LF
	// (Dovecot's mail_save_crlf = yes).
	CRLF bool

	counter atomic.Uint64
}

// Path returns the Maildir folder for rcpt: Root/<domain>/<local>, the
// domain with its ASCII letters lower-cased and without a trailing dot,
// the local part lower-cased. An empty part, "." or
// "..", a path separator, a NUL or other control character is an error
// wrapping ErrBadMailbox, so the result never escapes Root.
func (m *Writer) Path(rcpt envelope.Address) (string, error) {
	if m.Root == "" {
		return "", errors.New("maildir: no root")
	}
	domain := envelope.FoldDomain(rcpt.Domain) // ASCII only, as everywhere domains are compared
	local := strings.ToLower(rcpt.Local)
	for _, part := range []struct{ what, name string }{{"domain", domain}, {"local part", local}} {
		if err := safeName(part.name); err != nil {
			return "", fmt.Errorf("maildir: mailbox of %q: %s %v: %w", rcpt.String(), part.what, err, ErrBadMailbox)
		}
	}
	return filepath.Join(m.Root, domain, local), nil
}

// safeName checks that name is one path element that stays where it is put.
func safeName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty")
	case name == "." || name == "..":
		return fmt.Errorf("is %q", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%q contains a path separator", name)
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%q contains a control character", name)
	case !filepath.IsLocal(name):
		return fmt.Errorf("%q is not a local file name", name)
	}
	return nil
}

// Deliver writes the message read from r for one recipient into the
// Maildir at Path(rcpt) and returns the path of the new file. The steps are
// the standard ones: create cur/, new/ and tmp/ as needed (mode 0700), write
// tmp/<unique>, fsync it, link it to new/<unique> (rename where links are
// not supported), remove the tmp/ name and fsync new/. On any error, or if
// ctx is done before the link, nothing is left in new/ or tmp/.
//
// Unique names are <unix seconds>.M<microseconds>P<pid>Q<counter>.<host>
// (the Dovecot form of qmail's names), with "/" and ":" in the host name
// written as \057 and \072.
func (m *Writer) Deliver(ctx context.Context, sender, rcpt envelope.Address, r io.Reader) (string, error) {
	dir, err := m.Path(rcpt)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("maildir: delivery to %s: %w", rcpt.String(), err)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return "", fmt.Errorf("maildir: %w", err)
		}
	}
	name, err := m.uniqueName()
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, "tmp", name)
	final := filepath.Join(dir, "new", name)
	if err := m.writeTmp(ctx, tmp, sender, rcpt, r); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("maildir: delivery to %s: %w", rcpt.String(), err)
	}
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, os.ErrExist) {
			os.Remove(tmp)
			return "", fmt.Errorf("maildir: %w", err)
		}
		// No hard links here (some network and FUSE file systems): rename.
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("maildir: %w", err)
		}
	} else if err := os.Remove(tmp); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	if err := syncDir(filepath.Join(dir, "new")); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	return final, nil
}

// writeTmp writes and fsyncs the tmp/ file.
func (m *Writer) writeTmp(ctx context.Context, path string, sender, rcpt envelope.Address, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	var w io.Writer = bw
	eol := "\n"
	lf := &lfWriter{w: bw}
	if m.CRLF {
		eol = "\r\n"
	} else {
		w = lf
	}
	_, err = io.WriteString(bw, "Return-Path: <"+message.OneLine(sender.String())+">"+eol+
		"Delivered-To: "+message.OneLine(rcpt.String())+eol)
	if err == nil {
		_, err = io.Copy(w, ctxReader{ctx: ctx, r: r})
	}
	if err == nil {
		err = lf.flush()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: delivery to %s: %w", rcpt.String(), err)
	}
	return nil
}

// uniqueName is the next unique file name.
func (m *Writer) uniqueName() (string, error) {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	host := m.Hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("maildir: host name: %w", err)
		}
		host = h
	}
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	t := now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", t.Unix(), t.Nanosecond()/1000, os.Getpid(), m.counter.Add(1), host), nil
}

// syncDir fsyncs a directory, making the names in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ctxReader fails reads once ctx is done, so a long copy stops.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// lfWriter turns CRLF into LF; a CR not followed by LF is kept. A CR at the
// end of one Write is held until the next byte is known; flush writes it.
type lfWriter struct {
	w   io.Writer
	cr  bool   // a CR is held back
	buf []byte // reused output buffer
}

func (l *lfWriter) Write(p []byte) (int, error) {
	out := l.buf[:0]
	for _, c := range p {
		if l.cr {
			l.cr = false
			if c != '\n' {
				out = append(out, '\r')
			}
		}
		if c == '\r' {
			l.cr = true
			continue
		}
		out = append(out, c)
	}
	l.buf = out
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (l *lfWriter) flush() error {
	if !l.cr {
		return nil
	}
	l.cr = false
	_, err := l.w.Write([]byte{'\r'})
	return err
}
