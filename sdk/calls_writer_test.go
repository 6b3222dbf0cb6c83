package sdk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// gateWriter records each Write; the first waits until open is closed,
// and every Write fails with err when it is set.
type gateWriter struct {
	mu      sync.Mutex
	writes  [][]byte
	entered chan struct{} // closed when the first Write has begun
	open    chan struct{}
	err     error
}

func newGateWriter() *gateWriter {
	return &gateWriter{entered: make(chan struct{}), open: make(chan struct{})}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.writes = append(g.writes, bytes.Clone(p))
	first := len(g.writes) == 1
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.open
	}
	if g.err != nil {
		return 0, g.err
	}
	return len(p), nil
}

// frameIDs are the ids of the frames in b, in order.
func frameIDs(t *testing.T, b []byte) []uint64 {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b))
	var ids []uint64
	for r.Buffered() > 0 || len(ids) == 0 {
		f, err := readFrame(r)
		if err != nil {
			t.Fatalf("frames %q: %v", b, err)
		}
		ids = append(ids, f.id)
		if _, err := r.Peek(1); err != nil {
			break
		}
	}
	return ids
}

// TestFrameWriterCombines: frames written while another is being written
// return at once and go out together in the next write, in the order
// they came.
func TestFrameWriterCombines(t *testing.T) {
	g := newGateWriter()
	w := &frameWriter{conn: g}
	first := make(chan error, 1)
	go func() { first <- w.write(frameReply, 1, 0, nil) }()
	<-g.entered
	for id := uint64(2); id <= 4; id++ {
		if err := w.write(frameReply, id, 0, nil); err != nil { // returns while frame 1 is written
			t.Fatalf("frame %d: %v", id, err)
		}
	}
	close(g.open)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if len(g.writes) != 2 {
		t.Fatalf("%d writes, want 2 (frame 1, then 2-4 together)", len(g.writes))
	}
	for i, want := range [][]uint64{{1}, {2, 3, 4}} {
		if got := frameIDs(t, g.writes[i]); !equalIDs(got, want) {
			t.Errorf("write %d has frames %v, want %v", i, got, want)
		}
	}
	// Nothing pending: the next frame is a write of its own.
	if err := w.write(frameReply, 5, 0, nil); err != nil || len(g.writes) != 3 {
		t.Fatalf("frame 5: %v, %d writes; want nil, 3", err, len(g.writes))
	}
}

// TestFrameWriterFails: a write that fails is reported to the flusher and
// to fail (the frames of others were in it), and what was pending is
// dropped; a later frame is written again.
func TestFrameWriterFails(t *testing.T) {
	g := newGateWriter()
	g.err = errors.New("broken pipe")
	var failed []error
	w := &frameWriter{conn: g, fail: func(err error) { failed = append(failed, err) }}
	first := make(chan error, 1)
	go func() { first <- w.write(frameCall, 1, 0, nil) }()
	<-g.entered
	if err := w.write(frameCall, 2, 0, nil); err != nil {
		t.Fatalf("frame 2: %v", err)
	}
	close(g.open)
	if err := <-first; err != g.err {
		t.Fatalf("frame 1: %v, want %v", err, g.err)
	}
	if len(failed) != 1 || failed[0] != g.err {
		t.Errorf("fail told %v, want once %v", failed, g.err)
	}
	if len(g.writes) != 1 || len(w.pending) != 0 {
		t.Errorf("%d writes, %d bytes pending; want 1, 0", len(g.writes), len(w.pending))
	}
	g.err = nil
	if err := w.write(frameCall, 3, 0, nil); err != nil || len(g.writes) != 2 {
		t.Errorf("frame 3: %v, %d writes; want nil, 2", err, len(g.writes))
	}
}

