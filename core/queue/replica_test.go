package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// copies is a Replica in memory: what a replica's servers would hold.
// fail, when set, is what every wait returns.
type copies struct {
	mu      sync.Mutex
	records map[string][]byte
	bodies  map[string][]byte
	removed []string
	updates []string // IDs, one per Update
	fail    error
}

func (c *copies) Put(_ context.Context, m *Message, rec []byte, body io.Reader) func(context.Context) error {
	b, err := io.ReadAll(body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.records == nil {
		c.records, c.bodies = map[string][]byte{}, map[string][]byte{}
	}
	c.records[m.ID], c.bodies[m.ID] = slices.Clone(rec), b
	fail := c.fail
	return func(context.Context) error { return errors.Join(err, fail) }
}

func (c *copies) Update(m *Message, rec []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records[m.ID] = slices.Clone(rec)
	c.updates = append(c.updates, m.ID)
}

func (c *copies) Remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.records, id)
	delete(c.bodies, id)
	c.removed = append(c.removed, id)
}

// TestReplicaHoldsWhatIsQueued: the copy of a committed message is its
// record as stored and its whole body, for a message kept in spool.db and
// for one spilled to a file; a deleted message leaves the copy.
func TestReplicaHoldsWhatIsQueued(t *testing.T) {
	for _, size := range []int{100, 5000} {
		rep := &copies{}
		s := openSpool(t, t.TempDir(), Options{SpillThreshold: 1000, Replica: rep})
		header := []byte("Received: from a\r\n")
		data := content("replica", size)
		id := commit(t, s, testEnvelope("bob@example.com"), header, data, 333)
		m, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := encodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rep.records[id], rec) {
			t.Errorf("size %d: the copy's record\n%s\nwant what spool.db holds\n%s", size, rep.records[id], rec)
		}
		if want := append(slices.Clone(header), data...); !bytes.Equal(rep.bodies[id], want) {
			t.Errorf("size %d: the copy's body is %d bytes; want the %d of header and content", size, len(rep.bodies[id]), len(want))
		}
		if err := s.Delete(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.removed, []string{id}) || rep.records[id] != nil {
			t.Errorf("size %d: after Delete, removed %v; want the copy of %s removed", size, rep.removed, id)
		}
	}
}

