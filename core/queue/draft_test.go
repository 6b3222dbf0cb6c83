package queue

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

func TestDraftOpen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		spilled bool
	}{
		{"in memory", 1000, false},
		{"spilled", 10 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openSpool(t, t.TempDir(), Options{SpillThreshold: 4 << 10})
			ctx := context.Background()
			d, err := s.Create(ctx)
			if err != nil {
				t.Fatal(err)
			}
			data := content("open", tc.size)
			for i := 0; i < len(data); i += 777 {
				if _, err := d.Write(data[i:min(i+777, len(data))]); err != nil {
					t.Fatal(err)
				}
			}
			if got := d.w != nil; got != tc.spilled {
				t.Fatalf("spilled %v; want %v", got, tc.spilled)
			}

			rc, err := d.Open()
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("read %d bytes, %v; want the %d written", len(got), err, len(data))
			}
			// It seeks, for skipping the header section.
			if _, err := rc.(io.Seeker).Seek(int64(tc.size-10), io.SeekStart); err != nil {
				t.Fatalf("Seek: %v", err)
			}
			tail, _ := io.ReadAll(rc)
			if !bytes.Equal(tail, data[tc.size-10:]) {
				t.Errorf("after Seek read %q; want %q", tail, data[tc.size-10:])
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}

			// Writing on after an Open, then committing, stores everything.
			if _, err := d.Write([]byte("more\r\n")); err != nil {
				t.Fatal(err)
			}
			if err := d.Commit(ctx, testEnvelope("bob@example.net"), []byte("H: 1\r\n")); err != nil {
				t.Fatal(err)
			}
			want := append(append([]byte("H: 1\r\n"), data...), "more\r\n"...)
			if got := readBody(t, s, d.ID()); !bytes.Equal(got, want) {
				t.Errorf("committed body differs: %d bytes; want %d", len(got), len(want))
			}
			if _, err := d.Open(); err == nil {
				t.Errorf("Open after Commit succeeded")
			}
		})
	}
}

func TestDraftOpenAfterAbort(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	d, err := s.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("x\r\n"))
	d.Abort()
	if _, err := d.Open(); err == nil {
		t.Errorf("Open after Abort succeeded")
	}
}

// TestDraftCommitHeader: the body stored and handed on by Committed is
// the header, then the content, whether the header fits the room the
// draft keeps before its content or not, and for no content at all.
func TestDraftCommitHeader(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	ctx := context.Background()
	for _, hsize := range []int{0, 30, headroom, headroom + 1, 5000} {
		for _, csize := range []int{0, 10, 3000} {
			header := bytes.Repeat([]byte("h"), hsize)
			data := content("header", csize)
			d, err := s.Create(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if csize > 0 {
				if _, err := d.Write(data); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Commit(ctx, testEnvelope("bob@example.net"), header); err != nil {
				t.Fatal(err)
			}
			want := append(append([]byte{}, header...), data...)
			if got := readBody(t, s, d.ID()); !bytes.Equal(got, want) {
				t.Errorf("header %d, content %d: stored %d bytes, not the %d of header and content", hsize, csize, len(got), len(want))
			}
			if _, body := d.Committed(); !bytes.Equal(body, want) {
				t.Errorf("header %d, content %d: Committed body of %d bytes, not the %d of header and content", hsize, csize, len(body), len(want))
			}
		}
	}
}

// TestDraftPark: a parked draft is stored with its first attempt at the
// time Park gave and each recipient's own last reply, pending, never
// attempted (no attempt count, no time of one); it is not due before
// then, and due from then on.
func TestDraftPark(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := openSpool(t, t.TempDir(), Options{Now: func() time.Time { return t0 }})
	ctx := context.Background()
	d, err := s.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, "Subject: x\r\n\r\nhi\r\n")
	at := t0.Add(time.Hour)
	replies := []string{"not tried: example.net is down", "not tried: example.org is down"}
	d.Park(at, replies)
	if err := d.Commit(ctx, testEnvelope("bob@example.net", "carol@example.org"), nil); err != nil {
		t.Fatal(err)
	}
	m, err := s.Get(d.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !m.NextAttempt.Equal(at) || m.Attempts != 0 {
		t.Errorf("stored next attempt %v after %d attempts; want %v after none", m.NextAttempt, m.Attempts, at)
	}
	for i, rs := range m.Recipients {
		if rs.Status != Pending || rs.Attempts != 0 || rs.LastReply != replies[i] || !rs.Updated.IsZero() {
			t.Errorf("recipient %d: %+v; want pending, never attempted, last reply %q", i, rs, replies[i])
		}
	}
	if c, _ := d.Committed(); !c.NextAttempt.Equal(at) {
		t.Errorf("Committed's next attempt %v; want %v", c.NextAttempt, at)
	}
	for _, tc := range []struct {
		now time.Time
		due bool
	}{{t0, false}, {at.Add(-time.Second), false}, {at, true}} {
		due := false
		if err := s.DueIDs(tc.now, func(id string, _ time.Time) bool { due = due || id == d.ID(); return true }); err != nil {
			t.Fatal(err)
		}
		if due != tc.due {
			t.Errorf("due at %v: %v; want %v", tc.now, due, tc.due)
		}
	}
}
