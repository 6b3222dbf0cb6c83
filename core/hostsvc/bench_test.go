package hostsvc_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/queue"
)

// BenchmarkIncr is a rate counter's cost per MAIL in each store: the
// durable one commits (fsyncs) every increment, the ephemeral one never
// touches the disk.
func BenchmarkIncr(b *testing.B) {
	spool, err := queue.Open(filepath.Join(b.TempDir(), "queue"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { spool.Close() })
	svc := hostsvc.New(hostsvc.Options{Durable: spool}).Script("relay")
	for _, k := range []hostsvc.Kind{hostsvc.Durable, hostsvc.Ephemeral} {
		kv := svc.KV(k)
		b.Run(k.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := kv.Incr(context.Background(), "rate/192.0.2.1", 1, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
