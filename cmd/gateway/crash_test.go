package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// crashBody is the content of message n from sender w; the test can rebuild
// it to check a spooled body byte for byte.
func crashBody(w, n int) string {
	return fmt.Sprintf("Subject: crash %d/%d\r\n\r\n%s\r\n", w, n, strings.Repeat(fmt.Sprintf("line %d/%d ", w, n), 150))
}

// TestCrashKeepsAcceptedMail kills `gateway serve` with SIGKILL while
// sessions send, restarts it on the same spool, stops it, and checks that
// every message that got a 250 is in the spool with an intact body.
func TestCrashKeepsAcceptedMail(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	data := t.TempDir()
	// Deliveries go to a closed loopback port and are retried in an hour:
	// every accepted message stays in the spool for the check below.
	cfgPath := writeConfig(t, data, `delivery {
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}`)
	gw := startGateway(t, "serve", "-config", cfgPath)

	type accepted struct {
		id   string
		body string
	}
	var (
		mu   sync.Mutex
		acks []accepted
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := sendUntilGone(ctx, gw.addr, envelope.Address{Local: "r", Domain: "example.test"}, 8, crashBody,
		func(id, body string) {
			mu.Lock()
			acks = append(acks, accepted{id, body})
			mu.Unlock()
		})
	// Let the load run, then kill the server mid-flight.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(acks)
		mu.Unlock()
		if n >= 300 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := gw.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gw.cmd.Wait()
	wait()
	if len(acks) == 0 {
		t.Fatalf("no message was accepted before the kill; stderr:\n%s", gw.stderr.String())
	}

	// Restart on the crashed spool, then stop gracefully.
	gw2 := startGateway(t, "serve", "-config", cfgPath)
	gw2.cmd.Process.Signal(syscall.SIGTERM)
	if err := gw2.cmd.Wait(); err != nil {
		t.Fatalf("restarted gateway exited with %v; stderr:\n%s", err, gw2.stderr.String())
	}

	spool, err := queue.Open(filepath.Join(data, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	var missing, corrupt int
	for _, a := range acks {
		rc, err := spool.Body(a.id)
		if err != nil {
			missing++
			t.Errorf("acknowledged message %s: %v", a.id, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		// The spool holds our Received header, then the content as sent.
		if err != nil || !bytes.HasPrefix(got, []byte("Received: ")) || !bytes.HasSuffix(got, []byte(a.body)) {
			corrupt++
			t.Errorf("acknowledged message %s: body does not end with what was sent (%d bytes, err %v)", a.id, len(got), err)
		}
	}
	t.Logf("acknowledged %d messages before SIGKILL; %d in the spool after restart (%d stored in all), %d missing, %d corrupt",
		len(acks), len(acks)-missing, spool.Len(), missing, corrupt)
	if spool.Len() < len(acks) {
		t.Errorf("spool holds %d messages, fewer than the %d acknowledged", spool.Len(), len(acks))
	}
}
