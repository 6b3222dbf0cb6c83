package cluster

// The shared key-value store: one JetStream key-value bucket, in which
// every key of the host services' store (core/hostsvc) is one subject,
// $KV.<bucket>.<base64url of the key>, holding one message (History 1):
//
//	8-byte big-endian expiry (Unix ns; 0 = never) + value
//
// as the spool's store keeps it (core/queue/kv.go). The expiry in the
// value is the truth, read against the caller's clock, to the nanosecond;
// the message also carries a JetStream per-message TTL (Nats-TTL, whole
// seconds, rounded up) so that the servers remove it once it has expired
// and no sweep is needed. Writes that depend on the current value (KVIncr)
// are compare-and-set on the subject's last sequence (the key's revision),
// retried on conflict, so an increment is atomic across nodes. Reads ask
// the stream's leader, not a replica, so a read sees every write that was
// acknowledged before it.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// The buckets of the hooks' shared state: the durable kind's (on the
// servers' disks) and the ephemeral kind's (in their memory).
const (
	DefaultBucket   = "gateway_kv"
	EphemeralBucket = "gateway_ephemeral"
)

// markerTTL is how long the servers keep the marker a removed or expired
// key leaves (JetStream's LimitMarkerTTL, which per-message TTLs need).
const markerTTL = time.Minute

// StoreOptions configure a Store.
type StoreOptions struct {
	Bucket   string // "" = DefaultBucket
	Replicas int    // JetStream copies of the bucket; 0 = 1
	// Memory keeps the bucket in the servers' memory instead of on their
	// disks: lost when every server restarts, never a disk write.
	Memory bool
}

// Store is a JetStream key-value bucket as a hostsvc.Store, shared by
// every node that opens the same bucket. It is safe for concurrent use;
// it does not own the Conn.
type Store struct {
	c      *Conn
	kv     jetstream.KeyValue
	stream string // KV_<bucket>
	prefix string // $KV.<bucket>.
}

var _ hostsvc.Store = (*Store)(nil)

// OpenStore opens the bucket, or creates it, and sets its replicas to
// opt's, and returns the store on it. Nodes that start together may
// create it together, and JetStream can leave all but one of
// simultaneous creates of one stream unanswered, and requests about it
// too while it forms (nats.go issue 949): so each attempt gets a short
// while (a second more each time), and a lost race or an attempt out of
// time is tried again until ctx (bounded by the connection's timeout)
// ends.
func (c *Conn) OpenStore(ctx context.Context, opt StoreOptions) (*Store, error) {
	cfg := bucketConfig(opt)
	kv, err := c.openKV(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Store{c: c, kv: kv, stream: "KV_" + cfg.Bucket, prefix: "$KV." + cfg.Bucket + "."}, nil
}

// openKV opens the bucket of cfg, or creates it, while the cluster forms
// (whileForming).
func (c *Conn) openKV(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := c.whileForming(ctx, fmt.Sprintf("bucket %s (replicas %d)", cfg.Bucket, cfg.Replicas), func(ctx context.Context) (err error) {
		kv, err = c.openOrCreate(ctx, cfg)
		return err
	})
	return kv, err
}

// whileForming runs open, which opens or creates a stream (what names it),
// until it succeeds or fails other than as nodes that create one stream
// together may (see raced): each attempt gets a second more than the last,
// and all of them ctx bounded by the connection's timeout.
func (c *Conn) whileForming(ctx context.Context, what string, open func(context.Context) error) error {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	var told error // the last error that says more than "out of time"
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, time.Duration(attempt)*time.Second)
		err := open(actx)
		acancel()
		if err == nil {
			return nil
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			told = err
		}
		if ctx.Err() != nil || !raced(err) {
			if told != nil {
				err = told
			}
			return fmt.Errorf("cluster: %s: %w", what, explain(err))
		}
		c.log.Debug("stream not ready; trying again", "stream", what, "attempt", attempt, "err", err)
	}
}

// openOrCreate opens the bucket of cfg, or creates it when there is none.
func (c *Conn) openOrCreate(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := c.openBucket(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return c.js.CreateKeyValue(ctx, cfg)
	}
	return kv, err
}

// raced reports whether an attempt of OpenStore failed as nodes that
// create one bucket together, or a cluster that is still forming, may:
// out of time, the bucket created since it was found missing, no server
// answering JetStream's API yet, or not yet enough servers known to be
// online for its replicas.
func raced(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrBucketExists) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrClusterNoPeers
}

// Transient reports whether err, an operation's, is JetStream not
// answering for the moment: the connection down (ErrUnavailable, or the
// client's buffer for a reconnection full), no server or stream leader
// answering (as while a stream elects a leader), or no answer in time.
// Trying again later may succeed.
func Transient(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, nats.ErrReconnectBufExceeded) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// jsErrClusterNoPeers is JetStream's "no suitable peers for placement"
// (nats-server's JSClusterNoPeersErrF), which nats.go does not name.
const jsErrClusterNoPeers jetstream.ErrorCode = 10005

