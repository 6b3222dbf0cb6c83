package pluginfromscratch_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// retryMarker separates the two connections of transcript.txt.
const retryMarker = "# ---- retry:"

// TestTranscript builds the greylist plugin from its own module
// (./greylist), runs this folder's gateway.hcl in a whole gateway
// (core/gateway, in-process, as `gateway serve` runs it) on a free port,
// with the plugin from the temporary build and delay = 1, and replays
// transcript.txt: the first RCPT is greylisted, the retry more than a
// second later goes through and the message lands in the Maildir. (That
// README.md shows what `gateway plugin probe` prints is checked in
// cmd/gateway, which runs the command in-process.)
func TestTranscript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	bin := t.TempDir()
	plugin := goBuild(t, "greylist", filepath.Join(bin, "gateway-plugin-greylist"), ".")

	// The example's config, as it is but for the listener's port, the
	// plugin's path and the delay. Written to a temporary folder, so its
	// relative data_dir and Maildir are there too.
	dir := t.TempDir()
	cfg := rewrite(t, "gateway.hcl",
		`address = "127.0.0.1:2531"`, `address = "127.0.0.1:0"`,
		`path = "bin/gateway-plugin-greylist"`, `path = "`+plugin+`"`,
		`delay = 60`, `delay = 1`)
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := gatewaytest.StartFile(t, path)
	addr := gw.Addr(t, "mx")

	script, err := os.ReadFile("transcript.txt")
	if err != nil {
		t.Fatal(err)
	}
	first, retry, ok := strings.Cut(string(script), retryMarker)
	if !ok {
		t.Fatalf("transcript.txt has no %q line", retryMarker)
	}
	_, retry, _ = strings.Cut(retry, "\n") // the rest of the marker line
	smtptest.Run(t, addr, first)
	// The delay (1s) counts from the first RCPT, which a loaded machine may
	// answer late in the first session: wait from its end, with a margin
	// for whole seconds.
	time.Sleep(2 * time.Second)
	smtptest.Run(t, addr, retry)

	// Delivered into the Maildir by the gateway's queue.
	var files []string
	if !gatewaytest.Eventually(10*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "data", "mail", "example.test", "alice", "new", "*"))
		return len(files) == 1
	}) {
		t.Fatalf("alice's Maildir has %v; want one message", files)
	}
	if b, err := os.ReadFile(files[0]); err != nil || !strings.Contains(string(b), "Subject: Lunch on Friday?") {
		t.Errorf("the delivered message is %q, %v", b, err)
	}
	// The deferral was logged with its reason.
	if want := `reason="greylist: new triple triple/127.0.0.1/carol@sender.test/alice@example.test"`; !strings.Contains(gw.Log().String(), want) {
		t.Errorf("the log has no %s", want)
	}

}

// goBuild builds pkg in the module at dir into out. The plugin's module
// is not the gateway's: GOWORK=off and -mod=readonly make the build use
// its own go.mod and go.sum (and fail if they are not tidy) whatever the
// environment says.
func goBuild(t *testing.T, dir, out, pkg string) string {
	t.Helper()
	var flags []string
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if !strings.HasPrefix(f, "-mod=") {
			flags = append(flags, f)
		}
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.Join(append(flags, "-mod=readonly"), " "))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s (in %s): %v\n%s", pkg, dir, err, b)
	}
	return out
}

// rewrite returns file's text with each old string replaced by its new
// one; every old string must occur exactly once, so the test notices when
// the example changes under it.
func rewrite(t *testing.T, file string, oldnew ...string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(oldnew); i += 2 {
		if n := strings.Count(s, oldnew[i]); n != 1 {
			t.Fatalf("%s has %q %d times, want once", file, oldnew[i], n)
		}
		s = strings.Replace(s, oldnew[i], oldnew[i+1], 1)
	}
	return s
}
