package cluster

// The replicated queue: one JetStream stream, QueueStream, in which every
// message a node's spool holds is one subject, gwq.<node>.<id> (the node
// as base64url, like a key), holding its copy:
//
//	the body (header and content) in parts that fit the servers'
//	  max_payload (at most chunkSize bytes), each with Gw-Part: body and
//	  Gw-Offset: where in the body it starts
//	then the record as spool.db stores it, with Gw-Part: record and
//	  Gw-Size: the body's length
//
// or, when the record and the body fit in one part (most mail), one
// message with Gw-Part: whole and Gw-Record: the record's length, holding
// the record and then the body. A copy in parts counts once its record
// is there and its parts, each where its offset says, add up to Gw-Size:
// the record is published last, on the same connection and without the
// client's retries (which could send a part again after later ones), so
// that it is never there without the body before it. A newer record, sent when a recipient's state becomes
// final (Update), goes to gws.<node>.<id>, as a rollup that replaces the
// one before: Copies reads those first and hands out the newest record
// with the body. When the message leaves the spool, both its subjects are
// purged (remove.go). The stream keeps everything else for ever (no
// limits, DiscardNew): a copy is only ever removed on purpose.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/mailgate/gateway/core/queue"
)

// QueueStream is the stream of the replicated queue.
const QueueStream = "GATEWAY_QUEUE"

const (
	copySubjects  = "gwq.>"
	stateSubjects = "gws.>"
	hdrPart       = "Gw-Part"
	hdrSize       = "Gw-Size"
	hdrOffset     = "Gw-Offset"
	hdrRecord     = "Gw-Record"
	partBody      = "body"
	partRecord    = "record"
	partState     = "state"
	partWhole     = "whole"
	// chunkSize bounds one part of a body: under NATS's default
	// max_payload of 1 MiB, with room for the headers.
	chunkSize = 512 << 10
)

// Replica is this node's copy of its spool on the QueueStream: a
// queue.Replica. It does not own the Conn.
type Replica struct {
	c      *Conn
	prefix string // gwq.<node>.
	states string // gws.<node>.
	chunk  int    // the largest body part
	stats  *ReplicaStats
	rm     *remover
	budget *semaphore.Weighted // copyBudget: bytes of parts in flight
}

// ReplicaStats count a node's copies since start, for the metrics.
type ReplicaStats struct {
	Copies   atomic.Int64 // copies acknowledged
	Failures atomic.Int64 // copies not acknowledged (their message was refused)
	States   atomic.Int64 // newer records sent (Update)
	// WaitNanos is the time the acknowledged copies' Commits waited for
	// their acknowledgements after publishing them, before the local
	// commit: the replication's added latency.
	WaitNanos atomic.Int64
}

var _ queue.Replica = (*Replica)(nil)

