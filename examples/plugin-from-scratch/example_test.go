package pluginfromscratch_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// retryMarker separates the two connections of transcript.txt.
const retryMarker = "# ---- retry:"

// TestTranscript builds the greylist plugin from its own module
// (./greylist) and the gateway, runs `gateway serve` with this folder's
// gateway.hcl (on a free port, the plugin from the temporary build,
// delay = 1) and replays transcript.txt: the first RCPT is greylisted, the
// retry more than a second later goes through and the message lands in
// the Maildir.
func TestTranscript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	bin := t.TempDir()
	plugin := goBuild(t, "greylist", filepath.Join(bin, "gateway-plugin-greylist"), ".")
	gateway := goBuild(t, ".", filepath.Join(bin, "gateway"), "github.com/mailgate/gateway/cmd/gateway")

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
	gw := serve(t, gateway, path)

	script, err := os.ReadFile("transcript.txt")
	if err != nil {
		t.Fatal(err)
	}
	first, retry, ok := strings.Cut(string(script), retryMarker)
	if !ok {
		t.Fatalf("transcript.txt has no %q line", retryMarker)
	}
	_, retry, _ = strings.Cut(retry, "\n") // the rest of the marker line
	start := time.Now()
	smtptest.Run(t, gw.addr, first)
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	smtptest.Run(t, gw.addr, retry)

	// Delivered into the Maildir by the gateway's queue.
	var files []string
	if !eventually(10*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "data", "mail", "example.test", "alice", "new", "*"))
		return len(files) == 1
	}) {
		t.Fatalf("alice's Maildir has %v; want one message", files)
	}
	if b, err := os.ReadFile(files[0]); err != nil || !strings.Contains(string(b), "Subject: Lunch on Friday?") {
		t.Errorf("the delivered message is %q, %v", b, err)
	}
	// The deferral was logged with its reason.
	if want := `reason="greylist: new triple triple/127.0.0.1/carol@sender.test/alice@example.test"`; !strings.Contains(gw.log.String(), want) {
		t.Errorf("the log has no %s", want)
	}

	// What README.md shows `gateway plugin probe` printing is what it prints.
	out, err := exec.Command(gateway, "plugin", "probe", plugin).Output()
	if err != nil {
		t.Fatalf("gateway plugin probe: %v", err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(out)) {
		t.Errorf("README.md does not show the output of gateway plugin probe:\n%s", out)
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

// gateway is a running `gateway serve`.
type gateway struct {
	addr string       // the first listener's address
	log  *lockedLines // its log so far
}

var listeningRE = regexp.MustCompile(`msg=listening .*address=(\S+)`)

// serve runs `gateway serve -config path`, waits until it listens, and
// stops it at the end of the test.
func serve(t *testing.T, gatewayBin, path string) *gateway {
	t.Helper()
	cmd := exec.Command(gatewayBin, "serve", "-config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gw := &gateway{log: &lockedLines{}}
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			gw.log.add(sc.Text())
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		// A graceful stop; the log ends when the process has exited.
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("gateway log:\n%s", gw.log)
		}
	})
	select {
	case gw.addr = <-addr:
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway serve did not start listening; log:\n%s", gw.log)
	}
	return gw
}

// lockedLines collects a child's log lines while the test reads them.
type lockedLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLines) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }

func (l *lockedLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
