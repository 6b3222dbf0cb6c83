package lua_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/sdk"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "x", false},
		{"*.example.com", "mx.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.EXAMPLE.com", "Mx.Example.COM", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"*@partner.test", "bob@partner.test", true},
		{"*@partner.test", "bob@partner.test.evil", false},
		{"**a", "bbba", true},
		{"a*", "a", true},
		{"*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"|"+tt.s, func(t *testing.T) {
			got := eval(t, fmt.Sprintf("gw.glob(%q, %q)", tt.pattern, tt.s))
			if got != fmt.Sprint(tt.want) {
				t.Errorf("gw.glob(%q, %q) = %s, want %v", tt.pattern, tt.s, got, tt.want)
			}
		})
	}
}

func TestCIDR(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{`gw.cidr.contains("10.0.0.0/8", "10.1.2.3")`, "true"},
		{`gw.cidr.contains("10.0.0.0/8", "11.1.2.3")`, "false"},
		{`gw.cidr.contains("10.1.2.3/8", "10.200.0.1")`, "true"}, // host bits ignored
		{`gw.cidr.contains("192.0.2.7", "192.0.2.7")`, "true"},
		{`gw.cidr.contains("192.0.2.7", "192.0.2.8")`, "false"},
		{`gw.cidr.contains("10.0.0.0/8", "::ffff:10.0.0.1")`, "true"},
		{`gw.cidr.contains("::ffff:10.0.0.0/104", "10.0.0.1")`, "true"},
		{`gw.cidr.contains("2001:db8::/32", "2001:db8:1::5")`, "true"},
		{`gw.cidr.contains("2001:db8::/32", "10.0.0.1")`, "false"},
		{`gw.cidr.contains({"192.0.2.0/24", "10.0.0.0/8"}, "10.9.9.9")`, "true"},
		{`gw.cidr.contains({}, "10.9.9.9")`, "false"},
		{`gw.cidr.contains("10.0.0.0/8", "")`, "false"},
		{`gw.cidr.contains("10.0.0.0/8", "not an ip")`, "false"},
		{`gw.cidr.contains("10.0.0.0/8", ctx.conn.ip)`, "false"},
		{`gw.cidr.contains("192.0.2.0/24", ctx.conn.ip)`, "true"},
		{`select(2, pcall(gw.cidr.contains, "10.0.0.0/33", "10.0.0.1"))`, `t.lua:2: gw.cidr.contains: bad CIDR "10.0.0.0/33"`},
		{`select(2, pcall(gw.cidr.contains, {"10.0.0.0/8", 5}, "11.0.0.1"))`, "t.lua:2: gw.cidr.contains: entry 2 is a number, want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := eval(t, tt.expr); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestAddr(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{`gw.addr.parse("alice@Example.COM")["local"] .. "|" .. gw.addr.parse("alice@Example.COM").domain`, "alice|Example.COM"},
		{`gw.addr.parse('"a b"@x.example')["local"]`, `"a b"`},
		{`select(2, gw.addr.parse("no-at-sign")) ~= nil`, "true"},
		{`gw.addr.parse("no-at-sign")`, "nil"},
		{`gw.addr.parse("")`, "nil"},
		{`gw.addr.domain("bob@sub.example.org")`, "sub.example.org"},
		{`gw.addr.domain("bob")`, "nil"},
		{`gw.addr.domain("")`, "nil"},
		{`gw.addr.localpart("bob+tag@example.org")`, "bob+tag"},
		{`gw.addr.localpart("@example.org")`, "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := eval(t, tt.expr); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestParams(t *testing.T) {
	params := map[string]any{
		"allow": []any{"10.0.0.0/8", "192.0.2.0/24"},
		"limit": int64(100),
		"ratio": 0.5,
		"on":    true,
		"word":  "hi",
		"map":   map[string]any{"a": []any{"x"}, "n": 3},
		"list":  []string{"p", "q"},
	}
	opt := lua.Options{Params: params}
	tests := []struct {
		expr string
		want string
	}{
		{"gw.params.allow[2]", "192.0.2.0/24"},
		{"#gw.params.allow", "2"},
		{"gw.params.limit + 1", "101"},
		{"gw.params.ratio", "0.5"},
		{"gw.params.on", "true"},
		{"gw.params.word", "hi"},
		{"gw.params.map.a[1]", "x"},
		{"gw.params.map.n", "3"},
		{"gw.params.list[2]", "q"},
		{"gw.params.missing", "nil"},
		{"gw.cidr.contains(gw.params.allow, '10.2.3.4')", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := eval(t, tt.expr, opt); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
	if got := eval(t, "type(gw.params)"); got != "table" {
		t.Errorf("gw.params without params is a %s, want an empty table", got)
	}
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	s := load(t, `
function on_rcpt(ctx)
  gw.log("info", "rate limit", { ip = ctx.conn.ip, count = 3, over = true })
  gw.log("debug", "plain")
  print("printed", 1)
end`, lua.Options{Log: log})
	handle(t, s, request(sdk.StageRcpt))
	want := `level=INFO msg="rate limit" hook=lua.t stage=rcpt session=S1 count=3 ip=192.0.2.7 over=true
level=DEBUG msg=plain hook=lua.t stage=rcpt session=S1
level=DEBUG msg="lua print" hook=lua.t msg="printed\t1"
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if got := eval(t, `select(2, pcall(gw.log, "loud", "x"))`); !strings.Contains(got, `t.lua:2: gw.log: hostsvc: log level "loud" is not debug, info, warn or error`) {
		t.Errorf("bad level: %s", got)
	}
}

func TestTime(t *testing.T) {
	before := float64(time.Now().UnixNano()) / 1e9
	got := eval(t, `string.format("%.3f", gw.time())`)
	after := float64(time.Now().UnixNano()) / 1e9
	var v float64
	if _, err := fmt.Sscanf(got, "%f", &v); err != nil || v < before-0.001 || v > after+0.001 {
		t.Errorf("gw.time() = %s, want between %.3f and %.3f", got, before, after)
	}
}

func TestDNS(t *testing.T) {
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
2.0.0.127.zen.example.test. IN A 127.0.0.2
`)
	srv.SetFault("broken.example.test.", 15, resolvertest.ServFail) // MX
	r, err := resolver.New(resolver.Options{Servers: []string{srv.Addr()}, Timeout: 500 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	opt := lua.Options{Services: hostsvc.New(hostsvc.Options{Resolver: r})}
	tests := []struct {
		expr string
		want string
	}{
		{`(function() local t = {} for _, m in ipairs(gw.dns.mx("example.test")) do t[#t+1] = m.pref .. " " .. m.host end return table.concat(t, ",") end)()`,
			"10 mx1.example.test,20 mx2.example.test"},
		{`table.concat(gw.dns.a("mx1.example.test"), ",")`, "192.0.2.1,2001:db8::1"},
		{`table.concat(gw.dns.txt("example.test"), ",")`, "v=spf1 -all"},
		{`table.concat(gw.dns.ptr(ctx.conn.ip), ",")`, "client.example.test"},
		{`#gw.dns.txt("mx1.example.test")`, "0"},
		{`gw.dns.a("2.0.0.127.zen.example.test")[1]`, "127.0.0.2"},
		{`table.concat({tostring(gw.dns.a("3.0.0.127.zen.example.test")), select(2, gw.dns.a("3.0.0.127.zen.example.test")), tostring(select(3, gw.dns.a("3.0.0.127.zen.example.test")))}, "|")`,
			"nil|resolver: A 3.0.0.127.zen.example.test: no such domain|false"},
		{`table.concat({tostring(gw.dns.mx("broken.example.test")), tostring(select(3, gw.dns.mx("broken.example.test")))}, "|")`, "nil|true"},
		{`select(2, gw.dns.ptr("not-an-ip"))`, "resolver: PTR not-an-ip: invalid name"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := eval(t, tt.expr, opt); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
	t.Run("no resolver", func(t *testing.T) {
		got := eval(t, `(function() local r, err = gw.dns.mx("example.test") return tostring(r) .. "|" .. err end)()`)
		if got != "nil|hostsvc: no resolver" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("deadline applies", func(t *testing.T) {
		srv.SetFault("slow.example.test.", 15, resolvertest.Drop)
		s := load(t, `function on_connect(ctx) local r, err = gw.dns.mx("slow.example.test") ctx:note("err", err) end`, opt)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := s.Handle(ctx, request(sdk.StageConnect))
		if took := time.Since(start); took > 300*time.Millisecond {
			t.Errorf("Handle took %v with a 50ms deadline", took)
		}
		if err == nil {
			t.Errorf("Handle after the deadline: no error (took %v, ctx err %v)", time.Since(start), ctx.Err())
		}
	})
}

func TestKV(t *testing.T) {
	spool, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	mem := hostsvc.NewMemory(hostsvc.MemoryOptions{})
	svc := hostsvc.New(hostsvc.Options{Durable: spool, Ephemeral: mem})
	s := load(t, `
function on_mail(ctx)
  local n = gw.kv.incr("count")
  local e = gw.ephemeral.incr("count", 2, 60)
  return gw.reject(550, "5.7.1", tostring(n) .. "/" .. tostring(e))
end
function on_rcpt(ctx)
  gw.kv.set("k", "v1")
  local a = gw.kv.get("k")
  gw.kv.set("n", 5, 3600)
  local b = gw.kv.incr("n", 10)
  gw.kv.delete("k")
  local c = gw.kv.get("k")
  gw.kv.set("gone", "x", 0.000001)
  local d = gw.kv.get("gone")
  return gw.reject(550, "5.7.1", table.concat({a, b, tostring(c), tostring(d), tostring(gw.kv == gw.durable)}, "|"))
end
`, lua.Options{Name: "relay", Services: svc, Pool: 4})

	d, _ := handle(t, s, request(sdk.StageRcpt))
	if d.Message != "v1|15|nil|nil|true" {
		t.Errorf("kv sequence = %q, want v1|15|nil|nil|true", d.Message)
	}
	if v, ok, _ := spool.KVGet("relay/n", time.Now()); !ok || v != "15" {
		t.Errorf("spool key relay/n = %q, %v; want 15 (keys are namespaced)", v, ok)
	}

	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, _, err := s.Handle(context.Background(), request(sdk.StageMail)); err != nil {
				t.Errorf("Handle: %v", err)
			}
		})
	}
	wg.Wait()
	if v, _, _ := spool.KVGet("relay/count", time.Now()); v != "100" {
		t.Errorf("durable counter after 100 calls = %q, want 100", v)
	}
	if v, _, _ := mem.KVGet("relay/count", time.Now()); v != "200" {
		t.Errorf("ephemeral counter after 100 calls = %q, want 200 (a store of its own)", v)
	}

	t.Run("no durable store", func(t *testing.T) {
		if got := eval(t, `gw.kv.get("x")`); !strings.Contains(got, "t.lua:2: gw.durable.get: hostsvc: durable: no key-value store") {
			t.Errorf("got %q", got)
		}
		if got := eval(t, `gw.ephemeral.incr("x")`); got != "1" {
			t.Errorf("gw.ephemeral.incr without services = %q, want 1 (an in-memory store of the script's own)", got)
		}
	})
	t.Run("store errors raise", func(t *testing.T) {
		got := eval(t, `gw.kv.set("x", string.rep("v", 70000))`, lua.Options{Services: svc})
		if !strings.Contains(got, "t.lua:2: gw.durable.set: hostsvc: value of 70000 bytes exceeds 65536") {
			t.Errorf("got %q", got)
		}
		got = eval(t, `select(2, pcall(gw.kv.incr, "x", 1.5))`, lua.Options{Services: svc})
		if !strings.Contains(got, "gw.durable.incr: delta must be an integer") {
			t.Errorf("got %q", got)
		}
	})
}
