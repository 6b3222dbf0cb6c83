package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
)

var bob = envelope.Address{Local: "Bob", Domain: "Example.NET"}

// alice is the envelope sender of the test deliveries.
var alice = envelope.Address{Local: "alice", Domain: "example.com"}

func testWriter(t *testing.T) *Writer {
	t.Helper()
	return &Writer{
		Root:     t.TempDir(),
		Hostname: "mx.example.org",
		Now:      func() time.Time { return time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC) },
	}
}

// names lists the file names in dir; a missing dir has none.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestMaildirDeliver(t *testing.T) {
	const msg = "From: alice@example.com\r\nSubject: hi\r\n\r\nline 1\r\nline 2 with a lone \r in it\r\n"
	tests := []struct {
		name string
		crlf bool
		r    func() io.Reader
		want string
	}{
		{"LF", false, func() io.Reader { return strings.NewReader(msg) },
			"Return-Path: <alice@example.com>\nDelivered-To: Bob@Example.NET\nFrom: alice@example.com\nSubject: hi\n\nline 1\nline 2 with a lone \r in it\n"},
		{"LF, one byte at a time", false, func() io.Reader { return iotest.OneByteReader(strings.NewReader(msg)) },
			"Return-Path: <alice@example.com>\nDelivered-To: Bob@Example.NET\nFrom: alice@example.com\nSubject: hi\n\nline 1\nline 2 with a lone \r in it\n"},
		{"LF, CR at the very end", false, func() io.Reader { return iotest.OneByteReader(strings.NewReader("x\r")) },
			"Return-Path: <alice@example.com>\nDelivered-To: Bob@Example.NET\nx\r"},
		{"CRLF", true, func() io.Reader { return strings.NewReader(msg) },
			"Return-Path: <alice@example.com>\r\nDelivered-To: Bob@Example.NET\r\n" + msg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testWriter(t)
			m.CRLF = tc.crlf
			path, err := m.Deliver(context.Background(), alice, bob, tc.r())
			if err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			dir := filepath.Join(m.Root, "example.net", "bob")
			wantName := fmt.Sprintf("1773500966.M535897P%dQ1.mx.example.org", os.Getpid())
			if want := filepath.Join(dir, "new", wantName); path != want {
				t.Errorf("Deliver returned %q, want %q", path, want)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("file content (-want +got):\n%s", diff)
			}
			if got := names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
				t.Errorf("tmp/ holds %q after delivery, want nothing", got)
			}
			if got, want := names(t, filepath.Join(dir, "new")), []string{wantName}; !cmp.Equal(got, want) {
				t.Errorf("new/ holds %q, want %q", got, want)
			}
			for _, sub := range []string{"cur", "new", "tmp"} {
				fi, err := os.Stat(filepath.Join(dir, sub))
				if err != nil {
					t.Fatalf("%s/: %v", sub, err)
				}
				if got := fi.Mode().Perm(); got != 0o700 {
					t.Errorf("%s/ has mode %v, want 0700", sub, got)
				}
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("message has mode %v, want 0600", got)
			}
		})
	}
}

func TestMaildirUniqueNames(t *testing.T) {
	m := testWriter(t)
	m.Now = nil // the real clock
	m.Hostname = "host/with:odd chars"
	const n = 200
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			paths[i], errs[i] = m.Deliver(context.Background(), alice, bob, strings.NewReader(fmt.Sprintf("X-N: %d\r\n", i)))
		})
	}
	wg.Wait()
	seen := make(map[string]int, n)
	nameRE := regexp.MustCompile(`^\d+\.M\d{1,6}P\d+Q\d+\.host\\057with\\072odd chars$`)
	for i, p := range paths {
		if errs[i] != nil {
			t.Errorf("Deliver %d: %v", i, errs[i])
			continue
		}
		if j, dup := seen[p]; dup {
			t.Errorf("deliveries %d and %d both wrote %s", j, i, p)
		}
		seen[p] = i
		if !nameRE.MatchString(filepath.Base(p)) {
			t.Errorf("name %q does not match %s", filepath.Base(p), nameRE)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("reading %s: %v", p, err)
			continue
		}
		if want := fmt.Sprintf("Return-Path: <alice@example.com>\nDelivered-To: Bob@Example.NET\nX-N: %d\n", i); string(got) != want {
			t.Errorf("delivery %d wrote %q, want %q", i, got, want)
		}
	}
	dir := filepath.Join(m.Root, "example.net", "bob")
	if got := len(names(t, filepath.Join(dir, "new"))); got != n {
		t.Errorf("new/ holds %d files, want %d", got, n)
	}
	if got := names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %d files, want none", len(got))
	}
}

