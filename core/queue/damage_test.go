package queue_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
			before := snapshot(t, dir)
			s, err := queue.Open(dir, queue.Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open: got nil error, want the damage reported")
			}
			t.Logf("Open: %v", err)
			if !errors.Is(err, queue.ErrDamaged) || !strings.Contains(err.Error(), queuetest.DB(dir)) ||
				!strings.Contains(err.Error(), d.Word) {
				t.Errorf("Open: got %v; want ErrDamaged naming %s and saying %q", err, queuetest.DB(dir), d.Word)
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("files changed by a refused Open:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// snapshot maps every file under dir to the SHA-256 of its content.
func snapshot(t *testing.T, dir string) map[string]string {
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
		rel, _ := filepath.Rel(dir, p)
		m[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
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
			before := snapshot(t, dir)
			s, err := queue.Open(dir, queue.Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open: got nil error, want the spool refused")
			}
			if !errors.Is(err, queue.ErrEmptySpool) || !strings.Contains(err.Error(), queuetest.DB(dir)) ||
				!strings.Contains(err.Error(), "3 message bodies") {
				t.Errorf("Open: got %v; want ErrEmptySpool naming %s and 3 bodies", err, queuetest.DB(dir))
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("files changed by a refused Open:\nbefore %v\nafter  %v", before, after)
			}

			var logs strings.Builder
			s, err = queue.Open(dir, queue.Options{AcceptEmptySpool: true, Log: slog.New(slog.NewTextHandler(&logs, nil))})
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
