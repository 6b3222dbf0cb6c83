package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/mailgate/gateway/core/envelope"
)

var cmpMessage = cmp.AllowUnexported(Message{})

// testNow is a fixed clock: records made under it compare exactly.
func testNow() time.Time { return time.Date(2026, 3, 14, 15, 9, 26, 535000000, time.UTC) }

func openSpool(t *testing.T, dir string, opt Options) *Spool {
	t.Helper()
	if opt.Now == nil {
		opt.Now = testNow
	}
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testEnvelope(rcpts ...string) *envelope.Envelope {
	env := &envelope.Envelope{
		Sender:     envelope.Address{Local: "alice", Domain: "example.org"},
		Size:       1234,
		Body:       envelope.Body8BitMIME,
		SMTPUTF8:   true,
		Ret:        envelope.RetHdrs,
		EnvID:      "QQ314159",
		Auth:       "<>",
		ClientIP:   "192.0.2.7",
		ClientHELO: "mx.example.org",
		AuthUser:   "alice",
		TLS:        true,
		Received:   time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC),
	}
	for i, r := range rcpts {
		local, domain, _ := strings.Cut(r, "@")
		env.Recipients = append(env.Recipients, envelope.Recipient{
			Address: envelope.Address{Local: local, Domain: domain},
			Notify:  envelope.Notify(i % 16),
			ORCPT:   "rfc822;" + r,
		})
	}
	return env
}

// content returns n bytes of CRLF-terminated lines that depend on seed.
func content(seed string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s line %d of the body, some text to fill it up\r\n", seed, i)
	}
	return b.Bytes()[:n]
}

// commit writes data in chunks of at most chunk bytes and commits it.
func commit(t *testing.T, s *Spool, env *envelope.Envelope, header, data []byte, chunk int) string {
	t.Helper()
	d, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for p := data; len(p) > 0; {
		n := min(chunk, len(p))
		if w, err := d.Write(p[:n]); err != nil || w != n {
			t.Fatalf("Write: got (%d, %v), want (%d, nil)", w, err, n)
		}
		p = p[n:]
	}
	if err := d.Commit(t.Context(), env, header); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d.ID()
}

func readBody(t *testing.T, s *Spool, id string) []byte {
	t.Helper()
	rc, err := s.Body(id)
	if err != nil {
		t.Fatalf("Body(%s): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Body(%s): read: %v", id, err)
	}
	return b
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestCommitGetBody(t *testing.T) {
	const threshold = 4096
	header := []byte("Received: from mx.example.org\r\nX-Hook: yes\r\n")
	tests := []struct {
		name    string
		size    int
		chunk   int
		spilled bool
	}{
		{name: "empty", size: 0, chunk: 1},
		{name: "small", size: 100, chunk: 7},
		{name: "at threshold", size: threshold, chunk: 1000},
		{name: "one over threshold", size: threshold + 1, chunk: threshold + 1, spilled: true},
		{name: "large streamed", size: 1 << 20, chunk: 3000, spilled: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, dir, Options{SpillThreshold: threshold})
			env := testEnvelope("bob@example.com", "carol@example.net")
			data := content(tc.name, tc.size)
			id := commit(t, s, env, header, data, tc.chunk)

			want := &Message{
				Version:    1,
				ID:         id,
				Envelope:   *env,
				Recipients: []RecipientState{{Status: Pending}, {Status: Pending}},
				Created:    testNow(),
				Size:       int64(len(header) + tc.size),
				spilled:    tc.spilled,
			}
			wantBody := append(slices.Clone(header), data...)
			check := func(t *testing.T, s *Spool) {
				t.Helper()
				got, err := s.Get(id)
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if diff := cmp.Diff(want, got, cmpMessage); diff != "" {
					t.Errorf("Get(%s) mismatch (-want +got):\n%s", id, diff)
				}
				if got := readBody(t, s, id); !bytes.Equal(got, wantBody) {
					t.Errorf("Body(%s): got %d bytes, want %d bytes (equal prefix %v)",
						id, len(got), len(wantBody), bytes.HasPrefix(wantBody, got))
				}
				if got := s.Len(); got != 1 {
					t.Errorf("Len: got %d, want 1", got)
				}
				if got := fileExists(filepath.Join(dir, "bodies", id)); got != tc.spilled {
					t.Errorf("body file exists: got %v, want %v", got, tc.spilled)
				}
				if got := fileExists(filepath.Join(dir, "bodies", id+".tmp")); got {
					t.Errorf("temp file exists after Commit")
				}
			}
			check(t, s)
			wantSpilled := int64(0)
			if tc.spilled {
				wantSpilled = 1
			}
			got := s.Stats()
			if got.FileBytes <= 0 {
				t.Errorf("Stats.FileBytes = %d, want spool.db's size", got.FileBytes)
			}
			got.FileBytes = 0
			if want := (Stats{Commits: 1, Batches: 1, Spilled: wantSpilled}); got != want {
				t.Errorf("Stats: got %+v, want %+v", got, want)
			}

			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			t.Run("reopened", func(t *testing.T) {
				check(t, openSpool(t, dir, Options{SpillThreshold: threshold}))
			})
		})
	}
}

