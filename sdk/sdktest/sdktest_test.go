package sdktest_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/sdktest"
)

func TestHostKV(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := sdktest.NewHost()
	h.Now = func() time.Time { return now }
	kv := h.Durable()

	if _, ok, err := kv.Get(ctx, "k"); ok || err != nil {
		t.Errorf("empty store: got ok=%v, %v", ok, err)
	}
	if err := kv.Set(ctx, "k", "v", time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := kv.Get(ctx, "k"); !ok || v != "v" {
		t.Errorf("after set: got %q, %v", v, ok)
	}
	for want := int64(1); want <= 3; want++ {
		if n, err := kv.Incr(ctx, "n", 1, time.Minute); n != want || err != nil {
			t.Errorf("incr: got %d, %v; want %d", n, err, want)
		}
	}
	if _, err := kv.Incr(ctx, "k", 1, 0); err == nil {
		t.Error("incr of a non-integer: want an error")
	}
	if err := kv.Set(ctx, "forever", "x", 0); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if diff := cmp.Diff(map[string]string{"forever": "x"}, h.DurableKV()); diff != "" {
		t.Errorf("after the ttl (-want +got):\n%s", diff)
	}
	if n, _ := kv.Incr(ctx, "n", 5, 0); n != 5 {
		t.Errorf("incr after expiry: got %d, want 5", n)
	}
	if err := kv.Delete(ctx, "forever"); err != nil || len(h.DurableKV()) != 1 {
		t.Errorf("delete: %v, store %v", err, h.DurableKV())
	}
	if len(h.EphemeralKV()) != 0 {
		t.Errorf("the ephemeral store has %v; the durable one's writes went there", h.EphemeralKV())
	}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"long key", kv.Set(ctx, strings.Repeat("k", sdk.KVMaxKey+1), "v", 0), "sdktest: key of 513 bytes exceeds 512"},
		{"empty key", kv.Delete(ctx, ""), "sdktest: empty key"},
		{"negative ttl", kv.Set(ctx, "k", "v", -time.Second), "sdktest: ttl -1s is not from 0 to 100 years"},
		{"long value", kv.Set(ctx, "k", strings.Repeat("v", sdk.KVMaxValue+1), 0), "sdktest: value of 65537 bytes exceeds 65536"},
	} {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s: %v, want %q", tt.name, tt.err, tt.want)
		}
	}
}

func TestHostLookups(t *testing.T) {
	ctx := t.Context()
	h := sdktest.NewHost()
	h.MX["example.org"] = []sdk.MX{{Host: "mx.example.org", Preference: 10}}
	h.TXT["example.org"] = []string{"v=spf1 -all"}
	h.Err["broken.example"] = errors.New("servfail")
	if mx, err := h.LookupMX(ctx, "example.org"); err != nil || len(mx) != 1 {
		t.Errorf("MX: got %v, %v", mx, err)
	}
	if txt, _ := h.LookupTXT(ctx, "example.org"); !cmp.Equal(txt, []string{"v=spf1 -all"}) {
		t.Errorf("TXT: got %v", txt)
	}
	if ips, err := h.LookupIP(ctx, "nxdomain.example"); ips != nil || err != nil {
		t.Errorf("unknown name: got %v, %v; want no records and no error", ips, err)
	}
	if _, err := h.LookupPTR(ctx, "broken.example"); err == nil {
		t.Error("Err entry: want an error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.LookupMX(cctx, "example.org"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: got %v", err)
	}
	if err := h.Log(ctx, "warn", "m", map[string]string{"a": "b"}); err != nil {
		t.Error(err)
	}
	if err := h.Log(ctx, "warning", "m", nil); err == nil {
		t.Error("Log at level warning: no error, want one as the gateway gives")
	}
	if diff := cmp.Diff([]sdktest.LogEntry{{Level: "warn", Message: "m", Fields: map[string]string{"a": "b"}}}, h.Logs()); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}

// minimal is the smallest plugin that passes Conformance: no hooks.
type minimal struct{}

func (minimal) Info() sdk.Info { return sdk.Info{Name: "minimal", Version: "1"} }

func TestConformanceMinimal(t *testing.T) {
	sdktest.Conformance(t, minimal{}, nil)
}

