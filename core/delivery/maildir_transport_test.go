package delivery_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/sdk"
)

// maildirNewFiles lists root/<mailbox>/new, failing the test if it is unreadable.
func maildirNewFiles(t *testing.T, root, mailbox string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, mailbox, "new"))
	if err != nil {
		t.Fatalf("reading %s/new: %v", mailbox, err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(root, mailbox, "new", e.Name()))
	}
	return out
}

func TestMaildirTransport(t *testing.T) {
	root := t.TempDir()
	tr := delivery.NewMaildirTransport("gw.test")
	job, opens := newTestJob(delivery.Route{Transport: "maildir", Path: root}, smtpTestBody, "Bob@Example.TEST", "carol@example.test", "../evil@example.test")
	got := tr.Deliver(context.Background(), job)

	const wantBody = "From: alice@sender.test\nSubject: hi\n\n.dotted line\nbye\n"
	var want []delivery.Result
	for _, tc := range []struct{ mailbox, rcpt string }{
		{"example.test/bob", "Bob@Example.TEST"},
		{"example.test/carol", "carol@example.test"},
	} {
		files := maildirNewFiles(t, root, tc.mailbox)
		if len(files) != 1 {
			t.Fatalf("%s/new holds %v, want one file", tc.mailbox, files)
		}
		if !strings.HasSuffix(files[0], ".gw.test") {
			t.Errorf("file name %s does not end in the host name .gw.test", files[0])
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(data), "Return-Path: <alice@sender.test>\nDelivered-To: "+tc.rcpt+"\n"+wantBody; got != want {
			t.Errorf("%s:\n got %q\nwant %q", files[0], got, want)
		}
		want = append(want, delivery.Result{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "delivered to " + files[0]})
	}
	if len(got) != 3 {
		t.Fatalf("Deliver returned %d results, want 3", len(got))
	}
	bad := got[2]
	if bad.Class != delivery.Permanent || bad.Code != 550 || bad.Enhanced != (sdk.EnhancedCode{5, 1, 1}) || !strings.Contains(bad.Text, "recipient names no safe maildir") {
		t.Errorf("result for ../evil = %+v, want Permanent 550 5.1.1 (bad mailbox)", bad)
	}
	if diff := cmp.Diff(want, got[:2]); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	if n := opens.Load(); n != 2 {
		t.Errorf("Open called %d times, want once per good mailbox (2)", n)
	}
	for _, dir := range []string{"tmp", "cur"} {
		if entries, _ := os.ReadDir(filepath.Join(root, "example.test", "bob", dir)); len(entries) != 0 {
			t.Errorf("%s/ holds %d files, want none", dir, len(entries))
		}
	}

	// A second job to the same root gets a different file name.
	job, _ = newTestJob(delivery.Route{Transport: "maildir", Path: root}, smtpTestBody, "bob@example.test")
	if got := tr.Deliver(context.Background(), job); got[0].Class != delivery.Delivered {
		t.Errorf("second Deliver = %+v, want delivered", got)
	}
	if files := maildirNewFiles(t, root, "example.test/bob"); len(files) != 2 {
		t.Errorf("bob/new holds %v, want two files", files)
	}
}

func TestMaildirTransportFailures(t *testing.T) {
	temp := func(prefix string) delivery.Result {
		return delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Text: prefix, Local: true}
	}
	check := func(t *testing.T, got []delivery.Result, want delivery.Result) {
		t.Helper()
		if len(got) != 1 || !strings.HasPrefix(got[0].Text, want.Text) {
			t.Fatalf("Deliver = %+v, want text %q…", got, want.Text)
		}
		got[0].Text = want.Text
		if diff := cmp.Diff(want, got[0]); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
	}
	tr := delivery.NewMaildirTransport("gw.test")
	t.Run("no path", func(t *testing.T) {
		job, _ := newTestJob(delivery.Route{Transport: "maildir"}, smtpTestBody, "bob@example.test")
		check(t, tr.Deliver(context.Background(), job), temp("maildir route without a path"))
	})
	t.Run("spool unreadable", func(t *testing.T) {
		job, _ := newTestJob(delivery.Route{Path: t.TempDir()}, smtpTestBody, "bob@example.test")
		job.Open = func() (io.ReadCloser, error) { return nil, errors.New("queue: gone") }
		check(t, tr.Deliver(context.Background(), job), temp("reading the message from the spool: queue: gone"))
	})
	t.Run("root is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		job, _ := newTestJob(delivery.Route{Path: file}, smtpTestBody, "bob@example.test")
		check(t, tr.Deliver(context.Background(), job), temp("maildir: "))
	})
	t.Run("ctx done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		job, _ := newTestJob(delivery.Route{Path: t.TempDir()}, smtpTestBody, "bob@example.test")
		check(t, tr.Deliver(ctx, job), temp("maildir: delivery to bob@example.test: context canceled"))
	})
}

