package clustertest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Link relays TCP connections to a server through a loopback listener,
// passing each connection's bytes, each way, at a rate of bytes a second
// at most (0: as fast as they come): a slow link that no load on the
// machine makes faster. Stall stops it passing anything, as a network
// that drops every packet while the connections stay open. Its
// goroutines end with the test.
type Link struct {
	ln      net.Listener
	rate    int
	stalled chan struct{} // closed by Stall
	closed  chan struct{} // closed when the test ends

	stallOnce sync.Once
	closeOnce sync.Once
	mu        sync.Mutex
	conns     []net.Conn
	wg        sync.WaitGroup
}

// NewLink relays connections to addr (host:port) at rate bytes a second
// each way (0: unpaced) until the test ends.
func NewLink(t testing.TB, addr string, rate int) *Link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	l := &Link{ln: ln, rate: rate, stalled: make(chan struct{}), closed: make(chan struct{})}
	t.Cleanup(l.close)
	l.wg.Go(func() { l.accept(addr) })
	return l
}

// Addr is the link's end to connect to (host:port), and URL the same as
// a NATS URL.
func (l *Link) Addr() string { return l.ln.Addr().String() }
func (l *Link) URL() string  { return "nats://" + l.Addr() }

// Stall stops the link passing bytes, for good: what it has read stays
// with it, and its connections stay open until the test ends.
func (l *Link) Stall() { l.stallOnce.Do(func() { close(l.stalled) }) }

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
// no burst), unless the link stalls first.
func (l *Link) pass(dst io.Writer, src io.Reader) {
	buf := make([]byte, 256<<10)
	var due time.Time
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if l.rate > 0 {
				due = later(due, time.Now()).Add(time.Duration(n) * time.Second / time.Duration(l.rate))
			}
			if !l.waitUntil(due) {
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

// waitUntil waits until t; false when the link stalls (it then holds on
// until the test ends) or closes.
func (l *Link) waitUntil(t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-l.stalled:
		<-l.closed
		return false
	case <-l.closed:
		return false
	case <-timer.C:
	}
	select {
	case <-l.stalled:
		<-l.closed
		return false
	default:
		return true
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
