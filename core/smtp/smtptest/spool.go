package smtptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
)

// Message is a message a MemorySpool committed.
type Message struct {
	ID       string
	Envelope envelope.Envelope
	Header   []byte // what the server prepended (Received, hook fields)
	Body     []byte // the content as received
}

// Data returns the stored message: Header then Body.
func (m Message) Data() []byte { return append(slices.Clip(m.Header), m.Body...) }

// MemorySpool is an smtp.Spool that keeps committed messages in memory.
// The zero value is ready to use. The error fields make operations fail;
// set them before the server uses the spool.
type MemorySpool struct {
	CreateErr error // Create fails with it
	WriteErr  error // every Write fails with it
	CommitErr error // Commit fails with it

	mu      sync.Mutex
	n       int
	msgs    []Message
	aborted int
}

// Create implements smtp.Spool.
func (s *MemorySpool) Create(ctx context.Context) (smtp.Draft, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.CreateErr != nil {
		return nil, s.CreateErr
	}
	s.mu.Lock()
	s.n++
	id := fmt.Sprintf("M%04d", s.n)
	s.mu.Unlock()
	return &memDraft{s: s, id: id}, nil
}

// Messages returns the committed messages in commit order.
func (s *MemorySpool) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// Aborted returns how many drafts were aborted without a commit.
func (s *MemorySpool) Aborted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

type memDraft struct {
	s    *MemorySpool
	id   string
	buf  bytes.Buffer
	done bool
}

func (d *memDraft) ID() string { return d.id }

func (d *memDraft) Write(p []byte) (int, error) {
	if d.done {
		return 0, errors.New("smtptest: write after commit or abort")
	}
	if d.s.WriteErr != nil {
		return 0, d.s.WriteErr
	}
	return d.buf.Write(p)
}

func (d *memDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	if d.done {
		return errors.New("smtptest: commit after commit or abort")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.s.CommitErr != nil {
		return d.s.CommitErr
	}
	d.done = true
	e := *env
	e.Recipients = slices.Clone(env.Recipients)
	d.s.mu.Lock()
	d.s.msgs = append(d.s.msgs, Message{ID: d.id, Envelope: e, Header: bytes.Clone(header), Body: bytes.Clone(d.buf.Bytes())})
	d.s.mu.Unlock()
	return nil
}

// Open implements smtp.Draft: the content written so far; the reader is
// an io.Seeker too.
func (d *memDraft) Open() (io.ReadCloser, error) {
	if d.done {
		return nil, errors.New("smtptest: open after commit or abort")
	}
	return readSeekNopCloser{bytes.NewReader(d.buf.Bytes())}, nil
}

type readSeekNopCloser struct{ io.ReadSeeker }

func (readSeekNopCloser) Close() error { return nil }

func (d *memDraft) Abort() error {
	if d.done {
		return nil
	}
	d.done = true
	d.s.mu.Lock()
	d.s.aborted++
	d.s.mu.Unlock()
	return nil
}

// DiscardSpool is an smtp.Spool that counts messages and throws them
// away, for benchmarks.
type DiscardSpool struct {
	created   atomic.Int64
	committed atomic.Int64
	bytes     atomic.Int64
}

// Create implements smtp.Spool.
func (s *DiscardSpool) Create(ctx context.Context) (smtp.Draft, error) {
	return &discardDraft{s: s, id: strconv.FormatInt(s.created.Add(1), 36)}, nil
}

// Committed returns how many messages were committed and their total size.
func (s *DiscardSpool) Committed() (messages, bytes int64) { return s.committed.Load(), s.bytes.Load() }

type discardDraft struct {
	s  *DiscardSpool
	id string
	n  int64
}

func (d *discardDraft) ID() string { return d.id }
func (d *discardDraft) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	return len(p), nil
}
func (d *discardDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	d.s.committed.Add(1)
	d.s.bytes.Add(d.n + int64(len(header)))
	return nil
}
func (d *discardDraft) Abort() error { return nil }

// Open implements smtp.Draft: a DiscardSpool keeps no content.
func (d *discardDraft) Open() (io.ReadCloser, error) {
	return nil, errors.New("smtptest: a discard spool keeps no content")
}

var (
	_ smtp.Spool = (*MemorySpool)(nil)
	_ smtp.Spool = (*DiscardSpool)(nil)
)
