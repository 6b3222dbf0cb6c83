package delivery_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"runtime/pprof"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// BenchmarkSMTPNewConnections delivers one message per iteration, each
// over a new connection (no pool: MaxIdle < 0, QUIT after every job), to
// a loopback sink that offers STARTTLS with a certificate of a test CA
// (ECDSA P-256), at TLS 1.2 and TLS 1.3, under "opportunistic" (any
// certificate) and "verify" (chain and name verified). It reports the CPU
// per delivery of the whole process: the transport's side and the sink's,
// both in it.
func BenchmarkSMTPNewConnections(b *testing.B) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, level := range []string{delivery.TLSOpportunistic, delivery.TLSVerify} {
			name := "tls1" + strconv.Itoa(int(version-tls.VersionTLS10)) + "/" + level
			b.Run(name, func(b *testing.B) { benchNewConnections(b, version, level) })
		}
	}
}

func benchNewConnections(b *testing.B, version uint16, level string) {
	tr, route := newConnectionsWorld(b, version, level, 0)
	cpu0 := processCPU()
	for b.Loop() {
		deliverBench(b, tr, route)
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// newConnectionsWorld starts BenchmarkSMTPNewConnections's sink and a
// transport to it without a pool, keeping sessions TLSSessions says, and
// returns the transport and the route to the sink at level.
func newConnectionsWorld(b *testing.B, version uint16, level string, sessions int) (*delivery.SMTP, delivery.Route) {
	ca := smtptest.NewCA(b)
	cert := ca.Issue(b, "mx.bench.test")
	m := startTestMTA(b, testMTAConfig{mod: func(o *smtp.Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version}
		o.Hooks, o.Spool, o.Log = nil, &smtptest.DiscardSpool{}, slog.New(slog.DiscardHandler)
	}})
	r, _ := newTestResolver(b, "test. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300\nmx.bench.test. IN A 127.0.0.1\n")
	tr := newSMTPTransport(b, delivery.SMTPOptions{Resolver: r, RootCAs: ca.Pool, MaxIdle: -1, TLSSessions: sessions,
		Log: slog.New(slog.DiscardHandler)})
	return tr, delivery.Route{Via: "mx.bench.test:" + strconv.Itoa(m.port), TLS: level}
}

// deliverBench delivers one message over tr by route, or fails b.
func deliverBench(b *testing.B, tr *delivery.SMTP, route delivery.Route) {
	job, _ := newTestJob(route, smtpTestBody, "bob@example.test")
	if got := tr.Deliver(context.Background(), job); len(got) != 1 || got[0].Class != delivery.Delivered {
		b.Fatalf("Deliver = %+v, want delivered", got)
	}
}

// resumePairTurn is how many deliveries each transport of
// BenchmarkSMTPResumptionPaired makes in a turn.
const resumePairTurn = 50

// BenchmarkSMTPResumptionPaired is BenchmarkSMTPNewConnections in one
// process, with and without TLS session resumption: two transports, one
// keeping no sessions (TLSSessions < 0) and one keeping them, each with
// its own sink, take turns of resumePairTurn deliveries (which goes first
// alternates), so that both meet the same load of a shared machine. It
// reports each one's cpu-µs/msg (the process's: transport and sink) and
// saved-cpu-µs/msg, the median over the turns of what resumption saved.
// The deliveries carry the pprof label transport=full or resumed, each
// sink's goroutines sink=full or resumed, so that go tool pprof
// -tagfocus splits a -cpuprofile between our side and the next hop's.
func BenchmarkSMTPResumptionPaired(b *testing.B) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, level := range []string{delivery.TLSOpportunistic, delivery.TLSVerify} {
			name := "tls1" + strconv.Itoa(int(version-tls.VersionTLS10)) + "/" + level
			b.Run(name, func(b *testing.B) { benchResumptionPaired(b, version, level) })
		}
	}
}

func benchResumptionPaired(b *testing.B, version uint16, level string) {
	names, sessions := [2]string{"full", "resumed"}, [2]int{-1, 0}
	var trs [2]*delivery.SMTP
	var routes [2]delivery.Route
	for i := range 2 {
		pprof.Do(context.Background(), pprof.Labels("sink", names[i]), func(context.Context) {
			trs[i], routes[i] = newConnectionsWorld(b, version, level, sessions[i])
		})
	}
	var cpu [2]time.Duration
	var saved []float64
	b.ResetTimer()
	for done := 0; done < b.N; done += resumePairTurn {
		n := min(resumePairTurn, b.N-done)
		var turn [2]time.Duration
		for k := range 2 {
			i := (k + done/resumePairTurn) % 2
			cpu0 := processCPU()
			pprof.Do(context.Background(), pprof.Labels("transport", names[i]), func(context.Context) {
				for range n {
					deliverBench(b, trs[i], routes[i])
				}
			})
			turn[i] = processCPU() - cpu0
			cpu[i] += turn[i]
		}
		saved = append(saved, float64((turn[0]-turn[1]).Microseconds())/float64(n))
	}
	b.StopTimer()
	slices.Sort(saved)
	perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(perMsg(cpu[0]), "full-cpu-µs/msg")
	b.ReportMetric(perMsg(cpu[1]), "resumed-cpu-µs/msg")
	b.ReportMetric(saved[len(saved)/2], "saved-cpu-µs/msg-turn-median")
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
