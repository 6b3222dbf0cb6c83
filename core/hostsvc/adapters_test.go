package hostsvc_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/sdk"
)

// TestMain fails the run if the test plugin outlives the tests.
func TestMain(m *testing.M) { os.Exit(pluginhosttest.Main(m)) }

// script is testdata/hostplugin in Lua: the command's argument names one
// host-service call, the reason carries its result.
const script = `
local function split(s)
  local t = {}
  for f in (s .. "\t"):gmatch("([^\t]*)\t") do t[#t+1] = f end
  return t
end

local function lookup(op, name)
  local r, err = gw.dns[op](name)
  if r == nil then return "err " .. err end
  if op == "mx" then
    local t = {}
    for _, m in ipairs(r) do t[#t+1] = m.pref .. " " .. m.host end
    r = t
  end
  return "ok " .. table.concat(r, ",")
end

local function run(a)
  local kv = a[2] == "ephemeral" and gw.ephemeral or gw.durable
  local op = a[1]
  if op == "get" then
    local v = kv.get(a[3])
    if v == nil then return "nil" end
    return "ok " .. v
  elseif op == "set" then
    kv.set(a[3], a[4], tonumber(a[5]))
    return "ok"
  elseif op == "incr" then
    return "ok " .. string.format("%d", kv.incr(a[3], tonumber(a[4]), tonumber(a[5])))
  elseif op == "delete" then
    kv.delete(a[3])
    return "ok"
  elseif op == "log" then
    gw.log(a[2], a[3])
    return "ok"
  end
  return lookup(op, a[2])
end

function on_command(ctx)
  local ok, res = pcall(run, split(ctx.arg))
  if not ok then res = "err " .. tostring(res) end
  return gw.continue():reason(res)
end
`

// adapterPrefix matches what each adapter puts before the services' own
// error text: "t.lua:12: gw.durable.get: " for Lua (a raised error),
// "sdk: host kv get: " for a plugin (the error as it crossed gRPC).
var adapterPrefix = regexp.MustCompile(`^(.*?gw\.[a-z.]+: |sdk: host [a-z ]+: )`)

// TestAdapters runs the same host-service calls through a Lua script and
// through a real plugin process, over one hostsvc.Services: the results,
// limits and error texts must be the same.
func TestAdapters(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a plugin")
	}
	var logs logBuffer
	svc := services(t, slog.New(slog.NewTextHandler(&logs, nil)))
	handlers := map[string]hook.Handler{"lua": loadScript(t, svc), "plugin": startPlugin(t, svc)}
	long := strings.Repeat("k", sdk.KVMaxKey+1)
	tests := []struct{ op, want string }{
		{"get\tdurable\tk", "nil"},
		{"set\tdurable\tk\tv1", "ok"},
		{"get\tdurable\tk", "ok v1"},
		{"get\tephemeral\tk", "nil"},
		{"incr\tephemeral\tn\t5\t60", "ok 5"},
		{"incr\tephemeral\tn\t2", "ok 7"},
		{"get\tdurable\tn", "nil"},
		{"delete\tdurable\tk", "ok"},
		{"delete\tdurable\tk", "ok"},
		{"get\tdurable\tk", "nil"},
		{"set\tephemeral\tgone\tx\t0.000001", "ok"},
		{"get\tephemeral\tgone", "nil"},
		{"set\tdurable\ttext\tabc", "ok"},
		{"incr\tdurable\ttext\t1", `err hostsvc: "text": not an integer`},
		{"set\tephemeral\ttext\tabc", "ok"},
		{"incr\tephemeral\ttext\t1", `err hostsvc: "text": not an integer`},
		{"set\tdurable\tbig\t9223372036854775807", "ok"},
		{"incr\tdurable\tbig\t1", `err hostsvc: "big": integer overflow`},
		{"set\tephemeral\tbig\t9223372036854775807", "ok"},
		{"incr\tephemeral\tbig\t1", `err hostsvc: "big": integer overflow`},
		{"get\tdurable\t", "err hostsvc: empty key"},
		{"set\tephemeral\t" + long + "\tv", "err hostsvc: key of 513 bytes exceeds 512"},
		{"set\tephemeral\tk\t" + strings.Repeat("v", sdk.KVMaxValue+1), "err hostsvc: value of 65537 bytes exceeds 65536"},
		{"set\tdurable\tk\tv\t-1", "err hostsvc: ttl -1s is not from 0 to 100 years"},
		{"incr\tephemeral\tk\t1\t4000000000", "err hostsvc: ttl 1111111h6m40s is not from 0 to 100 years"},
		{"log\tloud\tx", `err hostsvc: log level "loud" is not debug, info, warn or error`},
		{"log\twarning\tx", `err hostsvc: log level "warning" is not debug, info, warn or error`},
		{"log\tinfo\thello", "ok"},
		{"mx\texample.test", "ok 10 mx1.example.test,20 mx2.example.test"},
		{"a\tmx1.example.test", "ok 192.0.2.1,2001:db8::1"},
		{"txt\texample.test", "ok v=spf1 -all"},
		{"ptr\t192.0.2.7", "ok client.example.test"},
		{"ptr\tnot-an-ip", "err resolver: PTR not-an-ip: invalid name"},
		{"a\tnope.example.test", "err resolver: A nope.example.test: no such domain"},
	}
	for _, side := range []string{"lua", "plugin"} {
		h := handlers[side]
		for i, tt := range tests {
			got := call(t, h, tt.op)
			if got != tt.want {
				t.Errorf("%s: case %d %.60q: got %.200q\n\twant %q", side, i, tt.op, got, tt.want)
			}
		}
	}
	for _, want := range []string{`level=INFO msg=hello hook=lua.t stage=command session=S1`, `level=INFO msg=hello hook=plugin.t`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log has no %q:\n%s", want, logs.String())
		}
	}
}

