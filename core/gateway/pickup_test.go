package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	env := &pickup.Envelope{Sender: envelope.Address{Local: "cron", Domain: "mx.test"}, UID: os.Getuid()}
	for _, r := range rcpts {
		a, err := envelope.ParseAddress(r)
		if err != nil {
			t.Fatal(err)
		}
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a})
	}
	name, err := pickup.Write(dir, env, strings.NewReader("Subject: "+subject+"\n\nfrom cron\n"))
	if err != nil {
		t.Fatal(err)
	}
	return name
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
