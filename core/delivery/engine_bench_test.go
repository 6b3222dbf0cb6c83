package delivery_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// BenchmarkEngine delivers 2,000 queued messages (one recipient each, 20
// domains) with a transport that succeeds at once, and reports messages/s:
// the engine's own cost plus the spool's (one delete per message, group
// committed).
func BenchmarkEngine(b *testing.B) {
	const n = 2000
	total := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sp, err := queue.Open(b.TempDir(), queue.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		for j := range n {
			d, err := sp.Create(ctx)
			if err != nil {
				b.Fatal(err)
			}
			d.Write([]byte(engBody))
			env := &envelope.Envelope{
				Sender:     engAddr(engSender),
				Recipients: []envelope.Recipient{engRcpt(fmt.Sprintf("u%d@d%d.test", j, j%20), 0)},
			}
			if err := d.Commit(ctx, env, []byte(engTrace)); err != nil {
				b.Fatal(err)
			}
		}
		tr := &deliverytest.Transport{SkipBody: true}
		eng, err := delivery.New(delivery.Options{
			Spool:      sp,
			Hostname:   engHost,
			Transports: map[string]delivery.Transport{"smtp": tr},
			Log:        slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)

		b.StartTimer()
		go func() { done <- eng.Run(runCtx) }()
		for sp.Len() > 0 {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()

		cancel()
		<-done
		if got := eng.Stats().Delivered; got != n {
			b.Fatalf("delivered %d; want %d", got, n)
		}
		sp.Close()
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msgs/s")
}
