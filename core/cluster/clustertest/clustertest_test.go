package clustertest_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster/clustertest"
)

func TestStart(t *testing.T) {
	start := time.Now()
	c := clustertest.Start(t, 3)
	t.Logf("3 nodes ready in %v: %v", time.Since(start), c.URLs())
	if got := len(c.URLs()); got != 3 {
		t.Errorf("URLs: %d; want 3", got)
	}
}

// TestLinkPauseResume: a paused link passes nothing, and on Resume
// passes what waited, in order; an echo server on loopback answers.
func TestLinkPauseResume(t *testing.T) {
	addr := startEcho(t)
	link := clustertest.NewLink(t, addr, 0, clustertest.ReceiveBuffer(4096))
	conn, err := net.Dial("tcp", link.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(msg string) {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
	}
	receive := func(n int) (string, error) {
		buf := make([]byte, n)
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		got, err := io.ReadFull(conn, buf)
		return string(buf[:got]), err
	}
	send("before")
	if got, err := receive(len("before")); got != "before" {
		t.Fatalf("before the pause: got %q (%v); want %q", got, err, "before")
	}
	link.Pause()
	send("paused")
	if got, err := receive(len("paused")); got != "" || err == nil {
		t.Fatalf("while paused: got %q (%v); want nothing, the read timing out", got, err)
	}
	link.Resume()
	send("after")
	// What waited comes first, then what was sent after Resume.
	if got, err := receive(len("pausedafter")); got != "pausedafter" {
		t.Errorf("after Resume: got %q (%v); want %q", got, err, "pausedafter")
	}
}

// startEcho runs a TCP server that writes back what it reads, until the
// test ends, and returns its address.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	return ln.Addr().String()
}
