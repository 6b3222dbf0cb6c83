package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/sdktest"
)

// servePluginEnv makes the test binary serve testPlugin as a real plugin
// process (TestMain), for the tests that need go-plugin's process path.
const servePluginEnv = "SDK_TEST_SERVE_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(servePluginEnv) == "1" {
		sdk.Serve(&testPlugin{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testPlugin handles rcpt and data, is configurable and delivers; what its
// rcpt hook does depends on the recipient's local part.
type testPlugin struct {
	mu   sync.Mutex
	host sdk.Host
	cfg  map[string]any
}

var (
	_ sdk.RcptHook   = (*testPlugin)(nil)
	_ sdk.DataHook   = (*testPlugin)(nil)
	_ sdk.Configurer = (*testPlugin)(nil)
	_ sdk.Transport  = (*testPlugin)(nil)
)

func (p *testPlugin) Info() sdk.Info {
	return sdk.Info{
		Name:    "test",
		Version: "0.1.0",
		Schema: []sdk.ConfigField{
			{Name: "greeting", Type: sdk.TypeString, Default: "hi", Description: "text of accept"},
			{Name: "limit", Type: sdk.TypeNumber},
			{Name: "domains", Type: sdk.TypeList},
		},
		Transports: []string{"test"},
	}
}

func (p *testPlugin) Configure(ctx context.Context, cfg map[string]any, host sdk.Host) error {
	if cfg["greeting"] == "fail" {
		return &sdk.ConfigError{Field: "greeting", Message: "must not be fail"}
	}
	if _, ok := cfg["domains"]; ok {
		if _, ok := cfg["domains"].([]string); !ok {
			return fmt.Errorf("domains is %T, want []string", cfg["domains"])
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host, p.cfg = host, cfg
	return nil
}

func (p *testPlugin) state() (sdk.Host, map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host, p.cfg
}

func (p *testPlugin) Rcpt(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	host, cfg := p.state()
	switch r.Rcpt.Address.Local {
	case "panic":
		panic("boom")
	case "slow":
		<-ctx.Done()
		return sdk.Decision{}, sdk.Effects{}, ctx.Err()
	case "err":
		return sdk.Decision{}, sdk.Effects{}, errors.New("test: lookup failed")
	case "unavailable":
		return sdk.Decision{}, sdk.Effects{}, fmt.Errorf("test: backend: %w", sdk.ErrUnavailable)
	case "greeting":
		g, _ := cfg["greeting"].(string)
		return sdk.Decision{Verdict: sdk.Accept, Message: g}, sdk.Effects{}, nil
	case "count":
		domain := r.Rcpt.Address.Domain
		n, err := host.Durable().Incr(ctx, "rcpt/"+domain, 1, time.Minute)
		if err != nil {
			return sdk.Decision{}, sdk.Effects{}, err
		}
		mx, err := host.LookupMX(ctx, domain)
		if err != nil {
			return sdk.Decision{}, sdk.Effects{}, err
		}
		host.Log(ctx, "info", "counted", map[string]string{"domain": domain})
		reason := fmt.Sprintf("count=%d", n)
		for _, m := range mx {
			reason += fmt.Sprintf(" mx=%s/%d", m.Host, m.Preference)
		}
		return sdk.DeferDecision(451, sdk.EnhancedCode{4, 7, 1}, "try later").WithReason(reason), sdk.Effects{}, nil
	case "notes": // echoes the notes of earlier hooks
		return sdk.ContinueDecision(), sdk.Effects{Notes: r.Notes}, nil
	case "kinds":
		return kinds(ctx, host)
	case "alias":
		return sdk.AcceptDecision(), sdk.Effects{
			Recipients: []sdk.Address{{Local: "a", Domain: "example.org"}, {Local: "b", Domain: "example.org"}},
			Notes:      map[string]string{"test/alias": r.Rcpt.Address.String()},
		}, nil
	}
	return sdk.ContinueDecision(), sdk.Effects{}, nil
}

// Data echoes the body back as the replacement body, with every other
// effect set.
func (p *testPlugin) Data(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	sender := sdk.Address{Local: "srs0=x", Domain: "example.net"}
	return sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "rejected").WithReason(fmt.Sprintf("size=%d", len(r.Message.Body))),
		sdk.Effects{
			AddHeaders:    []sdk.HeaderField{{Name: "X-Test", Value: "1"}},
			RemoveHeaders: []string{"X-Spam"},
			Sender:        &sender,
			Body:          r.Message.Body,
			Notes:         map[string]string{"test/data": "seen"},
			Skip:          []string{"lua.relay"},
			Route:         &sdk.Route{Transport: "lmtp", Via: "127.0.0.1:24"},
			ReplyLines:    []string{"line"},
		}, nil
}

func (p *testPlugin) Deliver(ctx context.Context, d *sdk.Delivery) ([]sdk.DeliveryResult, error) {
	out := make([]sdk.DeliveryResult, len(d.Recipients))
	for i, r := range d.Recipients {
		out[i] = sdk.DeliveryResult{Outcome: sdk.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "ok " + r.Address.String(), RemoteMTA: "test"}
	}
	return out, nil
}

func start(t *testing.T) (sdk.Remote, *sdktest.Host) {
	t.Helper()
	r := sdktest.Start(t, &testPlugin{})
	host := sdktest.NewHost()
	host.MX["example.org"] = []sdk.MX{{Host: "mx1.example.org", Preference: 10}}
	if err := r.Configure(t.Context(), map[string]any{"limit": 5}, host); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return r, host
}

func rcpt(local string) *sdk.Request {
	r := sdktest.MinimalRequest(sdk.StageRcpt)
	r.Rcpt.Address.Local = local
	return r
}

func TestConformance(t *testing.T) {
	sdktest.Conformance(t, &testPlugin{}, map[string]any{"greeting": "hello", "limit": 3, "domains": []string{"example.org"}})
}

func TestInfoOverTheWire(t *testing.T) {
	r, _ := start(t)
	got, err := r.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := (&testPlugin{}).Info()
	want.ProtocolVersions = []int{sdk.ProtocolVersion}
	want.Stages = []sdk.Stage{sdk.StageRcpt, sdk.StageData}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Info (-want +got):\n%s", diff)
	}
}

func TestDecisionsAndEffectsCross(t *testing.T) {
	r, _ := start(t)
	ctx := t.Context()

	d, e, err := r.Handle(ctx, rcpt("alias"))
	if err != nil {
		t.Fatal(err)
	}
	wantE := sdk.Effects{
		Recipients: []sdk.Address{{Local: "a", Domain: "example.org"}, {Local: "b", Domain: "example.org"}},
		Notes:      map[string]string{"test/alias": "alias@example.org"},
	}
	if d != sdk.AcceptDecision() {
		t.Errorf("rcpt decision: got %+v, want accept", d)
	}
	if diff := cmp.Diff(wantE, e); diff != "" {
		t.Errorf("rcpt effects (-want +got):\n%s", diff)
	}

	req := sdktest.MinimalRequest(sdk.StageData)
	d, e, err = r.Handle(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	wantD := sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "rejected").WithReason(fmt.Sprintf("size=%d", len(req.Message.Body)))
	if d != wantD {
		t.Errorf("data decision: got %+v, want %+v", d, wantD)
	}
	sender := sdk.Address{Local: "srs0=x", Domain: "example.net"}
	wantE = sdk.Effects{
		AddHeaders: []sdk.HeaderField{{Name: "X-Test", Value: "1"}}, RemoveHeaders: []string{"X-Spam"},
		Sender: &sender, Body: req.Message.Body, Notes: map[string]string{"test/data": "seen"},
		Skip: []string{"lua.relay"}, Route: &sdk.Route{Transport: "lmtp", Via: "127.0.0.1:24"}, ReplyLines: []string{"line"},
	}
	if diff := cmp.Diff(wantE, e); diff != "" {
		t.Errorf("data effects (-want +got):\n%s", diff)
	}

	d, e, err = r.Handle(ctx, rcpt("nobody"))
	if err != nil || d != (sdk.Decision{}) || !e.IsZero() {
		t.Errorf("continue: got %+v, %+v, %v; want the zero Decision and no effects", d, e, err)
	}
}

// TestNotesCross: a plugin sees the notes of earlier hooks.
func TestNotesCross(t *testing.T) {
	r, _ := start(t)
	req := rcpt("notes")
	req.Notes = map[string]string{"lua.relay/score": "5", "plugin.lists/list": "team@example.org"}
	_, e, err := r.Handle(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(req.Notes, e.Notes); diff != "" {
		t.Errorf("notes the plugin saw (-want +got):\n%s", diff)
	}
}

func TestDeadlineExceededInPlugin(t *testing.T) {
	r, _ := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, _, err := r.Handle(ctx, rcpt("slow"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(begin); el > 2*time.Second {
		t.Errorf("returned after %v, want about 100ms", el)
	}
}

func TestPanicInHook(t *testing.T) {
	r, _ := start(t)
	_, _, err := r.Handle(t.Context(), rcpt("panic"))
	if !errors.Is(err, sdk.ErrInternal) {
		t.Errorf("panic: got %v, want sdk.ErrInternal", err)
	}
	if err != nil && !strings.Contains(err.Error(), "boom") {
		t.Errorf("panic: %q does not say what panicked", err)
	}
	if d, _, err := r.Handle(t.Context(), rcpt("alias")); err != nil || d.Verdict != sdk.Accept {
		t.Errorf("the call after the panic: got %+v, %v; want accept", d, err)
	}
}

func TestPluginErrors(t *testing.T) {
	r, _ := start(t)
	_, _, err := r.Handle(t.Context(), rcpt("err"))
	if err == nil || !strings.Contains(err.Error(), "test: lookup failed") {
		t.Errorf("plain error: got %v, want the plugin's text", err)
	}
	for _, s := range []error{sdk.ErrInternal, sdk.ErrUnavailable, sdk.ErrNotHandled, sdk.ErrProtocol} {
		if errors.Is(err, s) {
			t.Errorf("plain error %v matches %v", err, s)
		}
	}
	if _, _, err := r.Handle(t.Context(), rcpt("unavailable")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("wrapped sentinel: got %v, want sdk.ErrUnavailable", err)
	}
	if _, _, err := r.Handle(t.Context(), sdktest.MinimalRequest(sdk.StageHelo)); !errors.Is(err, sdk.ErrNotHandled) {
		t.Errorf("helo: got %v, want sdk.ErrNotHandled", err)
	}
	if _, _, err := r.Handle(t.Context(), &sdk.Request{Stage: "nonsense"}); !errors.Is(err, sdk.ErrNotHandled) {
		t.Errorf("unknown stage: got %v, want sdk.ErrNotHandled", err)
	}
}

// kinds writes one key to each store, deletes the durable one, and
// reports what each store then holds and what a bad log level gives.
func kinds(ctx context.Context, host sdk.Host) (sdk.Decision, sdk.Effects, error) {
	if err := host.Durable().Set(ctx, "k", "on disk", 0); err != nil {
		return sdk.Decision{}, sdk.Effects{}, err
	}
	if _, err := host.Ephemeral().Incr(ctx, "k", 7, time.Minute); err != nil {
		return sdk.Decision{}, sdk.Effects{}, err
	}
	if err := host.Durable().Delete(ctx, "k"); err != nil {
		return sdk.Decision{}, sdk.Effects{}, err
	}
	d, dok, _ := host.Durable().Get(ctx, "k")
	e, eok, _ := host.Ephemeral().Get(ctx, "k")
	logErr := host.Log(ctx, "loud", "x", nil)
	return sdk.ContinueDecision().WithReason(fmt.Sprintf("durable=%q,%v ephemeral=%q,%v log=%v", d, dok, e, eok, logErr)), sdk.Effects{}, nil
}

func TestHostKinds(t *testing.T) {
	r, host := start(t)
	d, _, err := r.Handle(t.Context(), rcpt("kinds"))
	if err != nil {
		t.Fatal(err)
	}
	want := `durable="",false ephemeral="7",true log=sdk: host log: sdktest: log level "loud" is not debug, info, warn or error`
	if d.Reason != want {
		t.Errorf("reason %q\nwant   %q", d.Reason, want)
	}
	if got := host.EphemeralKV(); !cmp.Equal(got, map[string]string{"k": "7"}) {
		t.Errorf("ephemeral store: %v, want k=7", got)
	}
	if got := host.DurableKV(); len(got) != 0 {
		t.Errorf("durable store: %v, want empty after the delete", got)
	}
}

func TestHostServices(t *testing.T) {
	r, host := start(t)
	for want := 1; want <= 2; want++ {
		d, _, err := r.Handle(t.Context(), rcpt("count"))
		if err != nil {
			t.Fatal(err)
		}
		if wantReason := fmt.Sprintf("count=%d mx=mx1.example.org/10", want); d.Reason != wantReason {
			t.Errorf("call %d: reason %q, want %q", want, d.Reason, wantReason)
		}
	}
	if got := host.DurableKV()["rcpt/example.org"]; got != "2" {
		t.Errorf("host kv: got %q, want 2", got)
	}
	want := []sdktest.LogEntry{
		{Level: "info", Message: "counted", Fields: map[string]string{"domain": "example.org"}},
		{Level: "info", Message: "counted", Fields: map[string]string{"domain": "example.org"}},
	}
	if diff := cmp.Diff(want, host.Logs()); diff != "" {
		t.Errorf("host logs (-want +got):\n%s", diff)
	}

	// A host error reaches the plugin, and the plugin's error reaches the host.
	host.Err["example.org"] = fmt.Errorf("resolver: servfail: %w", sdk.ErrUnavailable)
	if _, _, err := r.Handle(t.Context(), rcpt("count")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("host lookup failure: got %v, want sdk.ErrUnavailable through both hops", err)
	}
}

func TestReconfigure(t *testing.T) {
	r, _ := start(t)
	ctx := t.Context()
	if d, _, _ := r.Handle(ctx, rcpt("greeting")); d.Message != "hi" {
		t.Errorf("default greeting: got %q, want hi", d.Message)
	}
	host2 := sdktest.NewHost()
	host2.MX["example.org"] = []sdk.MX{{Host: "mx2.example.org", Preference: 5}}
	if err := r.Configure(ctx, map[string]any{"greeting": "hello"}, host2); err != nil {
		t.Fatal(err)
	}
	if d, _, _ := r.Handle(ctx, rcpt("greeting")); d.Message != "hello" {
		t.Errorf("greeting: got %q, want hello", d.Message)
	}
	if d, _, err := r.Handle(ctx, rcpt("count")); err != nil || d.Reason != "count=1 mx=mx2.example.org/5" {
		t.Errorf("after reconfigure: got %q, %v; want the new host's answers", d.Reason, err)
	}

	// A refused config leaves the old one in place.
	err := r.Configure(ctx, map[string]any{"greeting": "fail"}, sdktest.NewHost())
	var errs sdk.ConfigErrors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Field != "greeting" {
		t.Errorf("refused config: got %v, want ConfigErrors naming greeting", err)
	}
	if d, _, err := r.Handle(ctx, rcpt("count")); err != nil || d.Reason != "count=2 mx=mx2.example.org/5" {
		t.Errorf("after a refused config: got %q, %v; want the previous host", d.Reason, err)
	}

	// Without host services, the plugin's Host says ErrUnavailable.
	if err := r.Configure(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Handle(ctx, rcpt("count")); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("no host: got %v, want sdk.ErrUnavailable", err)
	}
}

func TestDeliver(t *testing.T) {
	r, _ := start(t)
	d := sdktest.MinimalDelivery("test")
	got, err := r.Deliver(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	want := []sdk.DeliveryResult{
		{Outcome: sdk.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "ok a@example.org", RemoteMTA: "test"},
		{Outcome: sdk.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "ok b@example.org", RemoteMTA: "test"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

// startProcess runs the test binary as a real plugin process (TestMain)
// with a host offering versions.
func startProcess(t *testing.T, versions map[int]plugin.PluginSet) *plugin.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Its sockets in a folder the test removes: a process killed after a
	// failed negotiation cannot remove them itself.
	cmd.Env = append(os.Environ(), servePluginEnv+"=1", plugin.EnvUnixSocketDir+"="+t.TempDir())
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: versions,
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
	})
	t.Cleanup(c.Kill)
	return c
}

// TestRealProcess goes through go-plugin's process path: handshake,
// negotiation, and messages far above gRPC's 4 MiB default.
func TestRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	c := startProcess(t, sdk.VersionedPlugins())
	rpc, err := c.Client()
	if err != nil {
		t.Fatalf("start: %v", sdk.StartError(err))
	}
	if v := c.NegotiatedVersion(); v != sdk.ProtocolVersion {
		t.Errorf("negotiated version %d, want %d", v, sdk.ProtocolVersion)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	r := raw.(sdk.Remote)
	ctx := t.Context()
	if err := r.Configure(ctx, nil, sdktest.NewHost()); err != nil {
		t.Fatal(err)
	}
	req := sdktest.MinimalRequest(sdk.StageData)
	req.Message.Body = bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16) // 20 MiB each way
	_, e, err := r.Handle(ctx, req)
	if err != nil {
		t.Fatalf("20 MiB data: %v", err)
	}
	if !bytes.Equal(e.Body, req.Message.Body) {
		t.Errorf("20 MiB data: body of %d bytes came back as %d bytes", len(req.Message.Body), len(e.Body))
	}
	d := sdktest.MinimalDelivery("test")
	d.Content = req.Message.Body
	if res, err := r.Deliver(ctx, d); err != nil || len(res) != 2 {
		t.Errorf("20 MiB deliver: got %d results, %v", len(res), err)
	}

	// The process dies: calls say ErrUnavailable.
	c.Kill()
	if _, err := r.Info(ctx); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("after kill: got %v, want sdk.ErrUnavailable", err)
	}
}

// TestNegotiationRealProcess: a host that speaks only the version after
// ours refuses a plugin of ours with an error wrapping sdk.ErrProtocol.
func TestNegotiationRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	c := startProcess(t, map[int]plugin.PluginSet{sdk.ProtocolVersion + 1: sdk.VersionedPlugins()[sdk.ProtocolVersion]})
	_, err := c.Client()
	if err == nil {
		t.Fatalf("a version-%d host accepted a version-%d plugin", sdk.ProtocolVersion+1, sdk.ProtocolVersion)
	}
	if err := sdk.StartError(err); !errors.Is(err, sdk.ErrProtocol) {
		t.Errorf("got %v, want sdk.ErrProtocol", err)
	}
}