func TestCommitValidation(t *testing.T) {
	tests := []struct {
		name string
		env  *envelope.Envelope
	}{
		{name: "nil envelope", env: nil},
		{name: "no recipients", env: testEnvelope()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openSpool(t, t.TempDir(), Options{})
			d, err := s.Create(t.Context())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if err := d.Commit(t.Context(), tc.env, nil); err == nil || !strings.Contains(err.Error(), "no recipients") {
				t.Errorf("Commit: got %v, want a no recipients error", err)
			}
			if err := d.Abort(); err != nil {
				t.Errorf("Abort after failed Commit: %v", err)
			}
			if got := s.Len(); got != 0 {
				t.Errorf("Len: got %d, want 0", got)
			}
		})
	}
}

func TestCommitContextCanceled(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SpillThreshold: 10})
	d, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := d.Write(content("x", 100)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.Commit(ctx, testEnvelope("bob@example.com"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit: got %v, want context.Canceled", err)
	}
	if err := d.Commit(t.Context(), testEnvelope("bob@example.com"), nil); err == nil {
		t.Errorf("second Commit after a failed one: got nil, want error")
	}
	if err := d.Abort(); err != nil {
		t.Errorf("Abort: %v", err)
	}
	if _, err := s.Get(d.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get: got %v, want ErrNotFound", err)
	}
	assertDirEntries(t, filepath.Join(dir, "bodies"), nil)
}

func assertDirEntries(t *testing.T, dir string, want []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files in %s (-want +got):\n%s", dir, diff)
	}
}

func TestAbort(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		spilled bool
	}{
		{name: "in memory", size: 10},
		{name: "spilled", size: 5000, spilled: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, dir, Options{SpillThreshold: 1024})
			d, err := s.Create(t.Context())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := d.Write(content("abort", tc.size)); err != nil {
				t.Fatalf("Write: %v", err)
			}
			tmp := filepath.Join(dir, "bodies", d.ID()+".tmp")
			if got := fileExists(tmp); got != tc.spilled {
				t.Errorf("temp file exists before Abort: got %v, want %v", got, tc.spilled)
			}
			if err := d.Abort(); err != nil {
				t.Errorf("Abort: %v", err)
			}
			if err := d.Abort(); err != nil {
				t.Errorf("second Abort: %v", err)
			}
			if fileExists(tmp) {
				t.Errorf("temp file exists after Abort")
			}
			if _, err := d.Write([]byte("x")); err == nil {
				t.Errorf("Write after Abort: got nil, want error")
			}
			if err := d.Commit(t.Context(), testEnvelope("bob@example.com"), nil); err == nil {
				t.Errorf("Commit after Abort: got nil, want error")
			}
			if got := s.Len(); got != 0 {
				t.Errorf("Len: got %d, want 0", got)
			}
		})
	}

	t.Run("after successful commit", func(t *testing.T) {
		dir := t.TempDir()
		s := openSpool(t, dir, Options{SpillThreshold: 1024})
		d, err := s.Create(t.Context())
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		data := content("kept", 5000)
		d.Write(data)
		if err := d.Commit(t.Context(), testEnvelope("bob@example.com"), nil); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if err := d.Abort(); err != nil {
			t.Errorf("Abort: %v", err)
		}
		if got := readBody(t, s, d.ID()); !bytes.Equal(got, data) {
			t.Errorf("Body after Abort of a committed draft: got %d bytes, want %d", len(got), len(data))
		}
	})
}

