package smtptest

import (
	"context"
	"runtime/pprof"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
)

// PairTurn is how many messages each server of BenchPaired takes in a
// turn (about a tenth of a second).
const PairTurn = 500

// BenchPaired measures what hooks cost a server accepting mail, in one
// process: two servers with a ContentSpool, base without hooks and name
// with hooks, take turns of PairTurn messages of BenchLoad's load (b.N
// each in all; which one goes first alternates), so that both meet the
// same load of a shared machine, where two benchmarks run seconds apart
// do not. It reports each one's cpu-µs/msg (the process's, clients
// included: a hook's CPU in another process is not counted),
// <name>-extra-cpu-µs/msg, their difference, and <name>/<base>-msgs/s,
// the ratio of their throughputs; and the last two as the medians of the
// turns' (…-turn-median), which a burst of another process's work on the
// machine moves less than the sums. Each server's goroutines and its
// clients' carry the pprof label target=<its name>, so that
// go tool pprof -tagfocus splits a -cpuprofile by server.
func BenchPaired(b *testing.B, base, name string, hooks hook.Dispatcher) {
	benchPaired(b, base, name, hooks, func(b *testing.B) smtp.Spool { return &ContentSpool{} })
}

// BenchPairedDurable is BenchPaired with each server on a spool of its
// own (queue.Spool in a temporary folder, see DurableSpool): its
// <name>/<base>-msgs/s is what the hooks cost durable accept, where each
// 250 waits for a group-committed fsync, as the gateway accepts mail.
func BenchPairedDurable(b *testing.B, base, name string, hooks hook.Dispatcher) {
	benchPaired(b, base, name, hooks, DurableSpool)
}

// benchPaired is BenchPaired with each server's spool made by spool.
func benchPaired(b *testing.B, base, name string, hooks hook.Dispatcher, spool func(*testing.B) smtp.Spool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	spools := [2]smtp.Spool{spool(b), spool(b)}
	targets := [2]*pairTarget{newPairTarget(ctx, b, base, nil, spools[0]), newPairTarget(ctx, b, name, hooks, spools[1])}
	body := BenchBody()
	var cpu, wall [2]time.Duration
	var extra, ratio []float64 // per turn
	b.ResetTimer()
	for done := 0; done < b.N; done += PairTurn {
		n := min(PairTurn, b.N-done)
		var turnCPU, turnWall [2]time.Duration
		for k := range targets {
			i := (k + done/PairTurn) % 2
			cpu0, start := cpuTime(), time.Now()
			if err := targets[i].send(n, body); err != nil {
				b.Fatal(err)
			}
			turnCPU[i], turnWall[i] = cpuTime()-cpu0, time.Since(start)
			cpu[i] += turnCPU[i]
			wall[i] += turnWall[i]
		}
		extra = append(extra, float64((turnCPU[1]-turnCPU[0]).Microseconds())/float64(n))
		ratio = append(ratio, turnWall[0].Seconds()/turnWall[1].Seconds())
	}
	b.StopTimer()
	perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(perMsg(cpu[0]), base+"-cpu-µs/msg")
	b.ReportMetric(perMsg(cpu[1]), name+"-cpu-µs/msg")
	b.ReportMetric(perMsg(cpu[1]-cpu[0]), name+"-extra-cpu-µs/msg")
	b.ReportMetric(wall[0].Seconds()/wall[1].Seconds(), name+"/"+base+"-msgs/s")
	b.ReportMetric(median(extra), name+"-extra-cpu-µs/msg-turn-median")
	b.ReportMetric(median(ratio), name+"/"+base+"-msgs/s-turn-median")
	for i, n := range [2]string{base, name} {
		if s, ok := spools[i].(interface{ Stats() queue.Stats }); ok {
			// A server that answers slower forms smaller batches: its
			// extra CPU then includes the spool's fsyncs, not only the
			// hooks' work.
			st := s.Stats()
			b.ReportMetric(float64(st.Commits)/float64(max(st.Batches, 1)), n+"-msgs/fsync")
		}
	}
}

// median returns the median of v (which it sorts), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// pairTarget is a server of BenchPaired and BenchConns sessions to it.
type pairTarget struct {
	clients []*smtp.Client
	labels  context.Context // the target's pprof labels, for its clients
	next    atomic.Int64    // messages sent, for the recipients' names
}

// newPairTarget starts the server with the pprof label target=name, which
// its goroutines and the clients' inherit.
func newPairTarget(ctx context.Context, b *testing.B, name string, hooks hook.Dispatcher, spool smtp.Spool) *pairTarget {
	labelled := pprof.WithLabels(ctx, pprof.Labels("target", name))
	pprof.SetGoroutineLabels(labelled)
	defer pprof.SetGoroutineLabels(ctx)
	addr := startBenchServer(b, hooks, spool)
	return &pairTarget{clients: dialBenchClients(ctx, b, addr), labels: labelled}
}

// send sends n messages over the sessions at once, as BenchLoad does,
// and returns the first refusal or failure.
func (t *pairTarget) send(n int, body []byte) error {
	return sendOver(t.labels, t.clients, int64(n), &t.next, body)
}
