package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// callsPlugin answers by the recipient's local part: "fail" with an
// ErrUnavailable of its own, "wait" when its ctx ends (reporting why on
// ended), "echo" with the request's notes as its own, anything else a
// reject.
type callsPlugin struct{ ended chan error }

func (callsPlugin) Info() Info { return Info{Name: "calls"} }

func (p callsPlugin) Rcpt(ctx context.Context, r *Request) (Decision, Effects, error) {
	switch r.Rcpt.Address.Local {
	case "fail":
		return Decision{}, Effects{}, errors.Join(errors.New("backend down"), ErrUnavailable)
	case "wait":
		<-ctx.Done()
		select { // the first end is reported; the tests wait for one
		case p.ended <- ctx.Err():
		default:
		}
		return Decision{}, Effects{}, ctx.Err()
	case "echo":
		return Decision{}, Effects{Notes: r.Notes}, nil
	}
	return RejectDecision(550, EnhancedCode{5, 7, 1}, "no "+r.Rcpt.Address.Local), Effects{}, nil
}

// transports are the connections the call channel tests run over: an
// in-memory pipe, and real sockets, which the channel reads and writes
// with raw system calls outside the runtime's poller on Linux
// (calls_raw_linux.go): a TCP pair, and a Unix socket pair as the host
// makes.
var transports = []struct {
	name string
	pair func(t *testing.T) (host, plug net.Conn)
}{
	{"pipe", func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() }},
	{"socket", socketPair},
	{"unix", func(t *testing.T) (net.Conn, net.Conn) { return unixPair(t) }},
}

// unixPair is a connected pair of Unix stream sockets.
func unixPair(t testing.TB) (host, plug net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("socketpair: %v", err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return conns[0], conns[1]
}

// socketPair is a connected pair of loopback TCP sockets.
func socketPair(t *testing.T) (host, plug net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept() // nil on an error: Dial fails too
		accepted <- c
	}()
	host, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	plug = <-accepted
	if plug == nil {
		host.Close()
		t.Fatal("accept failed")
	}
	return host, plug
}

// forEachTransport runs test over each of transports.
func forEachTransport(t *testing.T, test func(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn))) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { test(t, tr.pair) })
	}
}

// startCalls serves a callsPlugin over a call channel on pair's
// connections.
func startCalls(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) (*CallConn, callsPlugin, chan error) {
	t.Helper()
	host, plug := pair(t)
	p := callsPlugin{ended: make(chan error, 1)}
	served := make(chan error, 1)
	go func() { served <- serveCalls(plug, p) }()
	c := NewCallConn(host)
	t.Cleanup(func() { c.Close(); <-served })
	return c, p, served
}

func rcptRequest(local string) *Request {
	return &Request{Stage: StageRcpt, Rcpt: &Recipient{Address: Address{Local: local, Domain: "example.org"}}}
}

// TestCallChannel: decisions, the plugin's errors and the caller's
// deadline go across the channel as they go over gRPC.
func TestCallChannel(t *testing.T) { forEachTransport(t, testCallChannel) }

func testCallChannel(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) {
	c, p, _ := startCalls(t, pair)
	d, _, err := c.Handle(t.Context(), rcptRequest("bob"))
	if err != nil || d.Verdict != Reject || d.Message != "no bob" || d.Code != 550 {
		t.Errorf("bob: got %+v, %v; want the plugin's reject", d, err)
	}
	if _, _, err := c.Handle(t.Context(), rcptRequest("fail")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("fail: got %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.Handle(ctx, rcptRequest("wait")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait: got %v, want DeadlineExceeded", err)
	}
	select {
	case err := <-p.ended:
		if err == nil {
			t.Error("the plugin's ctx ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin's ctx did not end with the caller's")
	}
}

// TestCallChannelCancel: a call the caller gives up on is cancelled in
// the plugin.
func TestCallChannelCancel(t *testing.T) { forEachTransport(t, testCallChannelCancel) }

func testCallChannelCancel(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) {
	c, p, _ := startCalls(t, pair)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Handle(ctx, rcptRequest("wait"))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	select {
	case err := <-p.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the plugin's ctx ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin never saw the cancel")
	}
}

// TestCallChannelLost: when the plugin's end goes away, a waiting call
// and later ones fail with ErrUnavailable.
func TestCallChannelLost(t *testing.T) { forEachTransport(t, testCallChannelLost) }

func testCallChannelLost(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) {
	host, plug := pair(t)
	c := NewCallConn(host)
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Handle(t.Context(), rcptRequest("bob"))
		errc <- err
	}()
	buf := make([]byte, frameHeader)
	if _, err := io.ReadFull(plug, buf); err != nil { // the call arrived
		t.Fatal(err)
	}
	plug.Close()
	if err := <-errc; !errors.Is(err, ErrUnavailable) {
		t.Errorf("waiting call: got %v, want ErrUnavailable", err)
	}
	if _, _, err := c.Handle(t.Context(), rcptRequest("bob")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("later call: got %v, want ErrUnavailable", err)
	}
}

