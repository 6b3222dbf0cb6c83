package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Replica is a copy of the spool's messages kept off this machine
// (core/cluster keeps one on a replicated NATS JetStream stream), so that
// another node can deliver what this one accepted if this one dies. With
// one (Options.Replica), Draft.Commit writes the copy and waits for its
// acknowledgement before it commits here: it returns nil only once both
// are done, and a message whose copy failed was never queued. A
// recipient's state that becomes final (Replace or Update) is sent on
// without waiting (Update), and a message that leaves the spool (Delete)
// leaves the copy too. A copy's record is the record as stored here, next
// attempt included; a takeover imports it due at once (Spool.Import).
type Replica interface {
	// Put starts writing the copy of message m: rec is its record as
	// spool.db stores it, body its header and content, read before Put
	// returns (ctx bounds that). wait waits for the copy to be
	// acknowledged.
	Put(ctx context.Context, m *Message, rec []byte, body io.Reader) (wait func(context.Context) error)
	// Update sends rec, the newer record of message m, whose copy Put
	// wrote, without waiting: the spool stored it because one of its
	// recipients was delivered or failed (or a hook added recipients, or
	// the operator held or released it, or its delay warning went), and a
	// takeover that reads it does not deliver to that recipient again.
	// An update lost costs a duplicate delivery after a takeover, never a
	// loss.
	Update(m *Message, rec []byte)
	// Remove removes the copy of message id, which left the spool
	// (delivered, bounced, removed by the operator), without waiting: a
	// copy removed late costs a duplicate delivery after a takeover,
	// never a loss.
	Remove(id string)
}

// ErrNotReplicated: Commit stored nothing because the replica did not
// acknowledge the copy (its servers are unreachable, or timed out).
var ErrNotReplicated = errors.New("queue: message not replicated")

// replicate writes the copy of m on the spool's replica, if it has one,
// and waits for it; a copy that fails is removed, and the error wraps
// ErrNotReplicated. For a spilled message the content is read from its
// body file, which finishFile has made final.
func (d *Draft) replicate(ctx context.Context, m *Message, rec, body []byte) error {
	s := d.s
	if s.replica == nil {
		return nil
	}
	var wait func(context.Context) error
	if !m.spilled {
		wait = s.replica.Put(ctx, m, rec, bytes.NewReader(body))
	} else {
		f, err := os.Open(filepath.Join(s.bodiesDir, d.id))
		if err != nil {
			return fmt.Errorf("queue: commit %s: %w", d.id, err)
		}
		wait = s.replica.Put(ctx, m, rec, io.MultiReader(bytes.NewReader(body), f))
		f.Close()
	}
	if err := wait(ctx); err != nil {
		s.replica.Remove(d.id) // the parts that did arrive
		return fmt.Errorf("queue: commit %s: %w: %w", d.id, ErrNotReplicated, err)
	}
	return nil
}

// copyNeeds reports whether m, the new state of old, changed what a copy
// must know for a takeover to do what this node would: a recipient made
// final (delivered or failed) or added by a hook, a hold or release by the
// operator, a delay warning sent; not a deferral.
func copyNeeds(old, m *Message) bool {
	if len(m.Recipients) != len(old.Recipients) || m.Held != old.Held || m.DelayWarned != old.DelayWarned {
		return true
	}
	for i, rs := range m.Recipients {
		if rs.Status.final() && !old.Recipients[i].Status.final() {
			return true
		}
	}
	return false
}

// updateReplica sends m's record b to the replica when its change calls for
// it (copyNeeds); the record is durable here already.
func (s *Spool) updateReplica(old, m *Message, b []byte) {
	if s.replica != nil && copyNeeds(old, m) {
		s.replica.Update(m, b)
	}
}

// Replicate writes the copy of message id, queued while the spool had no
// replica (before a node joined a cluster), and waits for it.
func (s *Spool) Replicate(ctx context.Context, id string) error {
	if s.replica == nil {
		return nil
	}
	m, err := s.Get(id)
	if err != nil {
		return err
	}
	rec, err := encodeMessage(m)
	if err != nil {
		return err
	}
	body, err := s.Body(id)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := s.replica.Put(ctx, m, rec, body)(ctx); err != nil {
		return fmt.Errorf("queue: replicate %s: %w: %w", id, ErrNotReplicated, err)
	}
	return nil
}

// Import queues a message another node had queued, as a takeover reads
// it from that node's copy: rec is its record as that node's spool stored
// it, body its header and content. It gets an ID of this spool's and
// keeps the rest: envelope, recipients' states, attempts and arrival (its
// expiry counts from there), delay warning and hold. The attempts are
// those of the copy's last update, which a plain deferral does not send
// (only final states, holds and delay warnings do): the retry backoff
// here may start over from fewer attempts than the other node made.
// It is due at once, not at the copy's next attempt: that was the other
// node's, set on what it knew of its destinations (one it found down
// parks mail for up to an hour behind a probe, and the copy of a message
// parked carries it), which this node does not know. A held message is
// due at once when the operator releases it. Like Commit, the message is
// durable here, and on the replica, when Import returns its ID.
func (s *Spool) Import(ctx context.Context, rec, body []byte) (string, error) {
	src, err := decodeMessage(rec)
	switch {
	case err != nil:
		return "", fmt.Errorf("queue: import: %w", err)
	case src.Version > recordVersion:
		return "", fmt.Errorf("queue: import %s: record version %d is newer than %d", src.ID, src.Version, recordVersion)
	case len(src.Envelope.Recipients) == 0:
		return "", fmt.Errorf("queue: import %s: no recipients", src.ID)
	}
	d, err := s.Create(ctx)
	if err != nil {
		return "", err
	}
	if _, err := d.Write(body); err != nil {
		d.Abort()
		return "", err
	}
	m := *src
	m.ID, m.Version, m.Size, m.spilled = d.id, recordVersion, int64(len(body)), d.w != nil
	m.NextAttempt = time.Time{}
	if err := d.commitMessage(ctx, &m, nil); err != nil {
		d.state = draftFailed
		d.Abort()
		return "", err
	}
	d.state = draftCommitted
	return d.id, nil
}

// DecodeRecord decodes a record as spool.db stores it, and as a replica's
// copy carries it (the cluster's listing of every node's copies).
func DecodeRecord(rec []byte) (*Message, error) { return decodeMessage(rec) }
