package clustertest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Link relays TCP connections to a server through a loopback listener,
// passing each connection's bytes, each way, at a rate of bytes a second
// at most (0: as fast as they come): a slow link that no load on the
// machine makes faster. Pause stops it passing anything, as a network
// that drops every packet while the connections stay open, and Resume
// starts it again; Stall is a Pause for good. Its goroutines end with
// the test.
type Link struct {
	ln     net.Listener
	rate   int
	closed chan struct{} // closed when the test ends

	closeOnce sync.Once
	mu        sync.Mutex
	paused    chan struct{} // while paused, closed by Resume; nil while passing
	conns     []net.Conn
	wg        sync.WaitGroup
}

// LinkOption changes how NewLink sets a Link up.
type LinkOption func(*net.ListenConfig)

// ReceiveBuffer sets the receive buffer (SO_RCVBUF) of the link's
// sockets to the clients to bytes: with a small one, what a client
// writes while the link is paused waits mostly in the client's own send
// buffer, so that its writes block sooner. (The kernel may round it up.)
func ReceiveBuffer(bytes int) LinkOption {
	return func(lc *net.ListenConfig) {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, bytes)
			})
			if err != nil {
				return fmt.Errorf("clustertest: receive buffer: %w", err)
			}
			if serr != nil {
				return fmt.Errorf("clustertest: receive buffer: %w", serr)
			}
			return nil
		}
	}
}

// NewLink relays connections to addr (host:port) at rate bytes a second
// each way (0: unpaced) until the test ends.
func NewLink(t testing.TB, addr string, rate int, opts ...LinkOption) *Link {
	t.Helper()
	var lc net.ListenConfig
	for _, o := range opts {
		o(&lc)
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	l := &Link{ln: ln, rate: rate, closed: make(chan struct{})}
	t.Cleanup(l.close)
	l.wg.Go(func() { l.accept(addr) })
	return l
}

// Addr is the link's end to connect to (host:port), and URL the same as
// a NATS URL.
func (l *Link) Addr() string { return l.ln.Addr().String() }
func (l *Link) URL() string  { return "nats://" + l.Addr() }

// Pause stops the link passing bytes until Resume: what it has read
// stays with it (one read per connection and direction), the rest waits
// in the sockets' buffers, and its connections stay open. Pausing a
// paused link does nothing.
func (l *Link) Pause() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused == nil {
		l.paused = make(chan struct{})
	}
}

// Resume lets a paused link pass bytes again, starting with what it
// held; resuming a link that passes does nothing.
func (l *Link) Resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused != nil {
		close(l.paused)
		l.paused = nil
	}
}

// Stall stops the link passing bytes for good: a Pause that the test
// never resumes, its connections open until the test ends.
func (l *Link) Stall() { l.Pause() }

// accept relays each connection to addr until the listener closes.
func (l *Link) accept(addr string) {
	for {
		client, err := l.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", addr)
		if err != nil {
			client.Close()
			continue
		}
		if !l.track(client, server) {
			return
		}
		l.wg.Go(func() { l.pass(server, client); server.Close(); client.Close() })
		l.wg.Go(func() { l.pass(client, server); client.Close(); server.Close() })
	}
}

// track records conns to close at the end; false (having closed them)
// when the test has ended.
func (l *Link) track(conns ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		for _, c := range conns {
			c.Close()
		}
		return false
	default:
	}
	l.conns = append(l.conns, conns...)
	return true
}

// pass copies src to dst at the link's rate: each read is written once
// its share of time since the last write has passed (an idle link earns
// no burst) and the link is not paused.
func (l *Link) pass(dst io.Writer, src io.Reader) {
	buf := make([]byte, 256<<10)
	var due time.Time
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if l.rate > 0 {
				due = later(due, time.Now()).Add(time.Duration(n) * time.Second / time.Duration(l.rate))
			}
			if !l.waitUntil(due) || !l.waitPassing() {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitUntil waits until t; false when the link closes first.
func (l *Link) waitUntil(t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-l.closed:
		return false
	case <-timer.C:
		return true
	}
}

// waitPassing waits while the link is paused; false when it closes
// first.
func (l *Link) waitPassing() bool {
	for {
		l.mu.Lock()
		paused := l.paused
		l.mu.Unlock()
		if paused == nil {
			return true
		}
		select {
		case <-paused:
		case <-l.closed:
			return false
		}
	}
}

// close closes the listener and every connection, and waits for the
// link's goroutines; again, it does nothing.
func (l *Link) close() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		close(l.closed)
		l.ln.Close()
		for _, c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