// logBuffer collects log lines from the test and the plugin's calls.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestAdaptersUnconfigured: without a resolver or a durable store the
// calls fail the same way on both sides.
func TestAdaptersUnconfigured(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a plugin")
	}
	svc := hostsvc.New(hostsvc.Options{})
	for side, h := range map[string]hook.Handler{"lua": loadScript(t, svc), "plugin": startPlugin(t, svc)} {
		for _, tt := range []struct{ op, want string }{
			{"get\tdurable\tk", "err hostsvc: durable: no key-value store"},
			{"incr\tephemeral\tk\t1", "ok 1"},
			{"mx\texample.test", "err hostsvc: no resolver"},
		} {
			if got := call(t, h, tt.op); got != tt.want {
				t.Errorf("%s: %q: got %q, want %q", side, tt.op, got, tt.want)
			}
		}
	}
}

// call runs op through h and returns the result without the adapter's
// error prefix.
func call(t *testing.T, h hook.Handler, op string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req := &hook.Request{Stage: sdk.StageCommand, Session: &hook.Session{ID: "S1"}, Command: "XHOST", Arg: op}
	d, _, err := h.Handle(ctx, req)
	if err != nil {
		t.Fatalf("%s: %q: %v", h.Name(), op, err)
	}
	res, found := strings.CutPrefix(d.Reason, "err ")
	if !found {
		return d.Reason
	}
	return "err " + adapterPrefix.ReplaceAllString(res, "")
}

// services are the host services over a real spool, a real DNS server on
// loopback and a fresh memory store.
func services(t *testing.T, log *slog.Logger) *hostsvc.Services {
	t.Helper()
	spool, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	srv := resolvertest.Start(t, `
$ORIGIN example.test.
@        3600 IN SOA ns hostmaster 1 3600 600 86400 30
@             IN MX  20 mx2
@             IN MX  10 mx1
mx1           IN A   192.0.2.1
mx1           IN AAAA 2001:db8::1
mx2           IN A   192.0.2.2
@             IN TXT "v=spf1 " "-all"
7.2.0.192.in-addr.arpa. IN PTR client.example.test.
`)
	r, err := resolver.New(resolver.Options{Servers: []string{srv.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return hostsvc.New(hostsvc.Options{Resolver: r, Durable: spool, Log: log})
}

func loadScript(t *testing.T, svc *hostsvc.Services) hook.Handler {
	t.Helper()
	s, err := lua.Load(lua.Options{Name: "t", Source: script, Services: svc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func startPlugin(t *testing.T, svc *hostsvc.Services) hook.Handler {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gateway-plugin-hostsvc")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/hostplugin").CombinedOutput(); err != nil {
		t.Fatalf("go build the test plugin: %v\n%s", err, out)
	}
	p, err := pluginhost.Start(t.Context(), pluginhost.Options{Name: "t", Path: bin, Services: svc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