// TestCallChannelConcurrent: concurrent calls, some of them given up on,
// each get their own reply while the reading passes between them.
func TestCallChannelConcurrent(t *testing.T) { forEachTransport(t, testCallChannelConcurrent) }

func testCallChannelConcurrent(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) {
	c, _, _ := startCalls(t, pair)
	inParallel(20, func(g int) {
		for i := range 20 {
			if (g+i)%7 == 0 {
				ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
				_, _, err := c.Handle(ctx, rcptRequest("wait"))
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("wait: got %v, want DeadlineExceeded", err)
				}
				continue
			}
			local := fmt.Sprintf("u%d-%d", g, i)
			d, _, err := c.Handle(t.Context(), rcptRequest(local))
			if err != nil || d.Message != "no "+local {
				t.Errorf("%s: got %q, %v", local, d.Message, err)
			}
		}
	})
}

// TestCallChannelLargeFrames: frames many times a socket's buffer go
// both ways, several at once: the writes wait for the other end to read
// and resume where they stopped.
func TestCallChannelLargeFrames(t *testing.T) { forEachTransport(t, testCallChannelLargeFrames) }

func testCallChannelLargeFrames(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) {
	c, _, _ := startCalls(t, pair)
	inParallel(4, func(g int) {
		r := rcptRequest("echo")
		want := strings.Repeat(string(rune('a'+g)), 3<<20)
		r.Notes = map[string]string{"t/big": want}
		_, eff, err := c.Handle(t.Context(), r)
		if err != nil || eff.Notes["t/big"] != want {
			t.Errorf("call %d: %d bytes back, %v; want %d", g, len(eff.Notes["t/big"]), err, len(want))
		}
	})
}

// inParallel runs f(0) to f(n-1) on goroutines of their own and waits for
// them.
func inParallel(n int, f func(g int)) {
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(g)
		}()
	}
	wg.Wait()
}

// TestCallChannelKeepsNothing: the plugin's end keeps nothing of a call
// that has returned; it once left a context per call with a deadline
// among its base context's children, about 150 bytes a call for the
// life of the process.
func TestCallChannelKeepsNothing(t *testing.T) {
	c, _, _ := startCalls(t, socketPair)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	call := func(n int) {
		for range n {
			if _, _, err := c.Handle(ctx, rcptRequest("bob")); err != nil {
				t.Fatal(err)
			}
		}
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	call(1000) // buffers and maps at their working size
	before := heap()
	const calls = 20000
	call(calls)
	if grew := int64(heap()) - int64(before); grew > calls*16 {
		t.Errorf("the heap grew by %d bytes over %d calls, want under 16 a call", grew, calls)
	}
}

// TestCallChannelWorkersEnd: the workers that wait for calls end with
// the channel.
func TestCallChannelWorkersEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	host, plug := socketPair(t)
	served := make(chan error, 1)
	go func() { served <- serveCalls(plug, callsPlugin{}) }()
	c := NewCallConn(host)
	var wg sync.WaitGroup
	for range 8 { // several calls at once: several workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, _, err := c.Handle(t.Context(), rcptRequest("bob")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	c.Close()
	<-served
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the channel closed, %d before", n, before)
	}
}
