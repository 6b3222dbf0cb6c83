package scripts

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// benchScript is the hook of the accept benchmarks: a table look-up and an
// accept at rcpt, a header read at data.
const benchScript = `
local known = {}
for i = 1, 100 do known["user" .. i .. "@example.test"] = true end

function on_rcpt(ctx)
  if known[ctx.txn.rcpt] then return gw.accept() end
  return gw.continue()
end

function on_data(ctx)
  local subject = ctx.msg:header("Subject")
  if subject == nil then return gw.continue() end
  return gw.continue()
end
`

// BenchmarkAcceptNoHooks is the baseline of BenchmarkAcceptWithLua: the
// same server and load without a hook chain.
func BenchmarkAcceptNoHooks(b *testing.B) { smtptest.BenchAccept(b, nil) }

// BenchmarkAcceptWithLua measures a real server (discarding spool) with
// one Lua script answering rcpt and data, driven by smtptest.BenchConns sessions
// sending 2 KB messages with pipelining. It reports msgs/s; compare with
// BenchmarkAcceptNoHooks.
func BenchmarkAcceptWithLua(b *testing.B) {
	s := loadBenchScript(b)
	smtptest.BenchAccept(b, hook.NewChain(nil, hook.Entry{Handler: s, OnError: hook.OnErrorDefer, Timeout: time.Second}))
}

// BenchmarkAcceptWithLuaRcptOnly is BenchmarkAcceptWithLua without on_data:
// the difference between the two is the data stage's cost (opening the
// draft, parsing the header for ctx.msg, the call).
func BenchmarkAcceptWithLuaRcptOnly(b *testing.B) {
	src, _, _ := strings.Cut(benchScript, "function on_data")
	s, err := lua.Load(lua.Options{Name: "bench", Source: src})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	smtptest.BenchAccept(b, hook.NewChain(nil, hook.Entry{Handler: s, OnError: hook.OnErrorDefer, Timeout: time.Second}))
}

func loadBenchScript(b *testing.B) *lua.Script {
	b.Helper()
	s, err := lua.Load(lua.Options{Name: "bench", Source: benchScript})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// BenchmarkLuaRcptCall is the cost of one rcpt call of the script:
// Handle directly, no chain, no network.
func BenchmarkLuaRcptCall(b *testing.B) {
	s := loadBenchScript(b)
	sess := &hook.Session{ID: "bench", ClientIP: netip.MustParseAddr("192.0.2.1"), Port: 40000, HELO: "client.test", ESMTP: true}
	env := &envelope.Envelope{Sender: envelope.Address{Local: "sender", Domain: "example.org"}}
	rcpt := envelope.Recipient{Address: envelope.Address{Local: "user42", Domain: "example.test"}}
	req := &hook.Request{Stage: sdk.StageRcpt, Session: sess, Envelope: env, Rcpt: &rcpt}
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		d, _, err := s.Handle(ctx, req)
		if err != nil || d.Verdict != sdk.Accept {
			b.Fatalf("Handle = %v, %v", d, err)
		}
	}
}

// reportCPU starts counting the process's CPU time (user and system, the
// collector's included) and returns the function that reports it as
// cpu-ns/op: on a shared machine, where ns/op also counts the time others
// had the CPU, it varies less.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLuaDataCall is the cost of one data call of the script (a
// header read through the lazy message view, parsed in each call): Handle
// directly.
func BenchmarkLuaDataCall(b *testing.B) { benchLuaData(b, false) }

// BenchmarkLuaDataCallParsed is BenchmarkLuaDataCall on a view whose
// header is parsed already, as the server's is (it reads TLS-Required
// before the data hook): the call's own cost.
func BenchmarkLuaDataCallParsed(b *testing.B) { benchLuaData(b, true) }

func benchLuaData(b *testing.B, parsed bool) {
	s := loadBenchScript(b)
	body := smtptest.BenchBody()
	sess := &hook.Session{ID: "bench", ClientIP: netip.MustParseAddr("192.0.2.1"), Port: 40000, HELO: "client.test", ESMTP: true}
	env := &envelope.Envelope{
		Sender:     envelope.Address{Local: "sender", Domain: "example.org"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "user1", Domain: "example.test"}}},
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	view := message.NewView(int64(len(body)), open)
	if _, err := view.Header(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if !parsed {
			view = message.NewView(int64(len(body)), open)
		}
		req := &hook.Request{Stage: sdk.StageData, Session: sess, Envelope: env, Message: view}
		if _, _, err := s.Handle(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLuaPairDispatch is the Lua pair of BenchmarkAcceptLuaPaired
// without the network: per message, the chain (with the hook's 1s
// timeout, as the server's) dispatches rcpt and then data on a view whose
// header is parsed, as the server's is (parsed once here: the server
// parses it with hooks or without). Its cpu-ns/op is what the script adds
// to a message's CPU time, less the server's dispatch, when the CPU's
// caches hold what the pair touches (they do here: it runs alone).
func BenchmarkLuaPairDispatch(b *testing.B) { benchLuaPair(b, false) }

// BenchmarkLuaPairDispatchCold is BenchmarkLuaPairDispatch with the CPU's
// caches emptied before each pair (8 MiB written): its pair-ns/op, the
// time the pair alone took, is the other end of what a server meets, whose
// sessions and network code take the caches between two calls. The gap
// between the two is the memory the pair reads (gopher-lua's state, its
// tables, the code), not its instructions.
func BenchmarkLuaPairDispatchCold(b *testing.B) { benchLuaPair(b, true) }

func benchLuaPair(b *testing.B, cold bool) {
	s := loadBenchScript(b)
	chain := hook.NewChain(nil, hook.Entry{Handler: s, OnError: hook.OnErrorDefer, Timeout: time.Second})
	body := smtptest.BenchBody()
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	view := message.NewView(int64(len(body)), open)
	if _, err := view.SharedHeader(); err != nil {
		b.Fatal(err)
	}
	sess := &hook.Session{ID: "bench", ClientIP: netip.MustParseAddr("192.0.2.1"), Port: 40000, HELO: "client.test", ESMTP: true}
	ctx := context.Background()
	var evict []byte
	if cold {
		evict = make([]byte, 8<<20)
	}
	var inPair time.Duration
	b.ReportAllocs()
	if !cold {
		defer reportCPU(b)()
	}
	i := 0
	for b.Loop() {
		for j := 0; j < len(evict); j += 64 { // a cache line each
			evict[j]++
		}
		start := time.Now()
		i++
		env := &envelope.Envelope{Sender: envelope.Address{Local: "sender", Domain: "example.org"}}
		rcpt := envelope.Recipient{Address: envelope.Address{Local: "user" + strconv.Itoa(i%100+1), Domain: "example.test"}}
		res := chain.Dispatch(ctx, &hook.Request{Stage: sdk.StageRcpt, Session: sess, Envelope: env, Rcpt: &rcpt})
		if res.Decision.Verdict != sdk.Accept {
			b.Fatalf("rcpt: %v", res.Decision)
		}
		env.Recipients = append(env.Recipients, rcpt)
		res = chain.Dispatch(ctx, &hook.Request{Stage: sdk.StageData, Session: sess, Envelope: env, Message: view})
		if res.Decision.Verdict != sdk.Continue {
			b.Fatalf("data: %v", res.Decision)
		}
		inPair += time.Since(start)
	}
	if cold && b.N > 0 {
		b.ReportMetric(float64(inPair.Nanoseconds())/float64(b.N), "pair-ns/op")
	}
}