// bad breaks every rule Conformance checks that the sdk doesn't enforce
// itself.
type bad struct{}

func (bad) Info() sdk.Info {
	return sdk.Info{
		Name:       "bad",
		Stages:     []sdk.Stage{sdk.StageMail}, // declares a stage it does not implement
		Schema:     []sdk.ConfigField{{Name: "n", Type: "int"}, {Name: "s", Type: sdk.TypeString, Required: true, Default: "x"}},
		Transports: []string{"nowhere"}, // without implementing sdk.Transport
	}
}

func (bad) Rcpt(context.Context, *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	return sdk.Decision{Verdict: sdk.Reject, Code: 250}, sdk.Effects{}, nil
}

func (bad) Data(context.Context, *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	return sdk.Decision{}, sdk.Effects{}, errors.New("bad: cannot decide")
}

const badFixtureEnv = "SDKTEST_BAD_FIXTURE"

// TestConformanceBadFixture runs only inside TestConformanceFlagsBadPlugin.
func TestConformanceBadFixture(t *testing.T) {
	if os.Getenv(badFixtureEnv) != "1" {
		t.Skip("run by TestConformanceFlagsBadPlugin")
	}
	sdktest.Conformance(t, bad{}, map[string]any{"s": "x"})
}

// TestConformanceFlagsBadPlugin proves the suite can fail: it runs it on
// the bad fixture in a child test process and looks for each finding.
func TestConformanceFlagsBadPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestConformanceBadFixture$", "-test.v")
	cmd.Env = append(os.Environ(), badFixtureEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("Conformance passed the bad fixture:\n%s", out)
	}
	for _, want := range []string{
		"Info: no version",
		"declares stages [mail]",
		"declares transports [nowhere] but does not implement sdk.Transport",
		`type "int" not one of`,
		"required with a default",
		"rcpt: sdk: reject at rcpt: code 250 outside 500-599",
		"data: minimal request: sdk: plugin data: bad: cannot decide",
		"Deliver(nowhere)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Conformance did not report %q", want)
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
}

// TestStartLeavesNoSocket: the sockets of an in-process plugin and of the
// Host service configured for it are gone when its test ends. Before,
// the Host service's stayed in the temporary folder, one a Start.
func TestStartLeavesNoSocket(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	t.Run("plugin", func(t *testing.T) {
		r := sdktest.Start(t, minimal{})
		if err := r.Configure(t.Context(), nil, sdktest.NewHost()); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 2 {
			t.Errorf("while running: %d entries in the temporary folder, want 2 (the plugin's socket and the Host service's)", len(entries))
		}
	})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}

// slowConfigure keeps Configure waiting until release is closed, and
// keeps the Host it was given.
type slowConfigure struct {
	minimal
	entered, release chan struct{}
	host             sdk.Host
}

func (p *slowConfigure) Configure(ctx context.Context, _ map[string]any, host sdk.Host) error {
	p.host = host
	close(p.entered)
	<-p.release
	return nil
}

// TestCloseDuringConfigureStopsHost: the Remote's Close (io.Closer, 17ca95a)
// stops the Host service even when a Configure is under way. It does not:
// Close stops the Host server installed before, and the Configure that
// then succeeds installs its new server in c.host, which keeps serving
// the plugin (a goroutine and a unix socket) after Close. In the gateway
// Close runs when the plugin process exits (context.AfterFunc), which
// can fall between the plugin's answer and that swap.
func TestCloseDuringConfigureStopsHost(t *testing.T) {
	p := &slowConfigure{entered: make(chan struct{}), release: make(chan struct{})}
	r := sdktest.Start(t, p)
	c, ok := r.(io.Closer)
	if !ok {
		t.Fatalf("the Remote %T is not an io.Closer", r)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Configure(t.Context(), nil, sdktest.NewHost()) }()
	<-p.entered
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	close(p.release)
	if err := <-errc; err != nil {
		return // refusing a Configure that races with Close is fine too
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := p.host.Ephemeral().Set(ctx, "k", "v", 0); err == nil {
		t.Error("after Close, the plugin's Host calls still reach the Host service configured during Close")
	}
}
