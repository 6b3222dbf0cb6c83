package pluginhost_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// The test plugins are built once per test binary, into buildDir.
var (
	builds   sync.Map // name → *build
	buildDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "pluginhost-test-") })
)

type build struct {
	once sync.Once
	path string
	err  error
}

// TestMain fails the run if a plugin process outlives the tests.
func TestMain(m *testing.M) {
	os.Exit(pluginhosttest.Main(m)) // it removes its TMPDIR, and buildDir in it
}

// plugin builds testdata/<name> (once per test binary) and returns the
// executable's path.
func plugin(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts plugin processes")
	}
	dir, err := buildDir()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := builds.LoadOrStore(name, &build{})
	b := v.(*build)
	b.once.Do(func() {
		b.path = filepath.Join(dir, "gateway-plugin-"+name)
		cmd := exec.Command("go", "build", "-o", b.path, "./testdata/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./testdata/%s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start starts the test plugin with opt's zero fields filled in (Name "t",
// greeting "hello") and closes it at the end of the test.
func start(t *testing.T, opt pluginhost.Options) (*pluginhost.Plugin, *syncBuffer) {
	t.Helper()
	if opt.Path == "" {
		opt.Path = plugin(t, "testplugin")
	}
	if opt.Name == "" {
		opt.Name = "t"
	}
	if opt.Config == nil {
		opt.Config = map[string]any{"greeting": "hello"}
	}
	logs := &syncBuffer{}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, opt)
	if err != nil {
		t.Fatalf("Start: %v\nlog:\n%s", err, logs)
	}
	t.Cleanup(func() { p.Close() })
	return p, logs
}

func rcptRequest(local string) *hook.Request {
	return &hook.Request{
		Stage:    sdk.StageRcpt,
		Session:  &hook.Session{ID: "s1", ClientIP: netip.MustParseAddr("192.0.2.7"), Port: 4000, HELO: "client.test", ESMTP: true},
		Envelope: &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "client.test"}},
		Rcpt:     &envelope.Recipient{Address: envelope.Address{Local: local, Domain: "example.test"}},
	}
}

