package pluginhost_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// The plugin benchmarks. Run them with
//
//	go test ./core/pluginhost -run '^$' -bench . -count 5
//
// and compare the medians: BenchmarkPluginRcptCall is the cost of one call
// across the process boundary; BenchmarkAcceptPluginPaired's
// withplugin/noplugin-msgs/s is what one plugin rcpt hook costs a server
// accepting mail, measured in one run (BenchmarkAcceptWithPlugin against
// BenchmarkAcceptNoPlugin is the same, from two runs that the machine's
// other work moves apart).
//
// The test binary builds the plugin (testdata/testplugin) when it runs,
// from the sources of the folder it runs in, sdk included: two binaries
// made with go test -c and run in turn from one folder run the same
// plugin, so a change to the plugin's end of the call channel is compared
// only by running each binary in a tree of its own version (git worktree
// add, or git archive into a temporary folder).

// BenchmarkPluginRcptCall is the cost of one rcpt call of the test plugin
// (a recipient it has no opinion on): Plugin.Handle directly, no chain,
// no SMTP, so it is the conversion, the gRPC round trip over the local
// socket and the plugin's dispatch.
func BenchmarkPluginRcptCall(b *testing.B) {
	p := startBench(b)
	req := rcptRequest("user42")
	ctx := context.Background()
	b.ReportAllocs()
	cpu := meterCPU(b, "testplugin")
	b.ResetTimer()
	for b.Loop() {
		d, _, err := p.Handle(ctx, req)
		if err != nil || d.Verdict != sdk.Continue {
			b.Fatalf("Handle = %v, %v; want continue", d, err)
		}
	}
	cpu.report(b, "op")
}

// BenchmarkPluginRcptCallParallel is BenchmarkPluginRcptCall from
// smtptest.BenchConns goroutines at once, as the sessions of
// BenchmarkAcceptWithPlugin make them: calls share the channel both ways.
func BenchmarkPluginRcptCallParallel(b *testing.B) {
	p := startBench(b)
	req := rcptRequest("user42")
	b.ReportAllocs()
	b.SetParallelism((smtptest.BenchConns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	cpu := meterCPU(b, "testplugin")
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
	cpu.report(b, "op")
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
	cpu := meterCPU(b, "testplugin")
	smtptest.BenchAccept(b, benchChain(p))
	cpu.reportPlugin(b, "msg")
}

// BenchmarkAcceptPluginPaired is BenchmarkAcceptWithPlugin against
// BenchmarkAcceptNoPlugin in one process (smtptest.BenchPaired): a server
// without hooks and one with the test plugin at rcpt take turns, so that
// both meet the same load of a shared machine. withplugin/noplugin-msgs/s
// (and its turn median) is the ratio the "< 25%" is about;
// plugin-cpu-µs/msg is the plugin process's CPU time, which the
// process's own cpu figures do not count.
func BenchmarkAcceptPluginPaired(b *testing.B) {
	p := startBench(b)
	cpu := meterCPU(b, "testplugin")
	smtptest.BenchPaired(b, "noplugin", "withplugin", benchChain(p))
	cpu.reportPlugin(b, "msg")
}

// BenchmarkAcceptPluginPairedDurable is BenchmarkAcceptPluginPaired
// with each server on a durable spool (smtptest.BenchPairedDurable): its
// withplugin/noplugin-msgs/s is the measure, the hook's cost to
// durable accept throughput, in one run.
func BenchmarkAcceptPluginPairedDurable(b *testing.B) {
	p := startBench(b)
	cpu := meterCPU(b, "testplugin")
	smtptest.BenchPairedDurable(b, "noplugin", "withplugin", benchChain(p))
	cpu.reportPlugin(b, "msg")
}

// benchChain is the accept benchmarks' chain: p at rcpt only, under a
// timeout, as a configured plugin hook runs.
func benchChain(p *pluginhost.Plugin) *hook.Chain {
	return hook.NewChain(nil, hook.Entry{
		Handler: p,
		Timeout: 2 * time.Second,
		OnError: hook.OnErrorDefer,
		Stages:  []sdk.Stage{sdk.StageRcpt},
	})
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

// cpuMeter measures the CPU time the benchmark's process and its plugin's
// use, from the run times the kernel keeps per thread (schedstat), and
// how often their threads were switched out (status: voluntary and
// nonvoluntary context switches): on a shared machine they vary less
// than the wall-clock figures, they count the plugin's side, which b's
// own figures do not see, and on a virtual machine a switch (a thread
// that sleeps and is woken) costs more than a call's own work. Where
// there is no /proc it reports nothing. Threads that end during the
// benchmark take their figures with them.
type cpuMeter struct {
	plugin     string // /proc/<pid> of the plugin process; "" = not found
	host0, pl0 threadStats
}

// threadStats is what cpuMeter reads of a process's live threads.
type threadStats struct {
	cpu      time.Duration
	switches int64
}

// meterCPU starts measuring the CPU time of this process and of the plugin
// built from testdata/<name>.
func meterCPU(b *testing.B, name string) *cpuMeter {
	b.Helper()
	m := &cpuMeter{}
	exe := benchPlugin(b, name)
	procs, _ := pluginhosttest.Processes(filepath.Dir(exe))
	for _, p := range procs {
		if p.Exe == exe {
			m.plugin = filepath.Join("/proc", strconv.Itoa(p.PID))
		}
	}
	m.host0, _ = threadsStats("/proc/self")
	if m.plugin != "" {
		m.pl0, _ = threadsStats(m.plugin)
	}
	return m
}

// report reports both processes' CPU time and switches per b.N units.
func (m *cpuMeter) report(b *testing.B, unit string) {
	if host, ok := threadsStats("/proc/self"); ok {
		b.ReportMetric(float64((host.cpu-m.host0.cpu).Nanoseconds())/1e3/float64(b.N), "host-cpu-µs/"+unit)
		b.ReportMetric(float64(host.switches-m.host0.switches)/float64(b.N), "host-switches/"+unit)
	}
	m.reportPlugin(b, unit)
}

// reportPlugin reports the plugin's CPU time and switches per b.N units.
func (m *cpuMeter) reportPlugin(b *testing.B, unit string) {
	if m.plugin == "" {
		return
	}
	if pl, ok := threadsStats(m.plugin); ok {
		b.ReportMetric(float64((pl.cpu-m.pl0.cpu).Nanoseconds())/1e3/float64(b.N), "plugin-cpu-µs/"+unit)
		b.ReportMetric(float64(pl.switches-m.pl0.switches)/float64(b.N), "plugin-switches/"+unit)
	}
}

// threadsStats sums the run times and context switches of process dir's
// live threads.
func threadsStats(dir string) (threadStats, bool) {
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		return threadStats{}, false
	}
	var sum threadStats
	for _, t := range tasks {
		task := filepath.Join(dir, "task", t.Name())
		if data, err := os.ReadFile(filepath.Join(task, "schedstat")); err == nil {
			if f := strings.Fields(string(data)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				sum.cpu += time.Duration(ns)
			}
		}
		sum.switches += taskSwitches(filepath.Join(task, "status"))
	}
	return sum, true
}

// taskSwitches is the voluntary and nonvoluntary context switches of the
// thread whose status file is path; 0 when it has ended.
func taskSwitches(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n int64
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(line, ":")
		if ok && (name == "voluntary_ctxt_switches" || name == "nonvoluntary_ctxt_switches") {
			v, _ := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			n += v
		}
	}
	return n
}