func TestMaildirPath(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	m := &Writer{Root: root, Hostname: "h"}
	good := []struct {
		addr envelope.Address
		want string
	}{
		{envelope.Address{Local: "Bob", Domain: "Example.NET"}, filepath.Join(root, "example.net", "bob")},
		{envelope.Address{Local: "bob", Domain: "example.net."}, filepath.Join(root, "example.net", "bob")},
		{envelope.Address{Local: "bob.smith+tag", Domain: "example.net"}, filepath.Join(root, "example.net", "bob.smith+tag")},
		{envelope.Address{Local: "...", Domain: "example.net"}, filepath.Join(root, "example.net", "...")},
		{envelope.Address{Local: "JÖRG", Domain: "BEISPIEL.DE"}, filepath.Join(root, "beispiel.de", "jörg")},
	}
	for _, tc := range good {
		got, err := m.Path(tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("Path(%q) = %q, %v; want %q", tc.addr.String(), got, err, tc.want)
		}
	}

	bad := []envelope.Address{
		{Local: "../x", Domain: "example.net"},
		{Local: "a/b", Domain: "example.net"},
		{Local: "..", Domain: "example.net"},
		{Local: ".", Domain: "example.net"},
		{Local: `a\b`, Domain: "example.net"},
		{Local: "a\x00b", Domain: "example.net"},
		{Local: "a\nb", Domain: "example.net"},
		{Local: "", Domain: "example.net"},
		{Local: "bob", Domain: "exa/mple.net"},
		{Local: "bob", Domain: "../etc"},
		{Local: "bob", Domain: ".."},
		{Local: "bob", Domain: "..."}, // the trailing dot goes, leaving ".."
		{Local: "bob", Domain: "/etc"},
		{Local: "bob", Domain: ""},
		{},
	}
	for _, a := range bad {
		t.Run(fmt.Sprintf("%q@%q", a.Local, a.Domain), func(t *testing.T) {
			got, err := m.Path(a)
			if !errors.Is(err, ErrBadMailbox) {
				t.Errorf("Path = %q, %v; want an error wrapping ErrBadMailbox", got, err)
			}
			if _, err := m.Deliver(context.Background(), alice, a, strings.NewReader("x\r\n")); !errors.Is(err, ErrBadMailbox) {
				t.Errorf("Deliver error %v, want one wrapping ErrBadMailbox", err)
			}
		})
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rejected deliveries created %s (Stat: %v)", root, err)
	}
	if _, err := (&Writer{}).Path(bob); err == nil {
		t.Errorf("Path without a Root succeeded")
	}
}

func TestMaildirCancelled(t *testing.T) {
	t.Run("before writing", func(t *testing.T) {
		m := testWriter(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := m.Deliver(ctx, alice, bob, strings.NewReader("x\r\n"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Deliver error %v, want context.Canceled", err)
		}
		dir := filepath.Join(m.Root, "example.net", "bob")
		if got := append(names(t, filepath.Join(dir, "new")), names(t, filepath.Join(dir, "tmp"))...); len(got) != 0 {
			t.Errorf("cancelled delivery left %q", got)
		}
	})

	t.Run("while copying", func(t *testing.T) {
		m := testWriter(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &cancellingReader{r: strings.NewReader(strings.Repeat("line\r\n", 100000)), cancel: cancel}
		_, err := m.Deliver(ctx, alice, bob, r)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Deliver error %v, want context.Canceled", err)
		}
		dir := filepath.Join(m.Root, "example.net", "bob")
		if got := append(names(t, filepath.Join(dir, "new")), names(t, filepath.Join(dir, "tmp"))...); len(got) != 0 {
			t.Errorf("cancelled delivery left %q", got)
		}
	})

	t.Run("read error", func(t *testing.T) {
		m := testWriter(t)
		_, err := m.Deliver(context.Background(), alice, bob, iotest.ErrReader(errors.New("spool gone")))
		if err == nil || !strings.Contains(err.Error(), "spool gone") || !strings.HasPrefix(err.Error(), "maildir: ") {
			t.Errorf("Deliver error %v, want a maildir: error with the read error", err)
		}
		dir := filepath.Join(m.Root, "example.net", "bob")
		if got := append(names(t, filepath.Join(dir, "new")), names(t, filepath.Join(dir, "tmp"))...); len(got) != 0 {
			t.Errorf("failed delivery left %q", got)
		}
	})
}

// cancellingReader cancels its context after the first read.
type cancellingReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.cancel()
	return n, err
}

// TestPathKelvinSign: a domain with a Kelvin sign (U+212A) is not folded
// into the ASCII domain it looks like.
func TestPathKelvinSign(t *testing.T) {
	w := &Writer{Root: t.TempDir()}
	got, err := w.Path(envelope.Address{Local: "user", Domain: "\u212Aiosk.test"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(w.Root, "\u212Aiosk.test", "user"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
}

// TestReturnPathNullSender: a bounce (the null sender) is delivered with
// "Return-Path: <>", so the final copy still says it must not be answered.
func TestReturnPathNullSender(t *testing.T) {
	m := &Writer{Root: t.TempDir(), Hostname: "gw.test"}
	path, err := m.Deliver(context.Background(), envelope.Address{}, bob, strings.NewReader("Subject: bounce\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Return-Path: <>\nDelivered-To: Bob@Example.NET\nSubject: bounce\n"; !strings.HasPrefix(string(got), want) {
		t.Errorf("file starts %q, want %q", got, want)
	}
}