// openBucket opens the bucket of cfg and updates it if its settings
// differ (more replicas; never fewer); jetstream.ErrBucketNotFound when
// there is none.
func (c *Conn) openBucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, cfg.Bucket)
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.Replicas > cfg.Replicas {
		// Another node asked for more copies: keep them (see OpenReplica).
		c.log.Warn("cluster: the bucket keeps its replicas, more than this node's replicas",
			"bucket", cfg.Bucket, "bucket_replicas", info.Config.Replicas, "replicas", cfg.Replicas)
		cfg.Replicas = info.Config.Replicas
	}
	maxMsgSize := cfg.MaxValueSize // as the stream keeps it: 0 (no limit) is -1 there
	if maxMsgSize == 0 {
		maxMsgSize = -1
	}
	if info.Config.Replicas == cfg.Replicas && info.Config.Storage == cfg.Storage &&
		info.Config.SubjectDeleteMarkerTTL == cfg.LimitMarkerTTL && info.Config.MaxMsgSize == maxMsgSize {
		return kv, nil
	}
	c.log.Info("updating bucket", "bucket", cfg.Bucket, "replicas", cfg.Replicas)
	return c.js.UpdateKeyValue(ctx, cfg)
}

// bucketConfig is the bucket opt describes: one value per key, values up
// to sdk.KVMaxValue after their expiry, per-message TTLs on.
func bucketConfig(opt StoreOptions) jetstream.KeyValueConfig {
	if opt.Bucket == "" {
		opt.Bucket = DefaultBucket
	}
	storage, kind := jetstream.FileStorage, "durable"
	if opt.Memory {
		storage, kind = jetstream.MemoryStorage, "ephemeral"
	}
	return jetstream.KeyValueConfig{
		Bucket:         opt.Bucket,
		Description:    "gateway: the hooks' shared key-value store, " + kind,
		History:        1,
		MaxValueSize:   int32(8 + sdk.KVMaxValue),
		Storage:        storage,
		Replicas:       max(opt.Replicas, 1),
		LimitMarkerTTL: markerTTL,
	}
}

// subject is the subject of key: base64url, since a NATS key has only
// [-/_=.a-zA-Z0-9] and ours may have anything.
func (s *Store) subject(key string) string {
	return s.prefix + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// entry is a key's last message as read: its revision (0 = the subject
// has none) and, when live, its expiry and value.
type entry struct {
	rev   uint64
	live  bool // a value, not a removal marker, and not expired
	exp   uint64
	value []byte
}

// KVGet returns the value of key if it is set and not expired at now.
func (s *Store) KVGet(key string, now time.Time) (string, bool, error) {
	ctx, cancel := s.c.opContext(context.Background())
	defer cancel()
	e, err := s.last(ctx, key, now)
	if err != nil {
		return "", false, fmt.Errorf("cluster: kv get %q: %w", key, err)
	}
	return string(e.value), e.live, nil
}

// KVSet stores value under key, expiring ttl from now (0 = never).
func (s *Store) KVSet(ctx context.Context, key, value string, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("cluster: kv set %q: negative ttl %v", key, ttl)
	}
	ctx, cancel := s.c.opContext(ctx)
	defer cancel()
	now := s.c.now()
	if err := s.put(ctx, key, nil, queue.KVExpiry(now, ttl), []byte(value), now); err != nil {
		return fmt.Errorf("cluster: kv set %q: %w", key, err)
	}
	return nil
}

// KVIncr adds delta to the integer stored under key and returns the new
// value. A key that is absent or expired counts as 0 and gets a fresh
// expiry of ttl (0 = never); an existing key keeps the expiry it has. A
// value that is not a decimal integer, or a sum past the int64 range, is
// an error that changes nothing. The write is a compare-and-set on the
// key's revision, retried until it wins or ctx (bounded by the
// connection's timeout) ends.
func (s *Store) KVIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if ttl < 0 {
		return 0, fmt.Errorf("cluster: kv incr %q: negative ttl %v", key, ttl)
	}
	ctx, cancel := s.c.opContext(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		n, err := s.incrOnce(ctx, key, delta, ttl)
		if err == nil || !conflict(err) {
			return n, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, fmt.Errorf("cluster: kv incr %q: %d conflicting writes: %w", key, attempt, err)
		}
	}
}

