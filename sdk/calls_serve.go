package sdk

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mailgate/gateway/sdk/internal/pb"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// openCallChannel returns the plugin's end of the call channel named by
// CallsFDEnv, or nil when the host gave none.
func openCallChannel() (net.Conn, error) {
	v := os.Getenv(CallsFDEnv)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("sdk: %s=%q is not a file descriptor: %w", CallsFDEnv, v, ErrProtocol)
	}
	f := os.NewFile(uintptr(fd), "gateway-calls")
	defer f.Close() // FileConn has its own descriptor
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("sdk: the call channel (fd %d): %w", fd, err)
	}
	return conn, nil
}

// callServer is the plugin's end of the call channel: it runs each call
// on a worker goroutine of its own, as a gRPC server would, under the
// call's deadline, until the host cancels it. A worker that has finished
// its call waits for the next one (up to maxIdleWorkers wait): a new
// goroutine per call would grow its stack again for the decoding and the
// hook, a tenth of the plugin's time per call.
type callServer struct {
	srv  *grpcServer // its dispatch
	w    frameWriter
	work chan frame // to a waiting worker; closed when serveCalls ends
	idle atomic.Int32
	// underWay counts the calls read and not yet answered: a reply
	// written while others are waits for theirs (othersUnderWay).
	underWay atomic.Int32

	mu      sync.Mutex
	running map[uint64]*callCtx // the calls running
	ended   bool                // serveCalls has returned: calls end as they start
}

// maxIdleWorkers is how many workers may wait for a call; more than that
// end when their call does.
const maxIdleWorkers = 64

// serveCalls serves conn until it fails (the host closed it or exited),
// then cancels the calls still running. The workers are owned by
// serveCalls's work channel: they end when their hooks have returned and
// serveCalls has.
func serveCalls(conn net.Conn, impl Describer) error {
	ch := channelOf(conn)
	defer ch.Close()
	s := &callServer{
		srv:     &grpcServer{impl: impl},
		work:    make(chan frame),
		running: make(map[uint64]*callCtx),
	}
	s.w = frameWriter{conn: ch, yield: s.othersUnderWay}
	defer s.end()
	defer close(s.work)
	r := bufio.NewReaderSize(ch, callBuffer)
	for {
		f, err := readFrame(r)
		if err != nil {
			return err
		}
		switch f.kind {
		case frameCall:
			s.start(f)
		case frameCancel:
			s.mu.Lock()
			ctx := s.running[f.id]
			s.mu.Unlock()
			if ctx != nil {
				ctx.cancel()
			}
		default:
			return fmt.Errorf("sdk: call channel: frame kind %d from the host: %w", f.kind, ErrProtocol)
		}
	}
}

// end cancels the calls running, and those that start later.
func (s *callServer) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	for _, ctx := range s.running {
		ctx.cancel()
	}
}

// othersUnderWay is the call channel writer's yield: while calls other
// than the one answering are under way, it lets them run first, and
// their replies go in the same write (one wake-up of the host for all).
func (s *callServer) othersUnderWay() {
	if s.underWay.Load() > 1 {
		runtime.Gosched()
	}
}

// start hands a call to a waiting worker, or to a new one.
func (s *callServer) start(f frame) {
	s.underWay.Add(1)
	select {
	case s.work <- f:
	default:
		go s.worker(f)
	}
}

// worker runs call f, then the calls it is handed while it waits.
func (s *callServer) worker(f frame) {
	for {
		s.run(f)
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		var ok bool
		f, ok = <-s.work
		s.idle.Add(-1)
		if !ok {
			return
		}
	}
}

// run runs one call under its deadline and writes its answer.
func (s *callServer) run(f frame) {
	deadline, _ := frameDeadline(f.deadline)
	ctx := newCallCtx(deadline)
	s.mu.Lock()
	if s.ended {
		ctx.cancel()
	}
	s.running[f.id] = ctx
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, f.id)
		s.mu.Unlock()
		ctx.cancel()
	}()
	defer s.underWay.Add(-1) // after the reply's write
	d, e, err := s.call(ctx, f.payload)
	switch {
	case err != nil:
		_ = s.w.write(frameFail, f.id, 0, status.Convert(err).Proto())
	case d == Decision{} && e.IsZero():
		_ = s.w.writeWith(frameReply, f.id, 0, appendContinueReply)
	default:
		_ = s.w.write(frameReply, f.id, 0, toPBHandleResponse(d, e))
	}
}

// call decodes a request, with the lean codec when it can, and handles
// it as the gRPC Handle does.
func (s *callServer) call(ctx context.Context, payload []byte) (Decision, Effects, error) {
	if r, ok := parseRequest(payload); ok {
		return s.srv.handle(ctx, r)
	}
	req := new(pb.HandleRequest)
	if err := proto.Unmarshal(payload, req); err != nil {
		return Decision{}, Effects{}, errorToStatus(fmt.Errorf("sdk: a request that does not decode: %v: %w", err, ErrProtocol))
	}
	return s.srv.handle(ctx, fromPBRequest(req))
}