func handle(p *pluginhost.Plugin, timeout time.Duration, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Handle(ctx, req)
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

func TestStartAndHandle(t *testing.T) {
	kv := hostsvc.NewMemory(hostsvc.MemoryOptions{})
	p, logs := start(t, pluginhost.Options{Services: hostsvc.New(hostsvc.Options{Durable: kv})})

	if got, want := p.Name(), "plugin.t"; got != want {
		t.Errorf("Name: got %q, want %q", got, want)
	}
	if got, want := p.Stages(), []sdk.Stage{sdk.StageRcpt, sdk.StageData}; !slices.Equal(got, want) {
		t.Errorf("Stages: got %v, want %v", got, want)
	}
	if got, want := p.Transports(), []string{"testtransport"}; !slices.Equal(got, want) {
		t.Errorf("Transports: got %v, want %v", got, want)
	}
	if info := p.Info(); info.Name != "test" || info.Version != "1.2.3" || !slices.Equal(info.ProtocolVersions, []int{sdk.ProtocolVersion}) {
		t.Errorf("Info: got %+v", info)
	}

	tests := []struct {
		local   string
		want    sdk.Decision
		wantErr bool
	}{
		{"blocked", sdk.Decision{Verdict: sdk.Reject, Code: 550, Enhanced: sdk.EnhancedCode{5, 7, 1}, Message: "hello: blocked", Reason: "limit 10"}, false},
		{"ok", sdk.Decision{}, false},
		{"count", sdk.Decision{Verdict: sdk.Accept, Code: 250, Message: "count 1"}, false},
		{"count", sdk.Decision{Verdict: sdk.Accept, Code: 250, Message: "count 2"}, false},
		{"error", sdk.Decision{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.local, func(t *testing.T) {
			d, _, err := handle(p, 5*time.Second, rcptRequest(tt.local))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Handle(%s@): error %v, want error %v", tt.local, err, tt.wantErr)
			}
			if err != nil {
				if errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "testplugin: boom") {
					t.Errorf("Handle(%s@): error %q; want the plugin's own error, not unavailable", tt.local, err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, d); diff != "" {
				t.Errorf("Handle(%s@) decision (-want +got):\n%s", tt.local, diff)
			}
		})
	}
	if !eventually(5*time.Second, func() bool {
		return strings.Contains(logs.String(), `level=INFO msg="plugin stderr" hook=plugin.t line="testplugin: about to fail"`)
	}) {
		t.Errorf("the plugin's stderr is not in the log at info:\n%s", logs)
	}
	if got, ok, _ := kv.KVGet("plugin.t/count", time.Now()); !ok || got != "2" {
		t.Errorf("the host's KV: plugin.t/count = %q, %v; want \"2\" (keys namespaced by plugin)", got, ok)
	}

	t.Run("a stage it does not declare", func(t *testing.T) {
		d, _, err := handle(p, time.Second, &hook.Request{Stage: sdk.StageHelo, Session: &hook.Session{}})
		if err != nil || d.Verdict != sdk.Continue {
			t.Errorf("Handle(helo): %v, %v; want continue", d, err)
		}
	})

	t.Run("data sees the message", func(t *testing.T) {
		content := "Subject: Hello\r\nFrom: a@client.test\r\n\r\n" + strings.Repeat("x", 100)
		req := rcptRequest("x")
		req.Stage, req.Rcpt = sdk.StageData, nil
		req.Message = message.NewView(int64(len(content)), func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(content)), nil
		})
		_, eff, err := handle(p, 5*time.Second, req)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"plugin.test/subject":   "Hello",
			"plugin.test/body":      strings.Repeat("x", 100),
			"plugin.test/truncated": "false",
			"plugin.test/size":      fmt.Sprint(len(content)),
			"plugin.test/client":    "192.0.2.7",
			"plugin.test/sender":    "a@client.test",
		}
		if diff := cmp.Diff(want, eff.Notes); diff != "" {
			t.Errorf("notes (-want +got):\n%s", diff)
		}
		if want := []sdk.HeaderField{{Name: "X-Test-Plugin", Value: "hello"}}; !cmp.Equal(want, eff.AddHeaders) {
			t.Errorf("AddHeaders: got %v, want %v", eff.AddHeaders, want)
		}
	})

	t.Run("data sees the auth results", func(t *testing.T) {
		content := "From: a@client.test\r\n\r\nhi\r\n"
		req := rcptRequest("x")
		req.Stage, req.Rcpt = sdk.StageData, nil
		req.Message = message.NewView(int64(len(content)), func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(content)), nil
		})
		req.Auth = &sdk.AuthResults{
			SPF:   sdk.SPFResult{Result: "softfail", Domain: "client.test"},
			DKIM:  []sdk.DKIMResult{{Result: "fail", Domain: "client.test", Selector: "s1"}},
			DMARC: sdk.DMARCResult{Result: "fail", Policy: "quarantine", Domain: "client.test"},
			ARC:   sdk.ARCResult{Result: "none"},
		}
		_, eff, err := handle(p, 5*time.Second, req)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := eff.Notes["plugin.test/auth"], "softfail fail/quarantine/client.test dkim=1 arc=none"; got != want {
			t.Errorf("the plugin saw Message.Auth as %q, want %q", got, want)
		}
	})

	t.Run("body limit", func(t *testing.T) {
		p2, _ := start(t, pluginhost.Options{Name: "small", BodyLimit: 10})
		content := "Subject: Big\r\n\r\n" + strings.Repeat("y", 50)
		req := rcptRequest("x")
		req.Stage, req.Rcpt = sdk.StageData, nil
		req.Message = message.NewView(int64(len(content)), func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(content)), nil
		})
		_, eff, err := handle(p2, 5*time.Second, req)
		if err != nil {
			t.Fatal(err)
		}
		if eff.Notes["plugin.test/body"] != strings.Repeat("y", 10) || eff.Notes["plugin.test/truncated"] != "true" {
			t.Errorf("body %q truncated %q; want 10 bytes and true", eff.Notes["plugin.test/body"], eff.Notes["plugin.test/truncated"])
		}
	})
}

