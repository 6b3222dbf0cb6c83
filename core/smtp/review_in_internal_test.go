package smtp

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
)

// nopSpool is a Spool the server never reaches in these tests.
type nopSpool struct{}

func (nopSpool) Create(context.Context) (Draft, error) { return nil, io.ErrUnexpectedEOF }

// TestShutdownBeforeProxyHeaderRead: accept registers a balancer's
// connection as pending (addPending) and only then starts the goroutine
// that reads its header. A Shutdown that runs between the two sets the
// pending connection's read deadline in the past, and readProxyHeader then
// overwrites it with now+ProxyHeaderTimeout: the stop waits for the whole
// header timeout (10s by default) although "Shutdown ends the wait at
// once". The test replays that interleaving step by step.
func TestShutdownBeforeProxyHeaderRead(t *testing.T) {
	lb := netip.MustParsePrefix("127.0.0.0/8")
	s, err := NewServer(Options{
		Hostname:           "mx.test",
		Spool:              nopSpool{},
		Listener:           config.Listener{ProxyProtocol: []netip.Prefix{lb}},
		ProxyHeaderTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ip, _ := remoteIP(conn)

	// accept: the connection is pending, its goroutine not yet running.
	if !s.addPending(conn) {
		t.Fatal("addPending refused the connection")
	}
	// Shutdown runs now, and gets through its pending loop.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(ctx) }()
	for !s.shutting.Load() {
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock() // Shutdown holds mu while it sets the pending deadlines
	s.mu.Unlock()
	// Then the goroutine accept started gets to run.
	go s.acceptProxied(conn, ip)

	err = <-stopped
	if d := time.Since(began); err != nil || d > 500*time.Millisecond {
		t.Errorf("Shutdown = %v after %v, want nil at once (the balancer's header never came)", err, d)
	}
}

var _ Spool = nopSpool{}