// OpenReplica opens the queue's stream, or creates it, with replicas
// copies, and returns the copy of node's spool on it.
func (c *Conn) OpenReplica(ctx context.Context, node string, replicas int) (*Replica, error) {
	cfg := queueStreamConfig(replicas)
	err := c.whileForming(ctx, fmt.Sprintf("stream %s (replicas %d)", cfg.Name, cfg.Replicas), func(ctx context.Context) error {
		info, err := c.js.Stream(ctx, cfg.Name)
		if err == nil && info.CachedInfo().Config.Replicas > cfg.Replicas {
			// Another node asked for more copies: one node's
			// configuration must not take them from every node's mail.
			c.log.Warn("cluster: the queue's stream keeps its replicas, more than this node's replicas",
				"stream", cfg.Name, "stream_replicas", info.CachedInfo().Config.Replicas, "replicas", cfg.Replicas)
			cfg.Replicas = info.CachedInfo().Config.Replicas
		}
		st, err := c.js.CreateOrUpdateStream(ctx, cfg)
		if err == nil {
			err = streamLed(ctx, st)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.replicaOf(node), nil
}

// errNoLeader: a stream just created has no leader yet, and a copy
// published to it would fail (a node's first mail answered 451).
var errNoLeader = fmt.Errorf("the stream has no leader yet: %w", context.DeadlineExceeded)

// streamLed returns once st has a leader (a stream of one replica has no
// cluster to report), asking every 50 ms, or errNoLeader when ctx ends,
// which whileForming takes for a stream still forming.
func streamLed(ctx context.Context, st jetstream.Stream) error {
	for {
		info, err := st.Info(ctx)
		switch {
		case err != nil:
			return err
		case info.Cluster == nil || info.Cluster.Leader != "":
			return nil
		}
		select {
		case <-ctx.Done():
			return errNoLeader
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replicaOf is node's Replica on the stream, with its removal goroutine.
func (c *Conn) replicaOf(node string) *Replica {
	// Room for the headers under max_payload; at least 1 KiB.
	chunk := min(chunkSize, max(int(c.nc.MaxPayload())-4<<10, 1<<10))
	return &Replica{c: c, prefix: nodePrefix(node), states: statePrefix(node), chunk: chunk,
		stats: &ReplicaStats{}, rm: newRemover(c, "*."+nodeToken(node)+"."),
		budget: semaphore.NewWeighted(copyBudget)}
}

// Close stops the replica's removals, after giving those pending a
// moment; a copy whose removal did not go stays (a takeover would deliver
// its message again).
func (r *Replica) Close() {
	if left := r.rm.close(); left > 0 {
		r.c.log.Warn("cluster: copies of messages that left the queue were not removed", "count", left)
	}
}

// Stats are the replica's counters.
func (r *Replica) Stats() *ReplicaStats { return r.stats }

// Pending is how many parts of copies this connection has published and
// the servers not yet acknowledged.
func (c *Conn) Pending() int { return c.js.PublishAsyncPending() }

func queueStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        QueueStream,
		Description: "gateway: the replicated copy of every node's queue",
		Subjects:    []string{copySubjects, stateSubjects},
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		AllowRollup: true,
		AllowMsgTTL: true,
	}
}

// nodePrefix is the subjects' prefix of node's copies, and statePrefix
// of their newer records.
func nodePrefix(node string) string  { return "gwq." + nodeToken(node) + "." }
func statePrefix(node string) string { return "gws." + nodeToken(node) + "." }

// nodeToken is node as one token of a subject.
func nodeToken(node string) string { return base64.RawURLEncoding.EncodeToString([]byte(node)) }

// Put publishes the copy of m (body first, the record last), waiting
// only while its parts in flight are over the budget (replica_budget.go);
// the wait it returns waits for every part's acknowledgement, all bounded
// by ctx, and fails once the servers acknowledged none of the node's
// publishes for the connection's timeout (progress.go).
func (r *Replica) Put(ctx context.Context, m *queue.Message, rec []byte, body io.Reader) func(context.Context) error {
	p := &copyParts{r: r, start: time.Now()}
	fail := func(err error) func(context.Context) error {
		p.releaseAll()
		r.stats.Failures.Add(1)
		return func(context.Context) error { return fmt.Errorf("cluster: copy of %s: %w", m.ID, explain(err)) }
	}
	if err := r.c.ready(); err != nil {
		return fail(err)
	}
	// No timeout of its own: a large copy waits as long as the servers
	// make progress, and a copy behind the others' parts too.
	if err := r.putParts(ctx, p, r.prefix+m.ID, rec, body); err != nil {
		r.c.noteWrite(ctx, err)
		return fail(err)
	}
	return func(ctx context.Context) error {
		start := time.Now()
		err := p.settleAll(ctx)
		r.c.noteWrite(ctx, err)
		if err != nil {
			p.releaseAll()
			r.stats.Failures.Add(1)
			return fmt.Errorf("cluster: copy of %s: %w", m.ID, err)
		}
		r.stats.Copies.Add(1)
		r.stats.WaitNanos.Add(int64(time.Since(start)))
		return nil
	}
}

// putParts publishes the copy's parts on subject: the whole copy in one
// message when the record and the body fit in one part (most mail),
// else the body's parts and then the record.
func (r *Replica) putParts(ctx context.Context, p *copyParts, subject string, rec []byte, body io.Reader) error {
	size := 0
	for {
		if err := p.reserve(ctx, int64(r.chunk)); err != nil {
			return err
		}
		// Each part is its own buffer (the client keeps it until its
		// acknowledgement), as large as what there is: most bodies are
		// a few KB.
		part, err := io.ReadAll(io.LimitReader(body, int64(r.chunk)))
		if err != nil {
			return err
		}
		if size == 0 && len(part) < r.chunk && len(rec)+len(part) <= r.chunk {
			whole := append(append(make([]byte, 0, len(rec)+len(part)), rec...), part...)
			ack, err := r.publish(subject, partWhole, whole, nats.Header{hdrRecord: []string{strconv.Itoa(len(rec))}})
			if err != nil {
				return err
			}
			p.add(ack, int64(len(whole)))
			return nil
		}
		if len(part) == 0 {
			p.unreserve()
			break
		}
		ack, err := r.publish(subject, partBody, part, nats.Header{hdrOffset: []string{strconv.Itoa(size)}})
		if err != nil {
			return err
		}
		p.add(ack, int64(len(part)))
		if size += len(part); len(part) < r.chunk {
			break
		}
	}
	if len(rec) > r.chunk {
		return fmt.Errorf("its record of %d bytes is over the servers' max_payload", len(rec))
	}
	ack, err := r.publish(subject, partRecord, rec, nats.Header{hdrSize: []string{strconv.Itoa(size)}})
	if err != nil {
		return err
	}
	p.add(ack, 0)
	return nil
}

// publish publishes one part of a copy, asynchronously.
func (r *Replica) publish(subject, part string, data []byte, h nats.Header) (jetstream.PubAckFuture, error) {
	if h == nil {
		h = nats.Header{}
	}
	h.Set(hdrPart, part)
	m := &nats.Msg{Subject: subject, Header: h, Data: data}
	// No retry by the client: it would send the part again after the
	// parts published since (see the file's comment).
	r.c.publishing.Lock()
	ack, err := r.c.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
	r.c.publishing.Unlock()
	if err != nil {
		r.c.writeTimedOut(err)
	} else {
		// Written to the connection: the client keeps m until its
		// answer (up to publishCeiling) for retries, which there are
		// none of, so it need not keep the data.
		m.Data = nil
	}
	return ack, err
}

// Update sends rec, the newer record of m, whose copy Put wrote, without
// waiting for its acknowledgement (see queue.Replica): it replaces the
// record the copy had, or the last update's. With NATS away it is lost,
// and a takeover may deliver to the recipients it made final again.
func (r *Replica) Update(m *queue.Message, rec []byte) {
	if r.c.ready() != nil || len(rec) > r.chunk {
		return
	}
	h := nats.Header{jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}}
	if f, err := r.publish(r.states+m.ID, partState, rec, h); err == nil {
		r.rm.stateSent(m.ID, f)
		r.stats.States.Add(1)
	}
}

// Remove has the copy of message id purged, without waiting (remove.go).
func (r *Replica) Remove(id string) { r.rm.add(id) }

// Copy is one message's copy as the stream holds it.
type Copy struct {
	ID     string
	Record []byte // as spool.db stored it
	Body   []byte // header and content
}

// Copies calls fn with every complete copy of node's queue on the stream,
// in the order their records were published, until fn returns false:
// what a takeover imports, and what `queue ls --cluster` lists. A copy's
// Record is the newest one its message sent (Update). It reads the stream
// message by message from its leader (readSubjects): first the newer
// records, then the copies.
func (c *Conn) Copies(ctx context.Context, node string, fn func(Copy) bool) error {
	var st jetstream.Stream
	err := c.whileForming(ctx, "read the copies of "+node, func(ctx context.Context) (err error) {
		st, err = c.js.Stream(ctx, QueueStream)
		return err
	})
	if err != nil {
		return err
	}
	states := map[string][]byte{}
	prefix := statePrefix(node)
	err = c.readSubjects(ctx, st, prefix, func(msg *jetstream.RawStreamMsg) bool {
		states[msg.Subject[len(prefix):]] = msg.Data // the last is the newest
		return true
	})
	if err != nil {
		return err
	}
	bodies := map[string][]byte{}
	prefix = nodePrefix(node)
	return c.readSubjects(ctx, st, prefix, func(msg *jetstream.RawStreamMsg) bool {
		cp, done := assemble(bodies, msg.Subject[len(prefix):], msg.Header, msg.Data)
		if !done {
			return true
		}
		if rec, ok := states[cp.ID]; ok {
			cp.Record = rec
		}
		return fn(cp)
	})
}

// readSubjects calls fn with every message of st under prefix, in order,
// until fn returns false. It asks the stream's leader for each message in
// turn (the next one under prefix from a sequence on), each within the
// connection's timeout: the leader has every message it acknowledged. A
// consumer (a batch per request, 20 times faster) was tried: it may be
// served by a server that has not yet stored the last acknowledged
// messages, and a CI run read one copy of two just acknowledged.
func (c *Conn) readSubjects(ctx context.Context, st jetstream.Stream, prefix string, fn func(*jetstream.RawStreamMsg) bool) error {
	for seq := uint64(1); ; {
		var msg *jetstream.RawStreamMsg
		err := c.whileForming(ctx, "read the copies under "+prefix, func(ctx context.Context) (err error) {
			msg, err = st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(prefix+">"))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		seq = msg.Sequence + 1
		if !fn(msg) {
			return nil
		}
	}
}

// assemble adds a message (h, data), a part of id's copy, to the bodies
// read so far, and returns the copy when it completes it. A part not
// where its offset says, or a body not of the record's size, spoils the
// copy: it is not one that a Commit waited for.
func assemble(bodies map[string][]byte, id string, h nats.Header, data []byte) (Copy, bool) {
	switch h.Get(hdrPart) {
	case partBody:
		body, seen := bodies[id]
		if h.Get(hdrOffset) != strconv.Itoa(len(body)) || seen && body == nil {
			bodies[id] = nil // spoilt until its record or removal
			return Copy{}, false
		}
		bodies[id] = append(body, data...)
	case partRecord:
		body := bodies[id]
		delete(bodies, id)
		if strconv.Itoa(len(body)) != h.Get(hdrSize) {
			return Copy{}, false
		}
		return Copy{ID: id, Record: data, Body: body}, true
	case partWhole:
		delete(bodies, id)
		n, err := strconv.Atoi(h.Get(hdrRecord))
		if err != nil || n < 0 || n > len(data) {
			return Copy{}, false
		}
		return Copy{ID: id, Record: data[:n:n], Body: data[n:]}, true
	default: // a part this version does not know
		delete(bodies, id)
	}
	return Copy{}, false
}

// ReplicaOf is the copy of another node's queue, for a takeover to remove
// the copies it has imported; the caller closes it.
func (c *Conn) ReplicaOf(node string) *Replica { return c.replicaOf(node) }

// LiveIDs returns the IDs of node's messages that have a copy on the
// stream, from one request (the stream's subjects under node, which the
// client pages through): what a returning node keeps of its spool.
func (c *Conn) LiveIDs(ctx context.Context, node string) (map[string]bool, error) {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	prefix := nodePrefix(node)
	var info *jetstream.StreamInfo
	err := c.whileForming(ctx, "list the copies of "+node, func(ctx context.Context) error {
		st, err := c.js.Stream(ctx, QueueStream)
		if err == nil {
			info, err = st.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	live := make(map[string]bool, len(info.State.Subjects))
	for subject := range info.State.Subjects {
		live[strings.TrimPrefix(subject, prefix)] = true
	}
	return live, nil
}