// incrOnce is one compare-and-set of KVIncr.
func (s *Store) incrOnce(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	now := s.c.now()
	e, err := s.last(ctx, key, now)
	if err != nil {
		return 0, fmt.Errorf("cluster: kv incr %q: %w", key, err)
	}
	var cur int64
	exp := queue.KVExpiry(now, ttl)
	if e.live {
		if cur, err = strconv.ParseInt(string(e.value), 10, 64); err != nil {
			return 0, fmt.Errorf("cluster: kv incr %q: %w", key, hostsvc.ErrNotInteger)
		}
		exp = e.exp
	}
	if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
		return 0, fmt.Errorf("cluster: kv incr %q: %d%+d: %w", key, cur, delta, hostsvc.ErrOverflow)
	}
	n := cur + delta
	if err := s.put(ctx, key, &e.rev, exp, strconv.AppendInt(nil, n, 10), now); err != nil {
		return 0, fmt.Errorf("cluster: kv incr %q: %w", key, err)
	}
	return n, nil
}

// KVDelete removes key; an absent key is not an error. The marker it
// leaves expires after markerTTL.
func (s *Store) KVDelete(ctx context.Context, key string) error {
	if err := s.c.ready(); err != nil {
		return fmt.Errorf("cluster: kv delete %q: %w", key, err)
	}
	ctx, cancel := s.c.opContext(ctx)
	defer cancel()
	k := base64.RawURLEncoding.EncodeToString([]byte(key))
	if err := s.kv.Purge(ctx, k, jetstream.PurgeTTL(markerTTL)); err != nil {
		return fmt.Errorf("cluster: kv delete %q: %w", key, explain(err))
	}
	return nil
}

// put publishes key's message: value expiring at exp (checked against now
// for the servers' TTL), only if key's revision is still *rev when rev is
// not nil.
func (s *Store) put(ctx context.Context, key string, rev *uint64, exp uint64, value []byte, now time.Time) error {
	if err := s.c.ready(); err != nil {
		return err
	}
	data := queue.EncodeKV(exp, string(value))
	var opts []jetstream.PublishOpt
	if rev != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*rev))
	}
	if exp != 0 {
		opts = append(opts, jetstream.WithMsgTTL(serverTTL(exp, now)))
	}
	_, err := s.c.js.PublishMsg(ctx, &nats.Msg{Subject: s.subject(key), Data: data}, opts...)
	return explain(err)
}

// last reads key's last message from the stream's leader.
func (s *Store) last(ctx context.Context, key string, now time.Time) (entry, error) {
	if err := s.c.ready(); err != nil {
		return entry{}, err
	}
	req, err := json.Marshal(map[string]string{"last_by_subj": s.subject(key)})
	if err != nil {
		return entry{}, err
	}
	reply, err := s.c.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+s.stream, req)
	if err != nil {
		return entry{}, explain(err)
	}
	var resp struct {
		Message *struct {
			Seq    uint64 `json:"seq"`
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return entry{}, fmt.Errorf("JetStream's answer: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return entry{}, nil
	case resp.Error != nil:
		return entry{}, resp.Error
	case resp.Message == nil:
		return entry{}, errors.New("JetStream's answer has no message")
	}
	return decodeEntry(resp.Message.Seq, resp.Message.Header, resp.Message.Data, now), nil
}

// decodeEntry reads a key's last message, revision rev: a removal marker,
// an expired value, or a message too short for its expiry (never written
// by this code) is not live.
func decodeEntry(rev uint64, hdr, data []byte, now time.Time) entry {
	e := entry{rev: rev}
	exp, value, ok := queue.DecodeKV(data)
	if removed(hdr) || !ok || queue.KVExpired(exp, now) {
		return e
	}
	e.exp, e.live, e.value = exp, true, value
	return e
}

// removed reports whether a message's header marks a removal: a delete
// or purge (KV-Operation) or a marker the servers left (Nats-Marker-Reason).
func removed(hdr []byte) bool {
	if len(hdr) == 0 {
		return false
	}
	h, err := nats.DecodeHeadersMsg(hdr)
	if err != nil {
		return false
	}
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}

// explain says what a request that ran out of time most likely means.
func explain(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer from JetStream in time (are most of its servers down?): %w", err)
	}
	return err
}

// conflict reports whether err is a compare-and-set that lost: the key's
// revision changed since it was read (JetStream's wrong last sequence).
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// backoff waits a random while, longer after more attempts (up to 10ms),
// so that writers racing for one key spread out; ctx's end ends it.
func backoff(ctx context.Context, attempt int) error {
	d := rand.N(time.Duration(min(attempt, 10)) * time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// serverTTL is the per-message TTL for an expiry at exp: whole seconds,
// rounded up, at least one (JetStream's least), so that the servers never
// remove a message before its expiry.
func serverTTL(exp uint64, now time.Time) time.Duration {
	left := time.Duration(int64(exp) - now.UnixNano())
	return max(time.Second, (left + time.Second - 1).Truncate(time.Second))
}