func TestConcurrentCommits(t *testing.T) {
	const n = 64
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SpillThreshold: 4096})
	type result struct {
		id   string
		body []byte
		err  error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			d, err := s.Create(t.Context())
			if err != nil {
				results <- result{err: err}
				return
			}
			data := content(fmt.Sprint(i), 100+i*97) // a few over the threshold
			header := []byte(fmt.Sprintf("X-N: %d\r\n", i))
			if _, err := d.Write(data); err != nil {
				results <- result{err: err}
				return
			}
			err = d.Commit(t.Context(), testEnvelope("bob@example.com"), header)
			results <- result{id: d.ID(), body: append(header, data...), err: err}
		})
	}
	close(start)
	wg.Wait()
	close(results)

	seen := map[string]bool{}
	for r := range results {
		if r.err != nil {
			t.Errorf("commit: %v", r.err)
			continue
		}
		seen[r.id] = true
		if got := readBody(t, s, r.id); !bytes.Equal(got, r.body) {
			t.Errorf("Body(%s): got %q, want %q", r.id, got, r.body)
		}
	}
	if len(seen) != n {
		t.Errorf("distinct committed IDs: got %d, want %d", len(seen), n)
	}
	if got := s.Len(); got != n {
		t.Errorf("Len: got %d, want %d", got, n)
	}
	st := s.Stats()
	t.Logf("stats: %+v", st)
	if st.Commits != n {
		t.Errorf("Stats.Commits: got %d, want %d", st.Commits, n)
	}
	if st.Batches >= st.Commits {
		t.Errorf("Stats.Batches = %d, want fewer than Commits = %d (no group commit)", st.Batches, st.Commits)
	}
}

