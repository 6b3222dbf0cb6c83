package queue_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/queue/queuetest"
)

// TestOpenDamaged: a damaged spool.db is refused with an error that names
// the file and what is wrong, and nothing is deleted or changed: not the
// file, not a body.
func TestOpenDamaged(t *testing.T) {
	for _, d := range queuetest.Damages() {
		t.Run(d.Name, func(t *testing.T) {
			dir := t.TempDir()
			queuetest.Fill(t, dir, 90)
			d.Apply(t, dir)
			openRefused(t, dir, queue.ErrDamaged, d.Word)
		})
	}
}

// openRefused opens the spool in dir and checks that Open refuses it
// with an error matching want that names spool.db and holds word, and
// changes no file.
func openRefused(t *testing.T, dir string, want error, word string) {
	t.Helper()
	before := queuetest.Snapshot(t, dir)
	s, err := queue.Open(dir, queue.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open: got nil error, want the spool refused")
	}
	t.Logf("Open: %v", err)
	if !errors.Is(err, want) || !strings.Contains(err.Error(), queuetest.DB(dir)) || !strings.Contains(err.Error(), word) {
		t.Errorf("Open: got %v; want %v naming %s and saying %q", err, want, queuetest.DB(dir), word)
	}
	if after := queuetest.Snapshot(t, dir); !maps.Equal(before, after) {
		t.Errorf("files changed by a refused Open:\nbefore %v\nafter  %v", before, after)
	}
}

// TestOpenFreshBesideBodies: a spool.db that is empty or missing beside
// spilled bodies is refused (ErrEmptySpool), naming the file, and nothing
// changes; with AcceptEmptySpool it starts empty and the bodies are moved
// to orphans/, intact, each logged at WARN.
func TestOpenFreshBesideBodies(t *testing.T) {
	for _, tt := range []struct {
		name  string
		apply func(testing.TB, string)
	}{
		{"0-byte spool.db", queuetest.Empty},
		{"missing spool.db", queuetest.Remove},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ids := queuetest.Fill(t, dir, 9)
			tt.apply(t, dir)
			openRefused(t, dir, queue.ErrEmptySpool, "3 message bodies")

			var logs strings.Builder
			s, err := queue.Open(dir, queue.Options{AcceptEmptySpool: true, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("Open with AcceptEmptySpool: %v", err)
			}
			defer s.Close()
			if s.Len() != 0 {
				t.Errorf("Len: got %d, want 0", s.Len())
			}
			for i, id := range ids {
				if i%3 != 2 {
					continue // not spilled
				}
				header, data := queuetest.Body(i)
				got, err := os.ReadFile(filepath.Join(dir, "orphans", id))
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("orphans/%s: got %d bytes, %v; want the body file's %d bytes (header %q)", id, len(got), err, len(data), header)
				}
				if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), id) {
					t.Errorf("log: got %q, want a WARN naming %s", logs.String(), id)
				}
			}
		})
	}
}

