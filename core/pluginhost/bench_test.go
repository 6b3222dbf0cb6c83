package pluginhost_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// The plugin benchmarks. Run them with
//
//	go test ./core/pluginhost -run '^$' -bench . -count 5
//
// and compare the medians: BenchmarkPluginRcptCall is the cost of one call
// across the process boundary; BenchmarkAcceptWithPlugin against
// BenchmarkAcceptNoPlugin is what one plugin rcpt hook costs a server
// accepting mail.

// Load of the accept benchmarks, the same as scripts/bench_test.go's, so
// the figures compare with the Lua ones.
const ()

// BenchmarkPluginRcptCall is the cost of one rcpt call of the test plugin
// (a recipient it has no opinion on): Plugin.Handle directly, no chain,
// no SMTP, so it is the conversion, the gRPC round trip over the local
// socket and the plugin's dispatch.
func BenchmarkPluginRcptCall(b *testing.B) {
	p := startBench(b)
	req := rcptRequest("user42")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d, _, err := p.Handle(ctx, req)
		if err != nil || d.Verdict != sdk.Continue {
			b.Fatalf("Handle = %v, %v; want continue", d, err)
		}
	}
}

// BenchmarkPluginRcptCallParallel is BenchmarkPluginRcptCall from
// smtptest.BenchConns goroutines at once, as the sessions of
// BenchmarkAcceptWithPlugin make them: calls share the channel both ways.
func BenchmarkPluginRcptCallParallel(b *testing.B) {
	p := startBench(b)
	req := rcptRequest("user42")
	b.ReportAllocs()
	b.SetParallelism((smtptest.BenchConns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			d, _, err := p.Handle(ctx, req)
			if err != nil || d.Verdict != sdk.Continue {
				b.Errorf("Handle = %v, %v; want continue", d, err)
				return
			}
		}
	})
}

// BenchmarkAcceptNoPlugin is the baseline of BenchmarkAcceptWithPlugin:
// the same server and load without a hook chain.
func BenchmarkAcceptNoPlugin(b *testing.B) { smtptest.BenchAccept(b, nil) }

// BenchmarkAcceptWithPlugin measures a real server (discarding spool)
// with the test plugin as its one hook, at rcpt only, driven by smtptest.BenchConns
// sessions sending 2 KB messages with pipelining. It reports msgs/s;
// compare with BenchmarkAcceptNoPlugin.
func BenchmarkAcceptWithPlugin(b *testing.B) {
	p := startBench(b)
	smtptest.BenchAccept(b, hook.NewChain(nil, hook.Entry{
		Handler: p,
		Timeout: 2 * time.Second,
		OnError: hook.OnErrorDefer,
		Stages:  []sdk.Stage{sdk.StageRcpt},
	}))
}

// startBench starts the test plugin for a benchmark and closes it at the
// end.
func startBench(b *testing.B) *pluginhost.Plugin {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, pluginhost.Options{
		Name:     "bench",
		Path:     benchPlugin(b, "testplugin"),
		Config:   map[string]any{"greeting": "hello"},
		Services: hostsvc.New(hostsvc.Options{Durable: hostsvc.NewMemory(hostsvc.MemoryOptions{})}),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// benchPlugin is plugin (pluginhost_test.go) for benchmarks: it builds
// testdata/<name> once per test binary, into the same folder.
func benchPlugin(b *testing.B, name string) string {
	b.Helper()
	dir, err := buildDir()
	if err != nil {
		b.Fatal(err)
	}
	v, _ := builds.LoadOrStore(name, &build{})
	bl := v.(*build)
	bl.once.Do(func() {
		bl.path = filepath.Join(dir, "gateway-plugin-"+name)
		cmd := exec.Command("go", "build", "-o", bl.path, "./testdata/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			bl.err = fmt.Errorf("go build ./testdata/%s: %v\n%s", name, err, out)
		}
	})
	if bl.err != nil {
		b.Fatal(bl.err)
	}
	return bl.path
}
