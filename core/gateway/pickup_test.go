package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/pickup"
)

// pickupScript refuses blocked@, defers later@ and lets whoami@ through
// only from the pickup's session of this test's user.
func pickupScript() string {
	return fmt.Sprintf(`function on_rcpt(ctx)
  if ctx.txn.rcpt == "blocked@example.test" then return gw.reject(550, "5.1.1", "No such user") end
  if ctx.txn.rcpt == "later@example.test" then return gw.defer(451, "4.2.0", "Try later") end
  if ctx.txn.rcpt == "whoami@example.test" and ctx.conn.auth_user ~= "uid=%d" then
    return gw.reject(550, "5.7.1", "Not the pickup")
  end
end
`, os.Getuid())
}

func pickupMessage(t *testing.T, dir string, subject string, rcpts ...string) string {
	t.Helper()
	name := pickup.NewName(time.Now())
	pickupFile(t, dir, name, envelope.Address{Local: "cron", Domain: "mx.test"}, subject, rcpts...)
	return name
}

// pickupFile writes the pickup file name from sender to rcpts.
func pickupFile(t *testing.T, dir, name string, sender envelope.Address, subject string, rcpts ...string) {
	t.Helper()
	env := &pickup.Envelope{Sender: sender, UID: os.Getuid()}
	for _, r := range rcpts {
		a, err := envelope.ParseAddress(r)
		if err != nil {
			t.Fatal(err)
		}
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a})
	}
	if err := pickup.WriteName(dir, name, env, strings.NewReader("Subject: "+subject+"\n\nfrom cron\n")); err != nil {
		t.Fatal(err)
	}
}

// TestPickup: files left while the gateway was down are submitted at
// start, files written while it runs within a pass; through the hooks, as
// the file owner's uid: what is accepted is delivered and the file
// removed, what is refused for good goes to failed/, what is deferred
// stays, and a planted symlink is moved away unread.
func TestPickup(t *testing.T) {
	path := gatewaytest.WriteConfig(t, hookConfig)
	writeScript(t, filepath.Dir(path), pickupScript())
	dir := gateway.PickupDir(filepath.Join(filepath.Dir(path), "data"))
	if err := pickup.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	pickupMessage(t, dir, "early", "whoami@example.test")
	split := pickupMessage(t, dir, "split", "bob@example.test", "blocked@example.test", "later@example.test")
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("secret"), 0o600)
	link := "00000000000000000001.000000000000000000000000"
	if err := os.Symlink(secret, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}

	g := gatewaytest.StartFile(t, path)
	mail := filepath.Join(filepath.Dir(path), "mail", "example.test")
	delivered := func(box string, n int) bool {
		files, _ := filepath.Glob(filepath.Join(mail, box, "new", "*"))
		return len(files) == n
	}
	if !gatewaytest.Eventually(10*time.Second, func() bool { return delivered("whoami", 1) && delivered("bob", 1) }) {
		t.Fatal("the files left before the start were not delivered")
	}
	pickupMessage(t, dir, "running", "bob@example.test")
	if !gatewaytest.Eventually(10*time.Second, func() bool { return delivered("bob", 2) }) {
		t.Fatal("a file written while the gateway runs was not delivered")
	}
	files, _ := filepath.Glob(filepath.Join(mail, "whoami", "new", "*"))
	b, _ := os.ReadFile(files[0])
	for _, want := range []string{"Return-Path: <cron@mx.test>\n", "Received: from pickup ([127.0.0.1])", "Subject: early\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("delivered message lacks %q:\n%s", want, b)
		}
	}

	// The file goes after the 250, which may be after its delivery.
	var left []string
	gatewaytest.Eventually(10*time.Second, func() bool { left, _ = pickup.List(dir); return len(left) == 1 })
	if len(left) != 1 || left[0] != split {
		t.Fatalf("pickup holds %v; want %s, rewritten for later@", left, split)
	}
	m, err := pickup.Open(dir, left[0], 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Env.Recipients; len(got) != 1 || got[0].Address.String() != "later@example.test" {
		t.Errorf("kept file's recipients %v, want later@example.test", got)
	}
	m.Close()
	failed := filepath.Join(dir, pickup.FailedDir)
	m, err = pickup.Open(failed, split, 1<<20)
	if err != nil {
		t.Fatalf("failed/ copy of the split file: %v", err)
	}
	if got := m.Env.Recipients; len(got) != 1 || got[0].Address.String() != "blocked@example.test" {
		t.Errorf("failed copy's recipients %v, want blocked@example.test", got)
	}
	m.Close()
	if fi, err := os.Lstat(filepath.Join(failed, link)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink is not in failed/: %v", err)
	}
	for _, want := range []string{"pickup: file refused", "No such user", "pickup: recipients deferred"} {
		if !g.Log().Wait(5*time.Second, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestPickupForeignOwner: the gateway does not start on a pickup
// directory another user owns (who could read and replace others' mail).
func TestPickupForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	path := gatewaytest.WriteConfig(t, `
hostname = "mx.test"
listener "mx" { address = "127.0.0.1:0" }
`)
	dir := gateway.PickupDir(filepath.Join(filepath.Dir(path), "data"))
	if err := pickup.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Resolver: []string{"127.0.0.1:1"}})
	if err == nil {
		g.Close()
		t.Fatal("the gateway started")
	}
	if !strings.Contains(err.Error(), "belongs to uid 1234") {
		t.Errorf("error %v, want the owner named", err)
	}
}