// TestFrameWriterTooLarge: a frame over MaxWireMessage is refused alone;
// the frames pending before it are untouched.
func TestFrameWriterTooLarge(t *testing.T) {
	g := newGateWriter()
	w := &frameWriter{conn: g}
	first := make(chan error, 1)
	go func() { first <- w.write(frameReply, 1, 0, nil) }()
	<-g.entered
	if err := w.write(frameReply, 2, 0, nil); err != nil {
		t.Fatal(err)
	}
	big := func(b []byte) ([]byte, error) { return append(b, make([]byte, MaxWireMessage+1)...), nil }
	if err := w.writeWith(frameReply, 3, 0, big); !errors.Is(err, ErrProtocol) {
		t.Errorf("frame 3: %v, want ErrProtocol", err)
	}
	close(g.open)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if len(g.writes) != 2 || !equalIDs(frameIDs(t, g.writes[1]), []uint64{2}) {
		t.Errorf("writes %d, want 2 with frame 2 last", len(g.writes))
	}
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// failConn is a connection whose writes after the first ok fail and
// whose reads wait until it is closed.
type failConn struct {
	net.Conn // nil: only the methods below are used
	ok       atomic.Int32
	closed   chan struct{}
	once     sync.Once
}

func (c *failConn) Write(p []byte) (int, error) {
	if c.ok.Add(-1) < 0 {
		return 0, errors.New("broken pipe")
	}
	return len(p), nil
}
func (c *failConn) Read([]byte) (int, error)        { <-c.closed; return 0, net.ErrClosed }
func (c *failConn) SetReadDeadline(time.Time) error { return nil }
func (c *failConn) Close() error                    { c.once.Do(func() { close(c.closed) }); return nil }

// TestCallConnWriteFails: a write that fails ends the channel: the call
// whose frame it was fails with ErrUnavailable, and so does a call that
// was already waiting for its reply (a failed write may carry other
// calls' frames, or part of one), at once rather than at its deadline.
func TestCallConnWriteFails(t *testing.T) {
	conn := &failConn{closed: make(chan struct{})}
	conn.ok.Store(1)
	c := NewCallConn(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	waiting := make(chan error, 1)
	go func() {
		_, _, err := c.Handle(ctx, rcptRequest("first"))
		waiting <- err
	}()
	for conn.ok.Load() > 0 { // the first call's frame is written
		time.Sleep(time.Millisecond)
	}
	if _, _, err := c.Handle(ctx, rcptRequest("second")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("second call: %v, want ErrUnavailable", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("waiting call: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting call still waits after the channel failed")
	}
}

// TestCallChannelCancelSoon: a cancel that comes a moment after the
// calls began is seen at once by the reader and by a call waiting behind
// it, and the channel still works after.
func TestCallChannelCancelSoon(t *testing.T) { forEachTransport(t, testCallChannelCancelSoon) }

func testCallChannelCancelSoon(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn)) {
	c, _, _ := startCalls(t, pair)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := c.Handle(ctx, rcptRequest("wait"))
			errc <- err
		}()
	}
	time.Sleep(time.Millisecond)
	start := time.Now()
	cancel()
	for i := range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("call %d: %v, want context.Canceled", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("call %d still waits after its cancel", i)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the calls took %v to see the cancel", took)
	}
	// The channel still works.
	if d, _, err := c.Handle(t.Context(), rcptRequest("bob")); err != nil || d.Verdict != Reject {
		t.Errorf("after the cancel: %+v, %v", d, err)
	}
}

// TestFrameWriterYields: the frames that other calls write while the
// flusher yields go in its write.
func TestFrameWriterYields(t *testing.T) {
	g := newGateWriter()
	close(g.open)
	w := &frameWriter{conn: g}
	yields := 0
	w.yield = func() {
		yields++
		if yields == 1 { // another call answers meanwhile
			if err := w.write(frameReply, 2, 0, nil); err != nil {
				t.Errorf("frame 2: %v", err)
			}
		}
	}
	if err := w.write(frameReply, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	if len(g.writes) != 1 || !equalIDs(frameIDs(t, g.writes[0]), []uint64{1, 2}) {
		t.Fatalf("writes %d; want 1 with frames 1 and 2", len(g.writes))
	}
	if yields != 1 {
		t.Errorf("yield called %d times, want 1 (frame 2 found a flusher)", yields)
	}
}

// TestCallServerUnderWay: the plugin's end counts a call as under way
// from its reading to its reply's write, which is what its writer's yield
// looks at.
func TestCallServerUnderWay(t *testing.T) {
	g := newGateWriter()
	close(g.open)
	s := &callServer{
		srv:     &grpcServer{impl: callsPlugin{ended: make(chan error, 2)}},
		work:    make(chan frame),
		running: make(map[uint64]*callCtx),
	}
	s.w = frameWriter{conn: g, yield: s.othersUnderWay}
	payload, err := proto.Marshal(toPBRequest(rcptRequest("wait")))
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		s.start(frame{kind: frameCall, id: id, payload: payload})
	}
	if n := s.underWay.Load(); n != 2 {
		t.Errorf("%d calls under way, want 2", n)
	}
	s.end() // cancels both: they answer
	deadline := time.Now().Add(5 * time.Second)
	for s.underWay.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := s.underWay.Load(); n != 0 {
		t.Errorf("%d calls under way after both answered, want 0", n)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var ids []uint64
	for _, b := range g.writes {
		ids = append(ids, frameIDs(t, b)...)
	}
	if len(ids) != 2 {
		t.Errorf("replies to %v, want 2", ids)
	}
	close(s.work) // the workers end
}