// TestMaildirTransportOneFilePerMailbox: addresses the transport maps to
// one mailbox (it folds case) get the message there once, and each of them
// the same result, as Postfix's duplicate elimination does.
func TestMaildirTransportOneFilePerMailbox(t *testing.T) {
	root := t.TempDir()
	tr := delivery.NewMaildirTransport("gw.test")
	job, opens := newTestJob(delivery.Route{Transport: "maildir", Path: root}, smtpTestBody,
		"alice@example.test", "Alice@Example.test", "bob@example.test", "alice@example.test", "ALICE@EXAMPLE.TEST.")
	got := tr.Deliver(context.Background(), job)

	alice := maildirNewFiles(t, root, "example.test/alice")
	if len(alice) != 1 {
		t.Fatalf("alice/new holds %v, want one file", alice)
	}
	bob := maildirNewFiles(t, root, "example.test/bob")
	if len(bob) != 1 {
		t.Fatalf("bob/new holds %v, want one file", bob)
	}
	data, err := os.ReadFile(alice[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, rest, _ := strings.Cut(string(data), "\n"); !strings.HasPrefix(rest, "Delivered-To: alice@example.test\n") {
		t.Errorf("alice's file starts %q, want the first address's Delivered-To", data[:min(len(data), 40)])
	}
	ok := func(file string) delivery.Result {
		return delivery.Result{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "delivered to " + file}
	}
	want := []delivery.Result{ok(alice[0]), ok(alice[0]), ok(bob[0]), ok(alice[0]), ok(alice[0])}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	if n := opens.Load(); n != 2 {
		t.Errorf("Open called %d times, want once per mailbox (2)", n)
	}
}

// TestEngineMaildirOneFilePerMailbox: through the engine, two spellings of
// one mailbox in one message give one file, and both recipients are
// recorded delivered.
func TestEngineMaildirOneFilePerMailbox(t *testing.T) {
	root := t.TempDir()
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Transports["maildir"] = delivery.NewMaildirTransport("gw.test")
		o.Config.Routes = append(o.Config.Routes, config.Route{Domain: "example.test", Transport: "maildir", Path: root})
	})
	h.start()
	h.enqueue(engSender, engRcpts("alice@example.test", "Alice@Example.TEST", "carol@example.test")...)
	h.waitOutcomes(3)
	if files := maildirNewFiles(t, root, "example.test/alice"); len(files) != 1 {
		t.Errorf("alice/new holds %v, want one file", files)
	}
	if files := maildirNewFiles(t, root, "example.test/carol"); len(files) != 1 {
		t.Errorf("carol/new holds %v, want one file", files)
	}
	if st := h.eng.Stats(); st.Delivered != 3 {
		t.Errorf("stats %+v; want 3 recipients delivered", st)
	}
	if msgs := h.messages(); len(msgs) != 0 {
		t.Errorf("%d messages still queued; want none", len(msgs))
	}
}