// TestReplicaFailureQueuesNothing: when the copy is not acknowledged,
// Commit fails with ErrNotReplicated, and neither the spool nor the
// replica keeps the message.
func TestReplicaFailureQueuesNothing(t *testing.T) {
	for _, size := range []int{100, 5000} {
		rep := &copies{fail: errors.New("nats: no responders")}
		s := openSpool(t, t.TempDir(), Options{SpillThreshold: 1000, Replica: rep})
		d, err := s.Create(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Write(content("x", size)); err != nil {
			t.Fatal(err)
		}
		err = d.Commit(t.Context(), testEnvelope("bob@example.com"), nil)
		if !errors.Is(err, ErrNotReplicated) {
			t.Fatalf("size %d: Commit = %v; want ErrNotReplicated", size, err)
		}
		if _, err := s.Get(d.ID()); !errors.Is(err, ErrNotFound) || s.Len() != 0 {
			t.Errorf("size %d: Get = %v, Len %d; want nothing queued", size, err, s.Len())
		}
		if rep.records[d.ID()] != nil {
			t.Errorf("size %d: the replica keeps the copy", size)
		}
		d.Abort()
		assertDirEntries(t, s.bodiesDir, nil)
	}
}

// TestImport: a message imported from another spool's copy keeps its
// envelope, recipients' states, attempts and arrival under an ID of its
// own, with its whole body, kept in spool.db or in a file as its size
// says, and copied to the importing spool's replica. It is due at once,
// whatever the other spool's schedule (TestImportIsDueAtOnce).
func TestImport(t *testing.T) {
	for _, size := range []int{100, 5000} {
		from := openSpool(t, t.TempDir(), Options{SpillThreshold: 1000})
		header := []byte("Received: from a\r\n")
		id := commit(t, from, testEnvelope("bob@example.com", "carol@example.net"), header, content("import", size), 333)
		err := from.Update(t.Context(), id, func(m *Message) error {
			m.Recipients[0] = RecipientState{Status: Delivered, LastReply: "250 ok", Attempts: 1, Updated: testNow()}
			m.Recipients[1] = RecipientState{Status: Deferred, LastReply: "451 later", Attempts: 1, Updated: testNow()}
			m.Attempts, m.NextAttempt = 1, testNow().Add(time.Minute)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		src, _ := from.Get(id)
		rec, _ := encodeMessage(src)
		body := readBody(t, from, id)

		rep := &copies{}
		to := openSpool(t, t.TempDir(), Options{SpillThreshold: 1000, Replica: rep})
		nid := importAsIs(t, to, src, rec, body)
		if b := readBody(t, to, nid); !bytes.Equal(b, body) {
			t.Errorf("size %d: imported body %d bytes; want %d", size, len(b), len(body))
		}
		if !bytes.Equal(rep.bodies[nid], body) || rep.records[nid] == nil {
			t.Errorf("size %d: the importing spool's replica has no copy of %s", size, nid)
		}
	}
}

// TestReplicaLearnsFinalStates: a Replace or an Update that makes a
// recipient delivered or failed, adds one, holds or releases the message
// or records its delay warning sends the stored record to the replica;
// one that only defers or reschedules sends nothing.
func TestReplicaLearnsFinalStates(t *testing.T) {
	rep := &copies{}
	s := openSpool(t, t.TempDir(), Options{Replica: rep})
	id := commit(t, s, testEnvelope("bob@example.com", "carol@example.net"), nil, content("states", 100), 333)
	change := func(name string, fn func(m *Message), replace bool, want int) {
		t.Helper()
		old, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		sent := len(rep.updates)
		if replace {
			m := *old
			m.Recipients = slices.Clone(old.Recipients)
			m.Envelope.Recipients = slices.Clone(old.Envelope.Recipients)
			fn(&m)
			err = s.Replace(t.Context(), old, &m)
		} else {
			err = s.Update(t.Context(), id, func(m *Message) error { fn(m); return nil })
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		stored, _ := s.Get(id)
		rec, _ := encodeMessage(stored)
		if len(rep.updates) != want {
			t.Fatalf("%s: %d updates sent; want %d", name, len(rep.updates), want)
		}
		if want > sent && !bytes.Equal(rep.records[id], rec) {
			t.Errorf("%s: the copy's record\n%s\nwant what spool.db holds\n%s", name, rep.records[id], rec)
		}
	}
	change("deferral (Replace)", func(m *Message) {
		m.Recipients[0].Status, m.Recipients[1].Status = Deferred, Deferred
		m.NextAttempt = testNow().Add(time.Hour)
	}, true, 0)
	change("attempt counted (Update)", func(m *Message) { m.Attempts++ }, false, 0)
	change("bob delivered (Replace)", func(m *Message) { m.Recipients[0].Status = Delivered }, true, 1)
	change("bob delivered again (Replace)", func(m *Message) { m.Attempts++ }, true, 1)
	change("carol failed (Update)", func(m *Message) { m.Recipients[1].Status = Failed }, false, 2)
	change("dave added (Replace)", func(m *Message) {
		m.Envelope.Recipients = append(m.Envelope.Recipients, m.Envelope.Recipients[0])
		m.Recipients = append(m.Recipients, RecipientState{})
	}, true, 3)
	change("held (Update)", func(m *Message) { m.Held = true }, false, 4)
	change("released (Update)", func(m *Message) { m.Held = false }, false, 5)
	change("delay warned (Replace)", func(m *Message) { m.DelayWarned = true }, true, 6)
}

// TestImportIsDueAtOnce: whatever schedule the copy carries, its import is
// due at once: the schedule was the other node's, set on what it knew of
// its destinations (one it found down parks mail for an hour behind a
// probe), which the importing node does not know. Each case's copy is
// sent the way the spool sends it (a recipient made final while the
// message waits parked, a hold, a delay warning, the copy made at a
// node's start of mail it queued before it had a cluster); the import
// keeps the attempts and the arrival (so that expiry and the retry
// backoff go on), and a hold, which the operator lifts: then it is due
// at once too.
func TestImportIsDueAtOnce(t *testing.T) {
	parked := testNow().Add(time.Hour)
	defer1 := func(m *Message) {
		m.Attempts, m.NextAttempt = 3, parked
		m.Recipients[1] = RecipientState{Status: Deferred, LastReply: "451 4.4.1 no answer", Attempts: 3, Updated: testNow()}
	}
	cases := []struct {
		name string
		send func(t *testing.T, s *Spool, id string) // makes the copy what the case says
		held bool
	}{
		{"recipient delivered while parked (Update)", func(t *testing.T, s *Spool, id string) {
			update(t, s, id, func(m *Message) {
				defer1(m)
				m.Recipients[0] = RecipientState{Status: Delivered, LastReply: "250 ok", Attempts: 1, Updated: testNow()}
			})
		}, false},
		{"recipient delivered while parked (Replace)", func(t *testing.T, s *Spool, id string) {
			old, _ := s.Get(id)
			m := *old
			m.Recipients = slices.Clone(old.Recipients)
			defer1(&m)
			m.Recipients[0] = RecipientState{Status: Delivered, LastReply: "250 ok", Attempts: 1, Updated: testNow()}
			if err := s.Replace(t.Context(), old, &m); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"delay warned while parked", func(t *testing.T, s *Spool, id string) {
			update(t, s, id, func(m *Message) { defer1(m); m.DelayWarned = true })
		}, false},
		{"held while parked", func(t *testing.T, s *Spool, id string) {
			update(t, s, id, defer1)
			update(t, s, id, func(m *Message) { m.Held = true })
		}, true},
		{"copied at start while parked (Replicate)", func(t *testing.T, s *Spool, id string) {
			update(t, s, id, defer1)
			if err := s.Replicate(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := &copies{}
			from := openSpool(t, t.TempDir(), Options{Replica: rep})
			id := commit(t, from, testEnvelope("bob@example.com", "carol@example.net"), nil, content("parked", 100), 333)
			tc.send(t, from, id)
			src, err := DecodeRecord(rep.records[id])
			if err != nil {
				t.Fatal(err)
			}
			if src.Attempts != 3 || src.Held != tc.held {
				t.Fatalf("the copy says %d attempts, held %v; the case did not reach the copy", src.Attempts, src.Held)
			}
			to := openSpool(t, t.TempDir(), Options{})
			nid := importAsIs(t, to, src, rep.records[id], rep.bodies[id])
			if tc.held {
				if due := dueIDs(t, to, testNow()); len(due) != 0 {
					t.Errorf("due after the import: %v; want nothing (held)", due)
				}
				update(t, to, nid, func(m *Message) { m.Held = false })
			}
			if due := dueIDs(t, to, testNow()); !slices.Equal(due, []string{nid}) {
				t.Errorf("due now after the import: %v; want %s (the other node's parking is not this one's)", due, nid)
			}
		})
	}
}

// importAsIs imports rec and body, the copy of src, into to, checks that
// the message stored is src but for its ID and its next attempt (none: due
// at once), and returns its ID.
func importAsIs(t *testing.T, to *Spool, src *Message, rec, body []byte) string {
	t.Helper()
	nid, err := to.Import(t.Context(), rec, body)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	got, err := to.Get(nid)
	if err != nil {
		t.Fatal(err)
	}
	want := *src
	want.ID, want.NextAttempt = nid, time.Time{}
	if diff := cmp.Diff(&want, got, cmpMessage); diff != "" {
		t.Errorf("%d bytes: imported message (-want +got):\n%s", len(body), diff)
	}
	return nid
}

// update changes message id with fn through Spool.Update.
func update(t *testing.T, s *Spool, id string, fn func(*Message)) {
	t.Helper()
	if err := s.Update(t.Context(), id, func(m *Message) error { fn(m); return nil }); err != nil {
		t.Fatal(err)
	}
}
