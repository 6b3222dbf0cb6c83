// Package queuetest builds real spools for tests and damages them the ways
// a disk, a filesystem or an operator does: a truncated spool.db, a page
// whose type is not one bbolt knows, random bytes in a branch page, a
// spool.db emptied or removed beside the spilled bodies. Each damage is
// made on a spool written by core/queue itself, so that a test sees what
// an operator would.
package queuetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// SpillThreshold is the spill threshold Fill writes with: every third
// message Fill commits is larger and has its content in bodies/<id>.
const SpillThreshold = 2048

// DB returns the path of the bbolt file of the spool in dir.
func DB(dir string) string { return filepath.Join(dir, "spool.db") }

// Body returns the header and content Fill committed as message n (from 0).
func Body(n int) (header, data []byte) {
	size := 300
	if n%3 == 2 {
		size = 3 * SpillThreshold
	}
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "message %d line %d, some text to fill it up\r\n", n, i)
	}
	return []byte(fmt.Sprintf("X-Fill: %d\r\n", n)), []byte(b.String()[:size])
}

// Fill opens the spool in dir (creating it), commits n messages to
// rcpt@example.test whose bodies are Body(0) … Body(n-1), closes it and
// returns their IDs in commit order. With n ≥ 60 the messages and bodies
// buckets each have a branch page at their root.
func Fill(t testing.TB, dir string, n int) []string {
	t.Helper()
	s, err := queue.Open(dir, queue.Options{SpillThreshold: SpillThreshold})
	if err != nil {
		t.Fatalf("queuetest: open %s: %v", dir, err)
	}
	defer s.Close()
	env := &envelope.Envelope{
		Sender:     envelope.Address{Local: "sender", Domain: "example.org"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "rcpt", Domain: "example.test"}}},
		ClientIP:   "192.0.2.1",
		ClientHELO: "client.example.org",
		Received:   time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC),
	}
	ids := make([]string, n)
	for i := range n {
		d, err := s.Create(context.Background())
		if err != nil {
			t.Fatalf("queuetest: create: %v", err)
		}
		header, data := Body(i)
		if _, err := d.Write(data); err != nil {
			t.Fatalf("queuetest: write: %v", err)
		}
		if err := d.Commit(context.Background(), env, header); err != nil {
			t.Fatalf("queuetest: commit: %v", err)
		}
		ids[i] = d.ID()
	}
	if err := s.Close(); err != nil {
		t.Fatalf("queuetest: close: %v", err)
	}
	return ids
}

// Truncate cuts the spool.db in dir to half the length its tree takes
// (bbolt grows the file ahead of it), rounded down to a page: the tail of
// the tree is gone, its meta pages are intact.
func Truncate(t testing.TB, dir string) {
	t.Helper()
	var size, ps int64
	view(t, dir, func(db *bolt.DB, tx *bolt.Tx) { size, ps = tx.Size(), int64(db.Info().PageSize) })
	if err := os.Truncate(DB(dir), size/2/ps*ps); err != nil {
		t.Fatalf("queuetest: %v", err)
	}
}

// BadPageType gives the root page of the bucket named bucket in dir's
// spool.db a type bbolt does not know (0x20).
func BadPageType(t testing.TB, dir, bucket string) {
	t.Helper()
	id, ps := rootPage(t, dir, bucket)
	patch(t, dir, id*uint64(ps)+8, []byte{0x20, 0})
}

// ScrambleBranch overwrites the element table of the root page of the
// bucket named bucket, which must be a branch page, with random bytes
// drawn from seed, leaving its 16-byte header as it was.
func ScrambleBranch(t testing.TB, dir, bucket string, seed uint64) {
	t.Helper()
	id, ps := rootPage(t, dir, bucket)
	hdr := read(t, dir, id*uint64(ps), 16)
	if hdr[8] != 0x01 {
		t.Fatalf("queuetest: root page %d of %s is not a branch page (flags %#x): fill more messages", id, bucket, hdr[8])
	}
	count := binary.NativeEndian.Uint16(hdr[10:])
	junk := make([]byte, 16*int(count))
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range junk {
		junk[i] = byte(r.Uint32())
	}
	patch(t, dir, id*uint64(ps)+16, junk)
}

// BadMeta overwrites both meta pages of the spool.db in dir (its first
// two pages) with zeros.
func BadMeta(t testing.TB, dir string) {
	t.Helper()
	var ps int
	view(t, dir, func(db *bolt.DB, _ *bolt.Tx) { ps = db.Info().PageSize })
	patch(t, dir, 0, make([]byte, 2*ps))
}

// Empty makes the spool.db in dir a file of 0 bytes.
func Empty(t testing.TB, dir string) {
	t.Helper()
	if err := os.Truncate(DB(dir), 0); err != nil {
		t.Fatalf("queuetest: %v", err)
	}
}

// Remove removes the spool.db in dir.
func Remove(t testing.TB, dir string) {
	t.Helper()
	if err := os.Remove(DB(dir)); err != nil {
		t.Fatalf("queuetest: %v", err)
	}
}

// Damages are the ways to damage a filled spool that Open must refuse,
// by name, each applied to a spool Fill wrote with at least 60 messages.
func Damages() []Damage {
	return []Damage{
		{"truncated", "truncated", Truncate},
		{"bad page type", "type", func(t testing.TB, dir string) { BadPageType(t, dir, "messages") }},
		{"random bytes in a branch page", "page", func(t testing.TB, dir string) { ScrambleBranch(t, dir, "messages", 9) }},
		{"bad meta pages", "meta page", BadMeta},
	}
}

// Damage is one way to damage a spool, and a word the error that reports
// it must contain.
type Damage struct {
	Name  string
	Word  string
	Apply func(t testing.TB, dir string)
}

// rootPage returns the root page of bucket and the page size.
func rootPage(t testing.TB, dir, bucket string) (id uint64, ps int) {
	t.Helper()
	view(t, dir, func(db *bolt.DB, tx *bolt.Tx) {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			t.Fatalf("queuetest: no bucket %s in %s", bucket, DB(dir))
		}
		id, ps = uint64(b.Root()), db.Info().PageSize
	})
	if id == 0 {
		t.Fatalf("queuetest: bucket %s is inline: fill more messages", bucket)
	}
	return id, ps
}

// view opens dir's spool.db read-only (which reads only its meta pages)
// and calls fn in a read transaction.
func view(t testing.TB, dir string, fn func(*bolt.DB, *bolt.Tx)) {
	t.Helper()
	db, err := bolt.Open(DB(dir), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("queuetest: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		fn(db, tx)
		return nil
	})
	if err != nil {
		t.Fatalf("queuetest: %v", err)
	}
}

func read(t testing.TB, dir string, off uint64, n int) []byte {
	t.Helper()
	f, err := os.Open(DB(dir))
	if err != nil {
		t.Fatalf("queuetest: %v", err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		t.Fatalf("queuetest: read %s: %v", DB(dir), err)
	}
	return b
}

func patch(t testing.TB, dir string, off uint64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(DB(dir), os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("queuetest: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatalf("queuetest: patch %s: %v", DB(dir), err)
	}
}

// Snapshot maps every file under dir to the SHA-256 of its content: two
// snapshots are equal if no file was added, removed or changed.
func Snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m[p] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatalf("queuetest: %v", err)
	}
	return m
}
