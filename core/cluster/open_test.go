package cluster_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
)

// TestOpenStoreConcurrent: nodes that start together create the buckets
// together, and each opens them.
func TestOpenStoreConcurrent(t *testing.T) {
	nc := clustertest.Start(t, 3)
	conns := []*cluster.Conn{connect(t, nc, nil, 0), connect(t, nc, nil, 1), connect(t, nc, nil, 2)}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			for _, opt := range []cluster.StoreOptions{
				{Bucket: cluster.DefaultBucket, Replicas: 3},
				{Bucket: cluster.EphemeralBucket, Replicas: 3, Memory: true},
			} {
				if _, err := c.OpenStore(context.Background(), opt); err != nil {
					t.Errorf("OpenStore(%s): %v", opt.Bucket, err)
				}
			}
		})
	}
	wg.Wait()
}

// TestOpenStoreTooManyReplicas: more replicas than servers is an error
// that says so, once the connection's timeout has passed.
func TestOpenStoreTooManyReplicas(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := clustertest.Connect(t, cluster.Options{
		Config:  config.Cluster{Node: "n", NATSURLs: nc.URLs()},
		Timeout: time.Second,
	})
	start := time.Now()
	_, err := c.OpenStore(context.Background(), cluster.StoreOptions{Replicas: 5})
	if err == nil || !strings.Contains(err.Error(), "cluster: bucket gateway_kv (replicas 5): ") ||
		!strings.Contains(err.Error(), "no suitable peers for placement") {
		t.Errorf("OpenStore with 5 replicas on 3 servers: %v; want no suitable peers", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("OpenStore took %v; want the 1s timeout", d)
	}
}

// TestOpenNodesTwiceUpdatesNothing: opening a bucket that is as asked
// changes nothing; the heartbeats' bucket, with no value limit (-1 on
// the stream, 0 in its config), was updated at every gateway's start.
func TestOpenNodesTwiceUpdatesNothing(t *testing.T) {
	nc := clustertest.Start(t, 3)
	var logs strings.Builder
	var mu sync.Mutex
	c := clustertest.Connect(t, cluster.Options{
		Config: config.Cluster{Node: "n", NATSURLs: nc.URLs()},
		Log:    slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil)),
	})
	for range 2 {
		if _, err := c.OpenNodes(context.Background(), 3); err != nil {
			t.Fatal(err)
		}
		if _, err := c.OpenStore(context.Background(), cluster.StoreOptions{Replicas: 3}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "updating bucket") {
		t.Errorf("opening buckets as they are updated them:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