// TestPickupBounce: a local program's mail that the server refuses comes
// back to its sender as a failure DSN with the refusal as Diagnostic-Code,
// and so does mail deferred past max_lifetime (5.4.7); the files are kept
// in failed/. The null sender gets no DSN.
func TestPickupBounce(t *testing.T) {
	cfg := strings.Replace(hookConfig, "delivery {", "delivery {\n  max_lifetime = \"1h\"", 1)
	path := gatewaytest.WriteConfig(t, cfg)
	writeScript(t, filepath.Dir(path), pickupScript())
	dir := gateway.PickupDir(filepath.Join(filepath.Dir(path), "data"))
	if err := pickup.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	cron := envelope.Address{Local: "cron", Domain: "example.test"}
	refused := pickup.NewName(time.Now())
	pickupFile(t, dir, refused, cron, "refused", "blocked@example.test", "bob@example.test")
	old := pickup.NewName(time.Now().Add(-2 * time.Hour))
	pickupFile(t, dir, old, cron, "old", "later@example.test")
	null := pickup.NewName(time.Now())
	pickupFile(t, dir, null, envelope.Address{}, "null", "blocked@example.test")

	g := gatewaytest.StartFile(t, path)
	box := filepath.Join(filepath.Dir(path), "mail", "example.test", "cron", "new")
	var files []string
	if !gatewaytest.Eventually(10*time.Second, func() bool { files, _ = filepath.Glob(filepath.Join(box, "*")); return len(files) == 2 }) {
		t.Fatalf("the sender's Maildir holds %d messages, want 2 DSNs", len(files))
	}
	got := map[string]map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fields := dsnRecipientFields(t, raw)
		got[fields["Final-Recipient"]] = fields
	}
	want := map[string]map[string]string{
		"rfc822; blocked@example.test": {"Final-Recipient": "rfc822; blocked@example.test", "Action": "failed",
			"Status": "5.1.1", "Diagnostic-Code": "smtp; 550 5.1.1 No such user", "Remote-Mta": "dns; mx.test"},
		"rfc822; later@example.test": {"Final-Recipient": "rfc822; later@example.test", "Action": "failed",
			"Status": "5.4.7", "Diagnostic-Code": "smtp; 451 4.2.0 Try later", "Remote-Mta": "dns; mx.test"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the DSNs' recipient fields (-want +got):\n%s", diff)
	}
	failed := filepath.Join(dir, pickup.FailedDir)
	for _, name := range []string{refused, old, null} {
		if !gatewaytest.Eventually(5*time.Second, func() bool { _, err := os.Stat(filepath.Join(failed, name)); return err == nil }) {
			t.Errorf("%s is not in failed/", name)
		}
	}
	if !g.Log().Wait(5*time.Second, "pickup: no DSN to the null sender") {
		t.Error("the null sender's refusal is not logged")
	}
}
