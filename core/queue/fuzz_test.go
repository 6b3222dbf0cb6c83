package queue

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// FuzzDecodeMessage: a stored record, whatever its bytes, decodes without
// a panic, and a record that decodes encodes again to one that decodes
// to the same message (an Update can always write back what it read).
func FuzzDecodeMessage(f *testing.F) {
	m := &Message{ID: "06h4ncu8ks07aq3a", Envelope: *testEnvelope("bob@example.com", "carol@example.net"),
		Created: testNow(), Size: 1234, Attempts: 2, NextAttempt: testNow().Add(time.Hour), spilled: true}
	m.Recipients = []RecipientState{{Status: Delivered, LastReply: "250 ok", Attempts: 1, Updated: testNow()}, {Status: Deferred}}
	rec, err := encodeMessage(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add([]byte(`{"id":"x","recipients":[{"status":"failed"}],"envelope":{"recipients":[{},{}]}}`))
	f.Add([]byte(`{"v":2,"body":"file","next_attempt":"0001-01-01T00:00:00Z","held":true}`))
	f.Add([]byte(`{"recipients":[{"status":"lost"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if _, merr := decodeMeta(b); err == nil && merr != nil {
			t.Fatalf("decodeMessage accepts what decodeMeta refuses: %v", merr)
		}
		if err != nil {
			return
		}
		if len(m.Recipients) < len(m.Envelope.Recipients) {
			t.Fatalf("%d recipient states for %d recipients", len(m.Recipients), len(m.Envelope.Recipients))
		}
		again, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		m2, err := decodeMessage(again)
		if err != nil {
			t.Fatalf("an encoded record does not decode: %v\n%s", err, again)
		}
		m.Version = recordVersion // what encodeMessage writes
		if diff := cmp.Diff(m, m2, cmpMessage); diff != "" {
			t.Fatalf("decode(encode(decode(b))) differs (-first +second):\n%s", diff)
		}
	})
}

// FuzzBoltFile: the page walker reads any bytes as spool.db without a
// panic, a fault or unbounded work, as Check reads them (records, bodies,
// the loose-page scan); and a file it finds sound is one that bbolt opens
// as Open does (its scan of every page included), writes to, and reads
// every key and value of, without crashing: the promise Open relies on.
func FuzzBoltFile(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	path := filepath.Join(f.TempDir(), dbFile) // one per fuzzing process
	f.Fuzz(func(t *testing.T, b []byte) {
		sc := newSpoolScan("")
		sc.readTree(bytes.NewReader(b), dbFile, int64(len(b)))
		for _, found := range sc.complete() {
			found.body.read()
		}
		if len(b) == 0 || len(sc.d.problems) > 0 {
			return
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		opt := boltOptions()
		opt.NoSync = true
		db, err := bolt.Open(path, 0o600, opt)
		if err != nil {
			return // refused, not crashed
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketSchedule)
			return err
		})
		if err != nil {
			return
		}
		db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return readBucket(b) })
		})
	})
}

// readBucket reads every key and value of b and its buckets.
func readBucket(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if in := b.Bucket(k); in != nil {
				return readBucket(in)
			}
		}
		_ = bytes.Count(v, []byte{0})
		return nil
	})
}

// fuzzSeeds returns spool.db files: a real spool's, and a small bbolt file
// of 1 KiB pages with branch pages, an inline bucket and a nested one.
func fuzzSeeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	s, err := Open(dir, Options{SpillThreshold: 100, Now: testNow})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 12 {
		d, _ := s.Create(f.Context())
		d.Write(content(fmt.Sprint(i), 40*i))
		if err := d.Commit(f.Context(), testEnvelope("bob@example.com"), []byte("X: y\r\n")); err != nil {
			f.Fatal(err)
		}
	}
	s.KVSet(f.Context(), "grey/1", "x", 0)
	s.Close()
	real, err := os.ReadFile(filepath.Join(dir, dbFile))
	if err != nil {
		f.Fatal(err)
	}

	path := filepath.Join(f.TempDir(), "small.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 1024, NoFreelistSync: true})
	if err != nil {
		f.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		msgs, _ := tx.CreateBucket(bucketMessages)
		for i := range 40 {
			msgs.Put(fmt.Appendf(nil, "06h4ncu8ks07aq%02d", i), fmt.Appendf(nil, `{"v":1,"id":"06h4ncu8ks07aq%02d"}`, i))
		}
		outer, _ := tx.CreateBucket([]byte("kv"))
		outer.Put([]byte("k"), []byte("\x00\x00\x00\x00\x00\x00\x00\x00v"))
		inner, _ := outer.CreateBucket([]byte("inner"))
		return inner.Put([]byte("a"), []byte("b"))
	})
	db.Close()
	if err != nil {
		f.Fatal(err)
	}
	small, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{real, small, small[:len(small)/2], nil}
}