// TestWorkingFolder: a plugin runs in its config file's folder, so that
// relative paths in its config block mean what they mean everywhere else in
// gateway.hcl.
func TestWorkingFolder(t *testing.T) {
	dir := t.TempDir()
	p, _ := start(t, pluginhost.Options{ConfigFile: filepath.Join(dir, "gateway.hcl")})
	d, _, err := p.Handle(context.Background(), rcptRequest("pwd"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(dir)
	got, _ := filepath.EvalSymlinks(d.Message)
	if got != want {
		t.Errorf("plugin runs in %q, want the config's folder %q", d.Message, dir)
	}
}

// TestCallChannel: the plugin is given its end of the call channel as
// file descriptor 3, even when the gateway's own environment names
// another (go-plugin must not copy the gateway's environment over ours).
func TestCallChannel(t *testing.T) {
	t.Setenv(sdk.CallsFDEnv, "99")
	p, _ := start(t, pluginhost.Options{})
	d, _, err := handle(p, 10*time.Second, rcptRequest("channel"))
	if err != nil {
		t.Fatal(err)
	}
	if want := sdk.CallsFDEnv + "=3"; d.Message != want {
		t.Errorf("the plugin's environment has %q, want %q", d.Message, want)
	}
}

func TestChecksum(t *testing.T) {
	path := plugin(t, "testplugin")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	good := hex.EncodeToString(sum[:])
	bad := strings.Repeat("ab", 32)

	t.Run("matching", func(t *testing.T) {
		start(t, pluginhost.Options{SHA256: good})
	})
	t.Run("different", func(t *testing.T) {
		_, err := pluginhost.Start(context.Background(), pluginhost.Options{Name: "t", Path: path, SHA256: bad,
			Config: map[string]any{"greeting": "hello"}})
		if !errors.Is(err, pluginhost.ErrChecksum) {
			t.Fatalf("Start with a wrong sha256: %v; want ErrChecksum", err)
		}
		for _, want := range []string{"plugin.t", good, bad, "refusing to run it"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
	})
}

func TestProtocolMismatch(t *testing.T) {
	path := plugin(t, "protoplugin")
	_, err := pluginhost.Start(context.Background(), pluginhost.Options{Name: "old", Path: path})
	if !errors.Is(err, sdk.ErrProtocol) {
		t.Fatalf("Start: %v; want an error wrapping sdk.ErrProtocol", err)
	}
	msg := err.Error()
	for _, want := range []string{"plugin.old", "Plugin version: 99", fmt.Sprintf("the gateway speaks plugin protocol version %d", sdk.ProtocolVersion)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if _, err := pluginhost.Probe(context.Background(), path, nil); !errors.Is(err, sdk.ErrProtocol) {
		t.Errorf("Probe: %v; want an error wrapping sdk.ErrProtocol", err)
	}
}

func TestConfigErrors(t *testing.T) {
	path := plugin(t, "testplugin")
	lines := map[string]int{"greeting": 5, "limit": 6, "colour": 7}
	tests := []struct {
		name   string
		config map[string]any
		want   string
	}{
		{"missing required", map[string]any{"limit": int64(3)},
			`gateway.hcl:4: plugin "t": config: greeting: required setting missing`},
		{"wrong type and unknown", map[string]any{"greeting": "hi", "limit": "ten", "colour": "red"},
			"gateway.hcl:7: plugin \"t\": config: colour: unknown setting; the plugin's settings are greeting, limit, outdir\n" +
				`gateway.hcl:6: plugin "t": config: limit: want number, got string`},
		{"refused by Configure", map[string]any{"greeting": "refuse"},
			`gateway.hcl:5: plugin "t": config: greeting: "refuse" is refused`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			given := map[string]int{} // the lines of the settings the block has
			for k := range tt.config {
				given[k] = lines[k]
			}
			_, err := pluginhost.Start(context.Background(), pluginhost.Options{
				Name: "t", Path: path, Config: tt.config,
				ConfigFile: "gateway.hcl", ConfigLine: 4, ConfigLines: given,
			})
			var cerr *pluginhost.ConfigError
			if !errors.As(err, &cerr) {
				t.Fatalf("Start: %v; want a *pluginhost.ConfigError", err)
			}
			if _, ok := errors.AsType[sdk.ConfigErrors](err); !ok {
				t.Errorf("the error does not wrap sdk.ConfigErrors")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestHangTakesOnError runs a hung plugin behind a real SMTP server: the
// entry's timeout gives the client on_error's 451 4.3.0, and the plugin
// still answers the next recipient. After MaxTimeouts hangs in a row it
// is killed and restarted, and answers again.
func TestHangTakesOnError(t *testing.T) {
	p, logs := start(t, pluginhost.Options{MaxTimeouts: 2, MinBackoff: 10 * time.Millisecond})
	chain := hook.NewChain(nil, hook.Entry{Handler: p, Timeout: 200 * time.Millisecond, OnError: hook.OnErrorDefer})
	addr, _ := smtptest.StartServer(t, smtp.Options{
		LocalDomains:       []string{"example.test"},
		RelayAuthenticated: true,
		Hooks:              chain,
	})
	smtptest.Run(t, addr, `
S: 220 *
C: HELO client.test
S: 250 *
C: MAIL FROM:<a@client.test>
S: 250 *
C: RCPT TO:<hang@example.test>
S: 451 4.3.0 *
C: RCPT TO:<blocked@example.test>
S: 550 5.7.1 hello: blocked
C: QUIT
S: 221 *
`)
	for range 2 { // two in a row: the second one marks it hung
		d, _, err := handle(p, 100*time.Millisecond, rcptRequest("hang"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Handle(hang@): %v, %v; want a deadline error", d, err)
		}
	}
	if !eventually(10*time.Second, func() bool { return strings.Contains(logs.String(), "plugin restarted") }) {
		t.Fatalf("the hung plugin was not restarted; log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "2 calls in a row timed out") {
		t.Errorf("the log does not say why it restarted:\n%s", logs)
	}
	d, _, err := handle(p, 5*time.Second, rcptRequest("blocked"))
	if err != nil || d.Verdict != sdk.Reject {
		t.Errorf("after the restart: %v, %v; want reject", d, err)
	}
}

// TestCrashedPluginLeavesNoSocket: a plugin process that dies without
// closing its listener, and the one that replaces it, leave no unix socket
// in the temporary folder once the plugin is closed. Before, go-plugin's
// socket of the crashed process stayed there, one a crash.
func TestCrashedPluginLeavesNoSocket(t *testing.T) {
	before := pluginSockets(t)
	p, logs := start(t, pluginhost.Options{})
	if _, _, err := handle(p, 5*time.Second, rcptRequest("crash")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Handle(crash@): %v; want an error wrapping sdk.ErrUnavailable", err)
	}
	if !eventually(5*time.Second, func() bool { return strings.Contains(logs.String(), "plugin restarted") }) {
		t.Fatalf("the plugin was not restarted; log:\n%s", logs)
	}
	p.Close()
	// What was there before may go meanwhile (an earlier test's Host
	// service stops when its process has exited): only new entries count.
	var left []string
	if !eventually(2*time.Second, func() bool {
		left = slices.DeleteFunc(pluginSockets(t), func(name string) bool { return slices.Contains(before, name) })
		return len(left) == 0
	}) {
		t.Errorf("left in the temporary folder after the plugin closed: %q", left)
	}
}

// pluginSockets lists what go-plugin's processes and pluginhost make in
// the temporary folder: sockets (plugin…) and socket folders.
func pluginSockets(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 || strings.HasPrefix(e.Name(), "gateway-plugin-") && e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestCrashRestarts(t *testing.T) {
	p, logs := start(t, pluginhost.Options{})
	_, _, err := handle(p, 5*time.Second, rcptRequest("crash"))
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Handle(crash@): %v; want an error wrapping sdk.ErrUnavailable", err)
	}
	// While it is down, calls fail at once with ErrUnavailable.
	start := time.Now()
	if _, _, err := handle(p, 5*time.Second, rcptRequest("blocked")); err != nil {
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("Handle while down: %v; want an error wrapping sdk.ErrUnavailable", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Handle while down took %v; want an immediate failure", took)
		}
	}
	var d sdk.Decision
	if !eventually(5*time.Second, func() bool {
		d, _, err = handle(p, 2*time.Second, rcptRequest("blocked"))
		return err == nil
	}) {
		t.Fatalf("the plugin did not come back: %v\nlog:\n%s", err, logs)
	}
	if d.Verdict != sdk.Reject || d.Message != "hello: blocked" {
		t.Errorf("after the restart: %+v; want the reject", d)
	}
	out := logs.String()
	for _, want := range []string{"plugin down; restarting it", "plugin restarted"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log has no %q:\n%s", want, out)
		}
	}
}

func TestClose(t *testing.T) {
	p, _ := start(t, pluginhost.Options{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err := handle(p, time.Second, rcptRequest("blocked"))
	if !errors.Is(err, pluginhost.ErrClosed) || !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Handle after Close: %v; want ErrClosed and sdk.ErrUnavailable", err)
	}
	if p.Close() != nil {
		t.Errorf("a second Close failed")
	}
}

func TestTransport(t *testing.T) {
	out := t.TempDir()
	p, _ := start(t, pluginhost.Options{Config: map[string]any{"greeting": "hello", "outdir": out}})
	if p.Transport("nosuch") != nil {
		t.Errorf("Transport(nosuch) is not nil")
	}
	tr := p.Transport("testtransport")
	content := "Received: by mx.test\r\nSubject: via plugin\r\n\r\nHello.\r\n"
	rcpt := func(local string) envelope.Recipient {
		return envelope.Recipient{Address: envelope.Address{Local: local, Domain: "example.test"}}
	}
	job := &delivery.Job{
		ID:         "Q1",
		Envelope:   &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "client.test"}},
		Recipients: []envelope.Recipient{rcpt("ok"), rcpt("fail"), rcpt("later")},
		Domain:     "example.test",
		Route:      delivery.Route{Transport: "testtransport"},
		Size:       int64(len(content)),
		Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := tr.Deliver(ctx, job)
	want := []delivery.Result{
		{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "stored by testtransport", RemoteMTA: "test"},
		{Class: delivery.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 1, 1}, Text: "no such user"},
		{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 0, 0}, Text: "try  later"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	if b, err := os.ReadFile(filepath.Join(out, "Q1")); err != nil || string(b) != content {
		t.Errorf("the plugin got %q, %v; want the whole message", b, err)
	}

	t.Run("plugin down", func(t *testing.T) {
		p.Close()
		res := tr.Deliver(ctx, job)
		for i, r := range res {
			if r.Class != delivery.Temporary || !strings.Contains(r.Text, "unavailable") {
				t.Errorf("result %d: %+v; want temporary, unavailable", i, r)
			}
		}
	})
}

func TestProbe(t *testing.T) {
	info, err := pluginhost.Probe(context.Background(), plugin(t, "testplugin"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.Info{
		Name:             "test",
		Version:          "1.2.3",
		ProtocolVersions: []int{sdk.ProtocolVersion},
		Stages:           []sdk.Stage{sdk.StageRcpt, sdk.StageData},
		Schema: []sdk.ConfigField{
			{Name: "greeting", Type: sdk.TypeString, Required: true, Description: "the reject text's prefix"},
			{Name: "limit", Type: sdk.TypeNumber, Default: 10.0, Description: "a number"},
			{Name: "outdir", Type: sdk.TypeString, Description: "where the transport writes"},
		},
		Transports: []string{"testtransport"},
	}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("Probe (-want +got):\n%s", diff)
	}
	if _, err := pluginhost.Probe(context.Background(), filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Errorf("Probe of a missing file: no error")
	}
}

// TestHandshakeAddressNotLoopback: a plugin whose handshake names an
// address off loopback is refused before the host dials it (a plugin
// printing 8.8.8.8:53 made the gateway connect there).
func TestHandshakeAddressNotLoopback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway-plugin-liar")
	script := "#!/bin/sh\necho '1|" + strconv.Itoa(sdk.ProtocolVersion) + "|tcp|192.0.2.1:53|grpc'\nexec sleep 30\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := pluginhost.Start(ctx, pluginhost.Options{Name: "liar", Path: path})
	if !errors.Is(err, pluginhost.ErrAddress) || !strings.Contains(err.Error(), "192.0.2.1:53") {
		t.Errorf("Start: %v; want an error wrapping ErrAddress naming 192.0.2.1:53", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %v; the refusal should not wait for a dial", d)
	}
}

// TestLongTMPDIRStarts: a plugin starts under a TMPDIR that leaves room
// for its socket (TMPDIR/pluginNNNNNNNNNN, under the 108 bytes of
// sun_path) but not for a socket folder of its own
// (TMPDIR/gateway-plugin-NNNNNNNNNN, 26 bytes more): pluginhost then
// makes none. With one, the plugin could not bind its socket ("bind:
// invalid argument", in the log only) and exited, and Start's error
// suggested a wrong architecture or handshake.
func TestLongTMPDIRStarts(t *testing.T) {
	path := plugin(t, "testplugin") // built under the usual TMPDIR
	const n = 88                    // + len("/plugin4294967295") = 105 < 108
	dir := t.TempDir()
	long := dir + "/" + strings.Repeat("d", n-len(dir)-1)
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, pluginhost.Options{
		Name: "t", Path: path, Config: map[string]any{"greeting": "hello"},
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("Start with a %d-byte TMPDIR: %v\nlog:\n%s", len(long), err, logs)
	}
	defer p.Close()
	if d, _, err := handle(p, 5*time.Second, rcptRequest("blocked")); err != nil || d.Code != 550 {
		t.Errorf("Handle(blocked@) = %+v, %v; want a 550", d, err)
	}
}