func TestOrphanSweep(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SpillThreshold: 100})
	kept := commit(t, s, testEnvelope("bob@example.com"), nil, content("kept", 1000), 1000)
	inline := commit(t, s, testEnvelope("bob@example.com"), nil, content("inline", 10), 10)
	d, err := s.Create(t.Context()) // left open, as if the process died mid-DATA
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	d.Write(content("draft", 1000))
	orphan := s.ids.next(testNow())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	bodies := filepath.Join(dir, "bodies")
	for _, name := range []string{orphan, orphan + ".tmp", inline, "README"} {
		if err := os.WriteFile(filepath.Join(bodies, name), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	var logs logBuffer
	s = openSpool(t, dir, Options{SpillThreshold: 100, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	// The temp files are gone; the orphan and the stray file named like the
	// inline message are moved to orphans/, each with a WARN; a file that
	// isn't ours stays.
	assertDirEntries(t, bodies, []string{kept, "README"})
	assertDirEntries(t, filepath.Join(dir, "orphans"), []string{inline, orphan})
	for _, id := range []string{inline, orphan} {
		if b, err := os.ReadFile(filepath.Join(dir, "orphans", id)); err != nil || string(b) != "junk" {
			t.Errorf("orphans/%s: got %q, %v; want the file as it was", id, b, err)
		}
		if want := "level=WARN msg=\"queue: body with no record moved to orphans\" file=" + filepath.Join(dir, "orphans", id); !strings.Contains(logs.String(), want) {
			t.Errorf("log: got %q, want %q", logs.String(), want)
		}
	}
	if got := readBody(t, s, kept); !bytes.Equal(got, content("kept", 1000)) {
		t.Errorf("Body(kept): got %d bytes, want 1000", len(got))
	}
	if got := readBody(t, s, inline); !bytes.Equal(got, content("inline", 10)) {
		t.Errorf("Body(inline): got %q", got)
	}
	if got := s.Len(); got != 2 {
		t.Errorf("Len: got %d, want 2", got)
	}
}

// logBuffer is a concurrency-safe buffer for a test logger.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestMissingBodyFile(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SpillThreshold: 100})
	id := commit(t, s, testEnvelope("bob@example.com"), nil, content("lost", 1000), 1000)
	s.Close()
	if err := os.Remove(filepath.Join(dir, "bodies", id)); err != nil {
		t.Fatal(err)
	}

	var logs logBuffer
	s = openSpool(t, dir, Options{SpillThreshold: 100, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), id) {
		t.Errorf("log: got %q, want an error naming %s", logs.String(), id)
	}
	if _, err := s.Get(id); err != nil {
		t.Errorf("Get: the record must be kept: %v", err)
	}
	if _, err := s.Body(id); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Body: got %v, want os.ErrNotExist", err)
	}
}

// TestReplace: Replace stores the caller's copy, keeps ID, Size and
// Created from old, moves the schedule entry, and refuses a record that is
// gone or misaligned recipients.
func TestReplace(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	id := commit(t, s, testEnvelope("bob@example.com", "carol@example.net"), []byte("H: 1\r\n"), []byte("body\r\n"), 100)
	old, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	later := testNow().Add(5 * time.Minute)
	m := *old
	m.Recipients = []RecipientState{
		{Status: Delivered, LastReply: "250 2.0.0 ok", Attempts: 1, Updated: testNow()},
		{Status: Deferred, LastReply: "451 4.7.1 try later", Attempts: 1, Updated: testNow()},
	}
	m.Attempts, m.NextAttempt = 1, later
	m.ID, m.Size, m.Created = "changed", 1, time.Time{} // taken from old
	if err := s.Replace(t.Context(), old, &m); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	s.Close()
	s = openSpool(t, dir, Options{})
	got, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	want := *old
	want.Recipients, want.Attempts, want.NextAttempt = m.Recipients, 1, later
	if diff := cmp.Diff(&want, got, cmp.AllowUnexported(Message{})); diff != "" {
		t.Errorf("after Replace (-want +got):\n%s", diff)
	}
	if due := dueIDs(t, s, testNow()); len(due) != 0 {
		t.Errorf("due now: %v, want none (moved to %v)", due, later)
	}
	if due := dueIDs(t, s, later); len(due) != 1 || due[0] != id {
		t.Errorf("due at %v: %v, want [%s]", later, due, id)
	}

	bad := *got
	bad.Recipients = bad.Recipients[:1]
	if err := s.Replace(t.Context(), got, &bad); err == nil {
		t.Error("Replace with misaligned recipients succeeded")
	}
	if err := s.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(t.Context(), got, got); !errors.Is(err, ErrNotFound) {
		t.Errorf("Replace of a deleted message: %v, want ErrNotFound", err)
	}
}

func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	id := commit(t, s, testEnvelope("bob@example.com", "carol@example.net"), []byte("H: 1\r\n"), []byte("body\r\n"), 100)
	later := testNow().Add(5 * time.Minute)

	err := s.Update(t.Context(), id, func(m *Message) error {
		m.Attempts++
		m.NextAttempt = later
		m.Recipients[0] = RecipientState{Status: Delivered, LastReply: "250 2.0.0 ok", Attempts: 1, Updated: testNow()}
		m.Recipients[1] = RecipientState{Status: Deferred, LastReply: "451 4.7.1 try later", Attempts: 1, Updated: testNow()}
		m.ID = "changed"        // ignored
		m.Size = 1              // ignored
		m.Created = time.Time{} // ignored
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	want := &Message{
		Version:  1,
		ID:       id,
		Envelope: *testEnvelope("bob@example.com", "carol@example.net"),
		Recipients: []RecipientState{
			{Status: Delivered, LastReply: "250 2.0.0 ok", Attempts: 1, Updated: testNow()},
			{Status: Deferred, LastReply: "451 4.7.1 try later", Attempts: 1, Updated: testNow()},
		},
		Created:     testNow(),
		Size:        12,
		Attempts:    1,
		NextAttempt: later,
	}
	s.Close()
	s = openSpool(t, dir, Options{})
	got, err := s.Get(id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpMessage); diff != "" {
		t.Errorf("after Update and reopen (-want +got):\n%s", diff)
	}

	errFn := errors.New("no thanks")
	failing := []struct {
		name string
		id   string
		fn   func(*Message) error
		want func(error) bool
	}{
		{name: "fn error", id: id, fn: func(m *Message) error { m.Attempts = 99; return errFn },
			want: func(err error) bool { return errors.Is(err, errFn) }},
		{name: "fn panics", id: id, fn: func(m *Message) error { panic("boom") },
			want: func(err error) bool { return err != nil && strings.Contains(err.Error(), "boom") }},
		{name: "misaligned recipients", id: id, fn: func(m *Message) error { m.Recipients = m.Recipients[:1]; return nil },
			want: func(err error) bool { return err != nil && strings.Contains(err.Error(), "recipient states") }},
		{name: "unknown id", id: s.ids.next(testNow()), fn: func(*Message) error { return nil },
			want: func(err error) bool { return errors.Is(err, ErrNotFound) }},
		{name: "malformed id", id: "../spool.db", fn: func(*Message) error { return nil },
			want: func(err error) bool { return errors.Is(err, ErrNotFound) }},
	}
	for _, tc := range failing {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Update(t.Context(), tc.id, tc.fn); !tc.want(err) {
				t.Errorf("Update: got %v", err)
			}
			got, err := s.Get(id)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := cmp.Diff(want, got, cmpMessage); diff != "" {
				t.Errorf("a failed Update changed the record (-want +got):\n%s", diff)
			}
		})
	}
	// The commit loop survived the panic.
	commit(t, s, testEnvelope("bob@example.com"), nil, []byte("after\r\n"), 100)
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{name: "inline", size: 10},
		{name: "spilled", size: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, dir, Options{SpillThreshold: 100})
			other := commit(t, s, testEnvelope("bob@example.com"), nil, content("other", tc.size), 100)
			id := commit(t, s, testEnvelope("bob@example.com"), nil, content("gone", tc.size), 100)
			if err := s.Delete(t.Context(), id); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get: got %v, want ErrNotFound", err)
			}
			if _, err := s.Body(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Body: got %v, want ErrNotFound", err)
			}
			if fileExists(filepath.Join(dir, "bodies", id)) {
				t.Errorf("body file still exists")
			}
			if err := s.Delete(t.Context(), id); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Delete: got %v, want ErrNotFound", err)
			}
			if got := s.Len(); got != 1 {
				t.Errorf("Len: got %d, want 1", got)
			}
			if got := dueIDs(t, s, testNow()); !slices.Equal(got, []string{other}) {
				t.Errorf("Due: got %v, want [%s]", got, other)
			}
			s.Close()
			s = openSpool(t, dir, Options{SpillThreshold: 100})
			if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after reopen: got %v, want ErrNotFound", err)
			}
			// The bodies bucket has no leftover either.
			err := s.db.View(func(tx *bolt.Tx) error {
				if v := tx.Bucket(bucketBodies).Get([]byte(id)); v != nil {
					t.Errorf("bodies bucket still holds %s", id)
				}
				if n := tx.Bucket(bucketSchedule).Stats().KeyN; n != 1 {
					t.Errorf("schedule keys: got %d, want 1", n)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func dueIDs(t *testing.T, s *Spool, now time.Time) []string {
	t.Helper()
	var ids []string
	if err := s.Due(now, func(m *Message) bool { ids = append(ids, m.ID); return true }); err != nil {
		t.Fatalf("Due: %v", err)
	}
	return ids
}

func TestDue(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	now := testNow()
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = commit(t, s, testEnvelope("bob@example.com"), nil, []byte("x\r\n"), 10)
	}
	set := func(id string, next time.Time, held bool) {
		t.Helper()
		err := s.Update(t.Context(), id, func(m *Message) error {
			m.NextAttempt, m.Held = next, held
			return nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	set(ids[0], now.Add(2*time.Minute), false)
	set(ids[1], now.Add(-time.Minute), false)
	set(ids[2], now.Add(time.Hour), false)
	set(ids[3], time.Time{}, true) // held, due
	set(ids[4], now, false)
	// ids[5] stays at the zero time: due now.

	tests := []struct {
		name string
		now  time.Time
		want []string
	}{
		{name: "now", now: now, want: []string{ids[5], ids[1], ids[4]}},
		{name: "in 2 minutes", now: now.Add(2 * time.Minute), want: []string{ids[5], ids[1], ids[4], ids[0]}},
		{name: "tomorrow", now: now.Add(24 * time.Hour), want: []string{ids[5], ids[1], ids[4], ids[0], ids[2]}},
		{name: "zero time", now: time.Time{}, want: []string{ids[5]}},
	}
	nexts := map[string]time.Time{ids[0]: now.Add(2 * time.Minute), ids[1]: now.Add(-time.Minute), ids[2]: now.Add(time.Hour), ids[4]: now}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, dueIDs(t, s, tc.now)); diff != "" {
				t.Errorf("Due(%v) (-want +got):\n%s", tc.now, diff)
			}
			// DueIDs walks the same messages from the schedule alone.
			var got []string
			err := s.DueIDs(tc.now, func(id string, next time.Time) bool {
				if !next.Equal(nexts[id]) {
					t.Errorf("DueIDs: %s next %v, want %v", id, next, nexts[id])
				}
				got = append(got, id)
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DueIDs(%v) (-want +got):\n%s", tc.now, diff)
			}
		})
	}

	t.Run("stop early", func(t *testing.T) {
		var got []string
		s.Due(now, func(m *Message) bool { got = append(got, m.ID); return len(got) < 2 })
		if want := []string{ids[5], ids[1]}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("release", func(t *testing.T) {
		set(ids[3], time.Time{}, false)
		if got, want := dueIDs(t, s, now), []string{ids[3], ids[5], ids[1], ids[4]}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
}

// TestPaging walks more messages than one read transaction holds, updating
// and deleting from inside the callbacks.
func TestPaging(t *testing.T) {
	const n = 2*listPage + 17
	s := openSpool(t, t.TempDir(), Options{})
	ids := make([]string, n)
	drafts := make([]*Draft, n)
	for i := range drafts {
		d, err := s.Create(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ids[i], drafts[i] = d.ID(), d
	}
	// Commit concurrently: the IDs were taken in order above.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for _, d := range drafts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			d.Write([]byte("x\r\n"))
			errs <- d.Commit(t.Context(), testEnvelope("bob@example.com"), nil)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}

	var listed []string
	err := s.List(func(m *Message) bool {
		listed = append(listed, m.ID)
		if len(listed)%3 == 0 { // change the spool while walking it
			if err := s.Update(t.Context(), m.ID, func(m *Message) error { m.Attempts++; return nil }); err != nil {
				t.Errorf("Update in List: %v", err)
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff(ids, listed); diff != "" {
		t.Errorf("List order (-want +got):\n%s", diff)
	}

	var due []string
	err = s.Due(testNow(), func(m *Message) bool {
		due = append(due, m.ID)
		if err := s.Delete(t.Context(), m.ID); err != nil {
			t.Errorf("Delete in Due: %v", err)
		}
		return true
	})
	if err != nil {
		t.Fatalf("Due: %v", err)
	}
	if diff := cmp.Diff(ids, due); diff != "" {
		t.Errorf("Due order (-want +got):\n%s", diff)
	}
	if got := s.Len(); got != 0 {
		t.Errorf("Len after deleting all: got %d, want 0", got)
	}

	t.Run("stop early", func(t *testing.T) {
		calls := 0
		s.List(func(*Message) bool { calls++; return false })
		if calls != 0 {
			t.Errorf("List on an empty spool called fn %d times", calls)
		}
	})
}

func TestClosed(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := commit(t, s, testEnvelope("bob@example.com"), nil, []byte("x\r\n"), 10)
	d, err := s.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	checks := []struct {
		name string
		err  error
	}{
		{"Commit", d.Commit(t.Context(), testEnvelope("bob@example.com"), nil)},
		{"Create", func() error { _, err := s.Create(t.Context()); return err }()},
		{"Update", s.Update(t.Context(), id, func(*Message) error { return nil })},
		{"Delete", s.Delete(t.Context(), id)},
		{"Get", func() error { _, err := s.Get(id); return err }()},
		{"Body", func() error { _, err := s.Body(id); return err }()},
		{"List", s.List(func(*Message) bool { return true })},
		{"Due", s.Due(testNow(), func(*Message) bool { return true })},
	}
	for _, c := range checks {
		if !errors.Is(c.err, ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", c.name, c.err)
		}
	}
	if err := d.Abort(); err != nil {
		t.Errorf("Abort after Close: %v", err)
	}
}

// TestCloseDrains closes the spool while commits are in flight: every
// Commit either succeeds (and the message is there after reopening) or
// fails with ErrClosed.
func TestCloseDrains(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	type result struct {
		id  string
		err error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			d, err := s.Create(t.Context())
			if err != nil {
				results <- result{err: err}
				return
			}
			d.Write([]byte("x\r\n"))
			results <- result{id: d.ID(), err: d.Commit(t.Context(), testEnvelope("bob@example.com"), nil)}
		})
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(results)
	s = openSpool(t, dir, Options{})
	var ok, closed int
	for r := range results {
		switch {
		case r.err == nil:
			ok++
			if _, err := s.Get(r.id); err != nil {
				t.Errorf("committed %s missing after reopen: %v", r.id, err)
			}
		case errors.Is(r.err, ErrClosed):
			closed++
		default:
			t.Errorf("Commit: got %v, want nil or ErrClosed", r.err)
		}
	}
	t.Logf("committed %d, refused %d", ok, closed)
	if got := s.Len(); got != ok {
		t.Errorf("Len: got %d, want %d", got, ok)
	}
}

// TestBatchIsolation runs a batch in which one request fails after writing:
// the batch is redone without it, and the others are committed.
func TestBatchIsolation(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	put := func(key string, fail error) *request {
		return &request{name: key, done: make(chan struct{}), apply: func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketBodies).Put([]byte(key), []byte("v")); err != nil {
				return err
			}
			if fail != nil {
				return fail
			}
			return nil
		}}
	}
	errWrite := errors.New("disk on fire")
	errPlain := errors.New("bad input")
	batch := []*request{
		put("a", nil),
		put("b", &writeError{errWrite}),
		put("c", nil),
		{name: "d", done: make(chan struct{}), apply: func(*bolt.Tx) error { return errPlain }},
	}
	s.write(batch)
	for i, want := range []error{nil, errWrite, nil, errPlain} {
		if got := batch[i].err; !errors.Is(got, want) || (want == nil && got != nil) {
			t.Errorf("request %s: got %v, want %v", batch[i].name, got, want)
		}
	}
	s.db.View(func(tx *bolt.Tx) error {
		for key, want := range map[string]bool{"a": true, "b": false, "c": true} {
			if got := tx.Bucket(bucketBodies).Get([]byte(key)) != nil; got != want {
				t.Errorf("key %s stored: got %v, want %v", key, got, want)
			}
		}
		return nil
	})

	t.Run("panic", func(t *testing.T) {
		r := &request{name: "boom", apply: func(*bolt.Tx) error { panic("boom") }}
		if err := s.submit(t.Context(), r); err == nil || !strings.Contains(err.Error(), "internal error: boom") {
			t.Errorf("submit: got %v, want an internal error", err)
		}
		commit(t, s, testEnvelope("bob@example.com"), nil, []byte("after\r\n"), 10)
	})
}

func TestStatusText(t *testing.T) {
	tests := []struct {
		st   Status
		text string
	}{
		{Pending, "pending"},
		{Delivered, "delivered"},
		{Deferred, "deferred"},
		{Failed, "failed"},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			if got := tc.st.String(); got != tc.text {
				t.Errorf("String: got %q, want %q", got, tc.text)
			}
			b, err := tc.st.MarshalText()
			if err != nil || string(b) != tc.text {
				t.Errorf("MarshalText: got (%q, %v), want %q", b, err, tc.text)
			}
			var st Status
			if err := st.UnmarshalText([]byte(tc.text)); err != nil || st != tc.st {
				t.Errorf("UnmarshalText: got (%v, %v), want %v", st, err, tc.st)
			}
		})
	}
	if got := Status(9).String(); got != "status(9)" {
		t.Errorf("String of unknown: got %q", got)
	}
	if _, err := Status(9).MarshalText(); err == nil {
		t.Errorf("MarshalText of unknown: got nil error")
	}
	var st Status
	if err := st.UnmarshalText([]byte("Pending")); err == nil {
		t.Errorf("UnmarshalText(Pending): got nil error")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	m := &Message{
		Version:  1,
		ID:       "0123456789abcdef",
		Envelope: *testEnvelope("bob@example.com", "carol@example.net", "dave@example.com"),
		Recipients: []RecipientState{
			{Status: Delivered, LastReply: "250 ok", Attempts: 2, Updated: testNow()},
			{Status: Deferred, LastReply: "451 later", TLSPolicy: "mta-sts", Attempts: 1, Updated: testNow().Add(time.Second)},
			{Status: Failed, LastReply: "550 no", Attempts: 3, Updated: testNow().Add(time.Minute)},
		},
		Created:     testNow(),
		Size:        4321,
		Attempts:    3,
		NextAttempt: testNow().Add(time.Hour),
		Held:        true,
		DelayWarned: true,
		Hops:        4,
		spilled:     true,
	}
	m.Envelope.Submitted = true
	m.Envelope.RequireTLS = true
	m.Envelope.TLSOptional = true // never both from the server; the record keeps what it is given
	b, err := encodeMessage(m)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	if !bytes.HasPrefix(b, []byte(`{"v":1,`)) {
		t.Errorf("record starts %.20q, want the version first", b)
	}
	got, err := decodeMessage(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(m, got, cmpMessage); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	// A new field in the envelope types must get a place in the record.
	for _, c := range []struct {
		typ  reflect.Type
		want int
	}{
		{reflect.TypeFor[envelope.Envelope](), 16},
		{reflect.TypeFor[envelope.Recipient](), 3},
		{reflect.TypeFor[envelope.Address](), 2},
		{reflect.TypeFor[Message](), 12},
		{reflect.TypeFor[RecipientState](), 5},
	} {
		if got := c.typ.NumField(); got != c.want {
			t.Errorf("%v has %d fields, the record maps %d: update message.go", c.typ, got, c.want)
		}
	}
}

func TestDecodeTolerant(t *testing.T) {
	tests := []struct {
		name string
		json string
		want *Message
	}{
		{
			// A record from before "submitted" existed reads as not
			// submitted: outbound DKIM does not sign it.
			name: "missing version and states, unknown fields",
			json: `{"id":"x","future":{"a":1},"envelope":{"sender":{"local":"a","domain":"b.example"},` +
				`"recipients":[{"address":{"local":"c","domain":"d.example"},"x":1}]}}`,
			want: &Message{
				Version: 1,
				ID:      "x",
				Envelope: envelope.Envelope{
					Sender:     envelope.Address{Local: "a", Domain: "b.example"},
					Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "c", Domain: "d.example"}}},
				},
				Recipients: []RecipientState{{Status: Pending}},
			},
		},
		{
			name: "newer version",
			json: `{"v":2,"id":"y","body":"file"}`,
			want: &Message{Version: 2, ID: "y", spilled: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeMessage([]byte(tc.json))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, cmpMessage); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := decodeMessage([]byte(`{"recipients":[{"status":"lost"}]}`)); err == nil {
		t.Errorf("decode of an unknown status: got nil error")
	}
}

// TestOpenInUse: opening a spool another gateway has open says it is in
// use, not damaged (its pages may be half written when the walk reads).
func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "in use") || errors.Is(err, ErrDamaged) {
		t.Errorf("second Open: %v; want an in-use error, not damage", err)
	}
}

// TestRecordRequireTLS pins the record's names for RFC 8689's flags, which
// outlive releases: present only when set, read back exactly.
func TestRecordRequireTLS(t *testing.T) {
	for _, tc := range []struct {
		name        string
		requireTLS  bool
		tlsOptional bool
		want        []string // fragments of the record
		absent      []string
	}{
		{name: "neither", absent: []string{`"requiretls"`, `"tls_optional"`}},
		{name: "requiretls", requireTLS: true, want: []string{`"requiretls":true`}, absent: []string{`"tls_optional"`}},
		{name: "tls optional", tlsOptional: true, want: []string{`"tls_optional":true`}, absent: []string{`"requiretls"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{Version: 1, ID: "0123456789abcdef", Envelope: *testEnvelope("bob@example.com", "carol@example.net")}
			m.Recipients = []RecipientState{{Status: Pending}}
			m.Envelope.RequireTLS, m.Envelope.TLSOptional = tc.requireTLS, tc.tlsOptional
			b, err := encodeMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !bytes.Contains(b, []byte(w)) {
					t.Errorf("record %s lacks %s", b, w)
				}
			}
			for _, a := range tc.absent {
				if bytes.Contains(b, []byte(a)) {
					t.Errorf("record %s has %s", b, a)
				}
			}
			got, err := decodeMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Envelope.RequireTLS != tc.requireTLS || got.Envelope.TLSOptional != tc.tlsOptional {
				t.Errorf("read back RequireTLS=%v TLSOptional=%v, want %v %v",
					got.Envelope.RequireTLS, got.Envelope.TLSOptional, tc.requireTLS, tc.tlsOptional)
			}
		})
	}
}
