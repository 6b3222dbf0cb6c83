package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// benchmarkCommit commits b.N messages of a 2 KB body and one recipient,
// from parallelism×GOMAXPROCS goroutines (serially if parallelism is 0), and
// reports messages per second and fsyncs (bbolt write transactions) per
// message.
func benchmarkCommit(b *testing.B, parallelism int) {
	benchmarkCommitThen(b, parallelism, false)
}

// benchmarkCommitThen is benchmarkCommit; with deferAfter each message is
// then deferred for an hour with a Replace, as the engine records an
// attempt on a next hop that is down: by a goroutine of its own, as the
// engine's job is, so that the committing session goes on to its next
// message (a session that waited for the deferral, which is patient, would
// leave it no commit to ride on and measure the patience).
func benchmarkCommitThen(b *testing.B, parallelism int, deferAfter bool) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	env := testEnvelope("bob@example.com")
	header := []byte("Received: from client.example.org by mx.example.org\r\n")
	body := content("bench", 2048)
	var deferrals sync.WaitGroup
	var deferErr atomic.Pointer[error]
	one := func() error {
		d, err := s.Create(context.Background())
		if err != nil {
			return err
		}
		if _, err := d.Write(body); err != nil {
			return err
		}
		if err := d.Commit(context.Background(), env, header); err != nil || !deferAfter {
			return err
		}
		m, _ := d.Committed()
		later := *m
		later.NextAttempt = m.Created.Add(time.Hour)
		later.Recipients = []RecipientState{{Status: Deferred, LastReply: "451 4.4.1 connection refused", Attempts: 1}}
		deferrals.Go(func() {
			if err := s.Replace(context.Background(), m, &later); err != nil {
				deferErr.Store(&err)
			}
		})
		return nil
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
	deferrals.Wait()
	b.StopTimer()
	if err := deferErr.Load(); err != nil {
		b.Fatal(*err)
	}
	elapsed := time.Since(start)
	st := s.Stats()
	b.ReportMetric(float64(st.Commits)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.Batches)/float64(st.Commits), "fsyncs/msg")
	b.ReportMetric(float64(st.Commits)/float64(st.Batches), "msgs/fsync")
}

// BenchmarkCommitParallel: about 20 concurrent sessions sharing fsyncs.
func BenchmarkCommitParallel(b *testing.B) {
	benchmarkCommit(b, max(1, 20/runtime.GOMAXPROCS(0)))
}

// BenchmarkCommitDeferParallel: as BenchmarkCommitParallel, and each
// message is then deferred (Replace), as when the next hop is down.
func BenchmarkCommitDeferParallel(b *testing.B) {
	benchmarkCommitThen(b, max(1, 20/runtime.GOMAXPROCS(0)), true)
}

// BenchmarkCommitSerial: one session, one fsync per message.
func BenchmarkCommitSerial(b *testing.B) { benchmarkCommit(b, 0) }

// BenchmarkOpenLarge measures what reading a large spool costs at start:
// the page walker's check (checkBoltFile, which Open runs first), bbolt's
// own Open (with NoFreelistSync it scans every page), Open as a whole, and
// bbolt's tx.Check for comparison. The spool holds SPOOL_BENCH_N messages
// (default 100,000) of a 2 KB inline body each; it is built once.
func BenchmarkOpenLarge(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("SPOOL_BENCH_N")); err == nil {
		n = v
	}
	dir := b.TempDir()
	fillDirect(b, dir, n)
	path := filepath.Join(dir, dbFile)
	if st, err := os.Stat(path); err == nil {
		b.Logf("%d messages, spool.db %d MB", n, st.Size()>>20)
	}
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			if _, err := checkBoltFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bbolt-open", func(b *testing.B) {
		for b.Loop() {
			db, err := bolt.Open(path, 0o600, boltOptions())
			if err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			s, err := Open(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	b.Run("tx-check", func(b *testing.B) {
		db, err := bolt.Open(path, 0o600, boltOptions())
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		for b.Loop() {
			db.View(func(tx *bolt.Tx) error {
				for err := range tx.Check() {
					b.Fatal(err)
				}
				return nil
			})
		}
	})
}

// fillDirect writes n messages into the spool in dir as Commit would, in
// large transactions, for benchmarks that need a big spool fast.
func fillDirect(tb testing.TB, dir string, n int) {
	s, err := Open(dir, Options{Now: testNow})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	body := content("bench", 2048)
	for done := 0; done < n; {
		k := min(n-done, 5000)
		err := s.db.Update(func(tx *bolt.Tx) error {
			msgs, bodies, sched := tx.Bucket(bucketMessages), tx.Bucket(bucketBodies), tx.Bucket(bucketSchedule)
			msgs.FillPercent, bodies.FillPercent = appendFill, appendFill
			for range k {
				m := &Message{ID: s.ids.next(testNow()), Envelope: *testEnvelope("bob@example.com"),
					Recipients: make([]RecipientState, 1), Created: testNow(), Size: int64(len(body))}
				rec, err := encodeMessage(m)
				if err != nil {
					return err
				}
				if err := errors.Join(bodies.Put([]byte(m.ID), body), sched.Put(scheduleKey(m), nil), msgs.Put([]byte(m.ID), rec)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		done += k
	}
}
