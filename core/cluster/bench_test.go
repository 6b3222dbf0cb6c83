package cluster_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
)

// BenchmarkKVIncr is the cost of one KVIncr on a bucket with 3 replicas
// on a 3-node cluster on loopback (which shares the machine's cores with
// the benchmark), in the durable bucket (file storage) and the ephemeral
// one (memory): one caller on one key (a read from the leader, then a
// compare-and-set publish acknowledged once a quorum has it), and
// callers in parallel, each on a key of its own.
func BenchmarkKVIncr(b *testing.B) {
	c := connect(b, clustertest.Start(b, 3), nil, 0)
	ctx := context.Background()
	for _, opt := range []cluster.StoreOptions{
		{Bucket: cluster.DefaultBucket, Replicas: 3},
		{Bucket: cluster.EphemeralBucket, Replicas: 3, Memory: true},
	} {
		s, err := c.OpenStore(ctx, opt)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(opt.Bucket+"/serial", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.KVIncr(ctx, "rate/192.0.2.1", 1, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(opt.Bucket+"/parallel", func(b *testing.B) {
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				key := fmt.Sprintf("rate/%d", next.Add(1))
				for pb.Next() {
					if _, err := s.KVIncr(ctx, key, 1, time.Minute); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCopies is what a takeover pays to read a node's queue: Copies
// over 2,000 copies of 2 KB messages (per copy), and the check a
// returning node makes of its spool's messages (LiveIDs).
func BenchmarkCopies(b *testing.B) {
	c := connect(b, clustertest.Start(b, 3), nil, 0)
	s := spoolWithReplica(b, c, "gw1")
	const n = 2000
	ids := make([]string, n)
	for i := range ids {
		var err error
		if ids[i], err = commitMessage(b, s, "bob@example.net", 2000); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.Run("Copies", func(b *testing.B) {
		for b.Loop() {
			got := 0
			if err := c.Copies(ctx, "gw1", func(cluster.Copy) bool { got++; return true }); err != nil || got != n {
				b.Fatalf("Copies: %d, %v; want %d", got, err, n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/copy")
	})
	b.Run("LiveIDs", func(b *testing.B) {
		for b.Loop() {
			if live, err := c.LiveIDs(ctx, "gw1"); err != nil || len(live) != n {
				b.Fatalf("LiveIDs: %d, %v; want %d", len(live), err, n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/copy")
	})
}

// BenchmarkCommitReplicated is a node's accept path with a replica: 16
// Commits at once of 2 KB messages, each waiting for its copy's
// acknowledgement from three servers and its local fsync.
func BenchmarkCommitReplicated(b *testing.B) {
	c := connect(b, clustertest.Start(b, 3), nil, 0)
	s := spoolWithReplica(b, c, "gw1")
	if _, err := commitMessage(b, s, "bob@example.net", 2000); err != nil { // the stream led, the connection warm
		b.Fatal(err)
	}
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := commitMessage(b, s, "bob@example.net", 2000); err != nil {
				b.Error(err)
			}
		}
	})
}
