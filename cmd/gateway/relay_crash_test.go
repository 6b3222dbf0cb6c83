package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
)

var seqRE = regexp.MustCompile(`(?m)^X-Seq: (\S+)\r?$`)

// seqCounts counts the messages a sink saved in dir by their X-Seq.
func seqCounts(t *testing.T, dir string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, f := range savedFiles(t, dir) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := seqRE.FindSubmatch(b); m != nil {
			got[string(m[1])]++
		}
	}
	return got
}

// TestCrashRelayDeliversEveryAcceptedMessage kills `gateway serve` with
// SIGKILL while it accepts a load and relays it to a sink, restarts it on
// the same spool and waits for the queue to drain: the sink must have every
// message that got a 250 at least once. Duplicates (delivered, but killed
// before the spool recorded it) are allowed and reported.
func TestCrashRelayDeliversEveryAcceptedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	sinkDir := t.TempDir()
	sink := startGateway(t, "sink", "--listen", "127.0.0.1:0", "--save", sinkDir)
	data := t.TempDir()
	cfg := writeConfig(t, data, fmt.Sprintf(`
delivery {
  route "*" { via = %q }
  retry = ["200ms"]
}
admin { address = "127.0.0.1:0" }
`, sink.addr))
	gw := startGateway(t, "serve", "-config", cfg)

	var (
		mu   sync.Mutex
		acks = map[string]bool{}
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := sendUntilGone(ctx, gw.addr, envelope.Address{Local: "r", Domain: "remote.test"}, 8,
		func(w, n int) string {
			return fmt.Sprintf("X-Seq: %d-%d\r\nSubject: relay crash\r\n\r\n%s", w, n, strings.Repeat("relay crash body line\r\n", 40))
		},
		func(_, body string) {
			mu.Lock()
			acks[seqRE.FindStringSubmatch(body)[1]] = true
			mu.Unlock()
		})
	// Kill mid-flight, once mail is both arriving and leaving.
	eventually(10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acks) >= 400 && len(savedFiles(t, sinkDir)) >= 50
	})
	gw.cmd.Process.Signal(syscall.SIGKILL)
	gw.cmd.Wait()
	wait()

	gw2 := startGateway(t, "serve", "-config", cfg)
	adminAddr := gw2.adminAddr(t)
	if !eventually(30*time.Second, func() bool { return len(queueList(t, adminAddr)) == 0 }) {
		t.Fatalf("queue did not drain after restart: %d left", len(queueList(t, adminAddr)))
	}

	got := seqCounts(t, sinkDir)
	missing, dups := 0, 0
	for seq := range acks {
		if got[seq] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("message %s got a 250 but never reached the sink", seq)
			}
		}
	}
	for _, n := range got {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("%d messages acknowledged before SIGKILL; sink received %d distinct (%d files), %d missing, %d duplicates",
		len(acks), len(got), len(savedFiles(t, sinkDir)), missing, dups)
	if missing > 0 {
		t.Errorf("%d acknowledged messages lost", missing)
	}
}
