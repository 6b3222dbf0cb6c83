package sdk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestCallChannelDeadlineTimer: calls under a CancelParent context (as
// core/hook's timeouts are) to a plugin that reads them and never
// answers end at their deadlines through the channel's timer, the call
// that reads the channel and the others alike, without asking their
// context for its Done; when their parent ends, they end at once.
func TestCallChannelDeadlineTimer(t *testing.T) { forEachTransport(t, testCallChannelDeadlineTimer) }

func testCallChannelDeadlineTimer(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) {
	host, plug := pair(t)
	go io.Copy(io.Discard, plug) // ends when the host's end closes
	c := NewCallConn(host)
	t.Cleanup(func() { c.Close(); plug.Close() })
	parent, cancel := context.WithCancel(t.Context())
	defer cancel()

	start := time.Now()
	const calls = 3
	inParallel(calls, func(g int) {
		ctx := &lazyDeadline{Context: parent, at: start.Add(time.Duration(g+1) * 50 * time.Millisecond)}
		_, _, err := c.Handle(ctx, rcptRequest("hang"))
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("call %d: got %v, want DeadlineExceeded", g, err)
		}
		if wait := ctx.at.Sub(start); took < wait || took > wait+5*time.Second {
			t.Errorf("call %d ended after %v, want %v and a little", g, took, wait)
		}
		if ctx.madeDone() {
			t.Errorf("call %d asked its context for Done", g)
		}
	})

	ended := make(chan error, calls)
	for range calls {
		go func() {
			ctx := &lazyDeadline{Context: parent, at: time.Now().Add(time.Hour)}
			_, _, err := c.Handle(ctx, rcptRequest("hang"))
			ended <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // the calls wait, one of them reading
	cancel()
	for i := range calls {
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("after the parent's cancel: got %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d calls did not end with their parent", calls-i, calls)
		}
	}
}

// TestReadFrameContinue: a continue reply is read as the shared payload,
// and the frames around it as they were written.
func TestReadFrameContinue(t *testing.T) {
	var buf bytes.Buffer
	w := frameWriter{conn: &buf}
	raw := func(b []byte) func([]byte) ([]byte, error) {
		return func(dst []byte) ([]byte, error) { return append(dst, b...), nil }
	}
	frames := []frame{
		{kind: frameReply, id: 1, payload: []byte(continueReply)},
		{kind: frameReply, id: 2, payload: []byte("\x0a\x01")}, // two bytes, not a continue
		{kind: frameCall, id: 3, deadline: 7, payload: []byte(continueReply)},
		{kind: frameReply, id: 4, payload: []byte(continueReply)},
	}
	for _, f := range frames {
		if err := w.writeWith(f.kind, f.id, f.deadline, raw(f.payload)); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for i, want := range frames {
		got, err := readFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.kind != want.kind || got.id != want.id || got.deadline != want.deadline || !bytes.Equal(got.payload, want.payload) {
			t.Errorf("frame %d = %+v, want %+v", i, got, want)
		}
		if shared := len(got.payload) > 0 && &got.payload[0] == &continuePayload[0]; shared != (want.kind == frameReply && string(want.payload) == continueReply) {
			t.Errorf("frame %d: shared payload %v", i, shared)
		}
	}
	if _, err := readFrame(r); err != io.EOF {
		t.Errorf("after the frames: %v, want EOF", err)
	}
}

// TestCallConnBusy: a channel is busy (its writer yields before a call,
// so that other sessions' calls go in the same write) from a call that
// finds another waiting until busyCalls calls later (not counting the
// "wait" call itself); calls one at a time leave it quiet.
func TestCallConnBusy(t *testing.T) {
	c, _, _ := startCalls(t, func(t *testing.T) (net.Conn, net.Conn) { return unixPair(t) })
	for range busyCalls + 1 {
		if _, _, err := c.Handle(t.Context(), rcptRequest("bob")); err != nil {
			t.Fatal(err)
		}
	}
	if c.busy() {
		t.Fatal("busy after calls one at a time")
	}
	ctx, cancel := context.WithCancel(t.Context())
	waiting := make(chan error, 1)
	go func() {
		_, _, err := c.Handle(ctx, rcptRequest("wait"))
		waiting <- err
	}()
	for !c.waiting() {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := c.Handle(t.Context(), rcptRequest("bob")); err != nil { // finds "wait" waiting
		t.Fatal(err)
	}
	cancel()
	<-waiting
	if !c.busy() {
		t.Fatal("not busy after a call found another waiting")
	}
	for range busyCalls - 1 {
		c.Handle(t.Context(), rcptRequest("bob"))
	}
	if !c.busy() {
		t.Errorf("not busy %d calls later", busyCalls-1)
	}
	c.Handle(t.Context(), rcptRequest("bob"))
	if c.busy() {
		t.Errorf("still busy %d calls later", busyCalls)
	}
}

// waiting reports whether a call waits for its reply.
func (c *CallConn) waiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}
