package delivery_test

import (
	"context"
	"crypto/tls"
	"log/slog"
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
	ca := smtptest.NewCA(b)
	cert := ca.Issue(b, "mx.bench.test")
	m := startTestMTA(b, testMTAConfig{mod: func(o *smtp.Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version}
		o.Hooks, o.Spool, o.Log = nil, &smtptest.DiscardSpool{}, slog.New(slog.DiscardHandler)
	}})
	r, _ := newTestResolver(b, "test. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300\nmx.bench.test. IN A 127.0.0.1\n")
	tr := newSMTPTransport(b, delivery.SMTPOptions{Resolver: r, RootCAs: ca.Pool, MaxIdle: -1,
		Log: slog.New(slog.DiscardHandler)})
	route := delivery.Route{Via: "mx.bench.test:" + strconv.Itoa(m.port), TLS: level}
	ctx := context.Background()
	cpu0 := processCPU()
	for b.Loop() {
		job, _ := newTestJob(route, smtpTestBody, "bob@example.test")
		if got := tr.Deliver(ctx, job); len(got) != 1 || got[0].Class != delivery.Delivered {
			b.Fatalf("Deliver = %+v, want delivered", got)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
