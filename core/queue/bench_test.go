package queue

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// benchmarkCommit commits b.N messages of a 2 KB body and one recipient,
// from parallelism×GOMAXPROCS goroutines (serially if parallelism is 0), and
// reports messages per second and fsyncs (bbolt write transactions) per
// message.
func benchmarkCommit(b *testing.B, parallelism int) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	env := testEnvelope("bob@example.com")
	header := []byte("Received: from client.example.org by mx.example.org\r\n")
	body := content("bench", 2048)
	one := func() error {
		d, err := s.Create(context.Background())
		if err != nil {
			return err
		}
		if _, err := d.Write(body); err != nil {
			return err
		}
		return d.Commit(context.Background(), env, header)
	}

	b.ReportAllocs()
	b.SetBytes(int64(len(header) + len(body)))
	start := time.Now()
	b.ResetTimer()
	if parallelism == 0 {
		for b.Loop() {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := one(); err != nil {
					b.Error(err) // not Fatal: this is not the benchmark goroutine
					return
				}
			}
		})
	}
	b.StopTimer()
	elapsed := time.Since(start)
	st := s.Stats()
	b.ReportMetric(float64(st.Commits)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.Batches)/float64(st.Commits), "fsyncs/msg")
}

// BenchmarkCommitParallel: about 20 concurrent sessions sharing fsyncs.
func BenchmarkCommitParallel(b *testing.B) {
	benchmarkCommit(b, max(1, 20/runtime.GOMAXPROCS(0)))
}

// BenchmarkCommitSerial: one session, one fsync per message.
func BenchmarkCommitSerial(b *testing.B) { benchmarkCommit(b, 0) }