// TestCheckAndSalvage: Check reports a sound spool as sound and each
// damage as damage, and Salvage copies every message it can read, intact,
// into a new spool that opens, holding those found outside the tree;
// neither changes the spool it reads.
func TestCheckAndSalvage(t *testing.T) {
	type want struct {
		word        string // in a problem; "" = sound
		all         bool   // every message is copied
		loose, lost int    // -1: any
	}
	cases := []struct {
		name  string
		apply func(testing.TB, string)
		want  want
	}{
		{"sound", func(testing.TB, string) {}, want{all: true}},
		{"truncated", queuetest.Truncate, want{word: "truncated", loose: -1, lost: -1}},
		{"bad page type", func(t testing.TB, dir string) { queuetest.BadPageType(t, dir, "messages") }, want{word: "type 0x20", all: true, loose: 90}},
		{"random bytes in a branch page", func(t testing.TB, dir string) { queuetest.ScrambleBranch(t, dir, "messages", 9) }, want{word: "page", all: true, loose: 90}},
		{"bad meta pages", queuetest.BadMeta, want{word: "no valid meta page", all: true, loose: 90}},
		{"0-byte spool.db", queuetest.Empty, want{word: "holds 30 message bodies"}},
		{"missing spool.db", queuetest.Remove, want{word: "holds 30 message bodies"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ids := queuetest.Fill(t, dir, 90)
			tt.apply(t, dir)
			before := queuetest.Snapshot(t, dir)

			r, err := queue.Check(dir)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			checkReport(t, "Check", r, tt.want.word, tt.want.loose, tt.want.lost)

			out := filepath.Join(t.TempDir(), "salvaged")
			sr, err := queue.Salvage(t.Context(), dir, out)
			if err != nil {
				t.Fatalf("Salvage: %v", err)
			}
			checkReport(t, "Salvage", sr, tt.want.word, tt.want.loose, tt.want.lost)
			if sr.Copied != r.Messages || sr.Messages != r.Messages || sr.Loose != r.Loose {
				t.Errorf("Salvage copied %d (%d loose), Check read %d (%d loose): want the same", sr.Copied, sr.Loose, r.Messages, r.Loose)
			}
			if tt.want.all && sr.Copied != len(ids) {
				t.Errorf("Salvage copied %d messages, want all %d; problems %q", sr.Copied, len(ids), sr.Problems)
			}
			if tt.name == "truncated" && sr.Copied == 0 {
				t.Errorf("Salvage copied nothing of a spool truncated to half")
			}
			checkSalvaged(t, out, ids, sr)
			if after := queuetest.Snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("Check or Salvage changed the spool it read")
			}
		})
	}
}

func checkReport(t *testing.T, what string, r *queue.Report, word string, loose, lost int) {
	t.Helper()
	t.Logf("%s: %d messages (%d spilled, %d loose), %d lost, %d orphans, problems %q", what, r.Messages, r.Spilled, r.Loose, r.Lost, r.Orphans, r.Problems)
	switch {
	case word == "" && r.Damaged():
		t.Errorf("%s: a sound spool reported damaged: %q", what, r.Problems)
	case word != "" && !strings.Contains(strings.Join(r.Problems, "\n"), word):
		t.Errorf("%s: problems %q, want one saying %q", what, r.Problems, word)
	case loose >= 0 && r.Loose != loose:
		t.Errorf("%s: %d messages from loose pages, want %d", what, r.Loose, loose)
	case lost >= 0 && r.Lost != lost:
		t.Errorf("%s: %d messages lost, want %d", what, r.Lost, lost)
	}
}

// checkSalvaged opens the salvaged spool in out and checks that it holds
// r.Copied of the messages ids, each with the body Fill gave it, held if
// and only if it came from a loose page, and no other message.
func checkSalvaged(t *testing.T, out string, ids []string, r *queue.Report) {
	t.Helper()
	s, err := queue.Open(out, queue.Options{})
	if err != nil {
		t.Fatalf("Open(salvaged): %v", err)
	}
	defer s.Close()
	if s.Len() != r.Copied {
		t.Errorf("salvaged spool: Len %d, want %d", s.Len(), r.Copied)
	}
	held := 0
	for i, id := range ids {
		m, err := s.Get(id)
		if errors.Is(err, queue.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if m.Held {
			held++
		}
		rc, err := s.Body(id)
		if err != nil {
			t.Errorf("Body(%s): %v", id, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		header, data := queuetest.Body(i)
		if want := append(header, data...); err != nil || !bytes.Equal(got, want) {
			t.Errorf("Body(%s): got %d bytes (%v), want %d", id, len(got), err, len(want))
		}
	}
	if held != r.Loose {
		t.Errorf("salvaged spool: %d held, want the %d from loose pages", held, r.Loose)
	}
	if r.Messages > 0 {
		due := 0
		s.DueIDs(time.Now(), func(string, time.Time) bool { due++; return true })
		if due != r.Copied-r.Loose {
			t.Errorf("salvaged spool: %d due, want %d (the schedule rebuilt for all but the held)", due, r.Copied-r.Loose)
		}
	}
}

// TestCheckInUse: Check and Salvage refuse a spool a gateway has open.
func TestCheckInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := queue.Open(dir, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := queue.Check(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Check: got %v, want spool.db in use", err)
	}
	if _, err := queue.Salvage(t.Context(), dir, filepath.Join(t.TempDir(), "new")); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Salvage: got %v, want spool.db in use", err)
	}
}
