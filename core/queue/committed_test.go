package queue

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCommitted checks that Draft.Committed hands back what Get and Body
// read from the spool, for a message kept in spool.db and for one in a
// file, and that it does not share the caller's recipients.
func TestCommitted(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{SpillThreshold: 1024})
	for _, size := range []int{100, 4096} { // in spool.db; in a file
		d, err := s.Create(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if m, body := d.Committed(); m != nil || body != nil {
			t.Fatalf("Committed before Commit = %v, %q; want nil, nil", m, body)
		}
		if _, err := d.Write(content("c", size)); err != nil {
			t.Fatal(err)
		}
		env := testEnvelope("bob@example.com", "carol@example.net")
		if err := d.Commit(t.Context(), env, []byte("H: 1\r\n")); err != nil {
			t.Fatal(err)
		}
		env.Recipients[0].Address.Local = "mallory" // the session reuses its envelope

		body := checkCommittedIsStored(t, s, d)
		if size > 1024 {
			if body != nil {
				t.Errorf("%d bytes (in a file): Committed body of %d bytes, want nil", size, len(body))
			}
			continue
		}
		r, err := s.Body(d.ID())
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(body, stored) {
			t.Errorf("%d bytes: Committed body %q, Body %q", size, body, stored)
		}
	}
}

// checkCommittedIsStored fails unless the message Committed hands on is
// the one Get reads back, and returns Committed's body.
func checkCommittedIsStored(t *testing.T, s *Spool, d *Draft) []byte {
	t.Helper()
	m, body := d.Committed()
	got, err := s.Get(d.ID())
	if err != nil {
		t.Fatal(err)
	}
	sameTime := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
	if diff := cmp.Diff(got, m, cmp.AllowUnexported(Message{}), sameTime); diff != "" {
		t.Errorf("%d bytes: Committed differs from Get (-get +committed):\n%s", m.Size, diff)
	}
	return body
}
