package delivery

// This file is the Maildir transport: the Transport face of core/maildir.

import (
	"context"
	"errors"
	"sync"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/maildir"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/sdk"
)

// MaildirTransport delivers each recipient into its Maildir under
// Route.Path (Root/<domain>/<local>, see maildir.Writer), reading the
// message afresh from Job.Open for each. It is safe for concurrent use: it
// keeps one maildir.Writer per root, so unique file names stay unique
// across jobs.
//
// Results: Delivered 250 2.0.0 with "delivered to <file>" in Text; a
// recipient that names no safe mailbox (maildir.ErrBadMailbox) is Permanent 550
// 5.1.1; any other failure (spool, disk, ctx done) is Temporary 451 4.3.0,
// and so is a route without a Path.
type MaildirTransport struct {
	hostname string

	mu    sync.Mutex
	roots map[string]*maildir.Writer
}

// NewMaildirTransport returns a Maildir transport; hostname goes into the
// unique file names ("" = os.Hostname()).
func NewMaildirTransport(hostname string) *MaildirTransport {
	return &MaildirTransport{hostname: hostname, roots: map[string]*maildir.Writer{}}
}

// writer returns the maildir.Writer for root, made on first use.
func (t *MaildirTransport) writer(root string) *maildir.Writer {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.roots[root]
	if m == nil {
		m = &maildir.Writer{Root: root, Hostname: t.hostname}
		t.roots[root] = m
	}
	return m
}

// Deliver implements Transport. Recipients that map to one mailbox (the
// Maildir path folds case, so alice@example.test and Alice@Example.TEST are
// one) get one file, written for the first of them, and all get its
// result: a message reaches each mailbox once, as Postfix's duplicate
// elimination ensures.
func (t *MaildirTransport) Deliver(ctx context.Context, job *Job) []Result {
	if job.Route.Path == "" {
		return allResults(job, localResult(Temporary, 451, 4, 3, 0, "maildir route without a path"))
	}
	m := t.writer(job.Route.Path)
	out := make([]Result, len(job.Recipients))
	byMailbox := make(map[string]Result, len(job.Recipients))
	for i, rcpt := range job.Recipients {
		dir, err := m.Path(rcpt.Address)
		if err != nil {
			out[i] = maildirFailure(err)
			continue
		}
		res, done := byMailbox[dir]
		if !done {
			res = t.deliverOne(ctx, m, job, rcpt.Address)
			byMailbox[dir] = res
		}
		out[i] = res
	}
	return out
}

func (t *MaildirTransport) deliverOne(ctx context.Context, m *maildir.Writer, job *Job, rcpt envelope.Address) Result {
	body, err := job.Open()
	if err != nil {
		return localResult(Temporary, 451, 4, 3, 0, "reading the message from the spool: "+resultText(err))
	}
	defer body.Close()
	path, err := m.Deliver(ctx, job.Envelope.Sender, rcpt, body)
	if err != nil {
		return maildirFailure(err)
	}
	return Result{Class: Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: message.OneLine("delivered to " + path)}
}

// maildirFailure is the result of a failed Maildir delivery: permanent
// 5.1.1 for a recipient that names no safe mailbox, else temporary.
func maildirFailure(err error) Result {
	if errors.Is(err, maildir.ErrBadMailbox) {
		return localResult(Permanent, 550, 5, 1, 1, resultText(err))
	}
	return localResult(Temporary, 451, 4, 3, 0, resultText(err))
}

var _ Transport = (*MaildirTransport)(nil)
