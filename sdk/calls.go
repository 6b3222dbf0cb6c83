package sdk

// The call channel: hook calls (Handle) over a connection of their own
// between the host and a plugin process, instead of a gRPC unary call
// each. A unary call over go-plugin's HTTP/2 connection opens a stream,
// encodes and decodes HEADERS both ways, sends trailers and window
// updates, and hands each message through gRPC's writer and reader
// goroutines; on a small machine that was about 200 µs per hook call,
// most of it waiting on wake-ups. Here a call is one frame written by
// the caller and one frame written back by the plugin's handler.
//
// The host creates a connected pair of sockets and gives the plugin one
// end as file descriptor 3, named in CallsFDEnv (protocol version 2).
// Everything else (Info, Configure, Deliver, the host's services) stays
// on gRPC, and so does Handle when there is no channel (an in-process
// test connection).
//
// A frame is a fixed header, then a payload:
//
//	length   uint32  payload bytes (at most MaxWireMessage)
//	kind     uint8   frameCall, frameCancel, frameReply or frameFail
//	id       uint64  the call, chosen by the host
//	deadline int64   frameCall: the call's deadline, Unix nanoseconds; 0 = none
//
// frameCall carries a pb.HandleRequest (written by the lean codec of
// calls_codec.go when it can, read by it when it can), frameReply a pb.HandleResponse,
// frameFail a google.rpc.Status (errorToStatus's, read back by
// errorFromStatus, so errors mean what they mean over gRPC), frameCancel
// nothing: the host no longer waits for that call.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mailgate/gateway/sdk/internal/pb"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// CallsFDEnv names, in a plugin's environment, the file descriptor of its
// end of the call channel. The host sets it; Serve reads it.
const CallsFDEnv = "GATEWAY_PLUGIN_CALLS_FD"

const (
	frameCall byte = iota + 1
	frameCancel
	frameReply
	frameFail
)

const frameHeader = 4 + 1 + 8 + 8

// callBuffer is the size of each end's read buffer.
const callBuffer = 64 << 10

// channel is the connection of a call channel as its ends use it: one
// goroutine at a time reads it, and one writes it. A net.Conn is one;
// channelOf makes a better one of a socket.
type channel interface {
	io.ReadWriteCloser
	SetReadDeadline(t time.Time) error
}

// frame is one frame read from the channel.
type frame struct {
	kind     byte
	id       uint64
	deadline int64
	payload  []byte
}

// frameWriter writes whole frames from any goroutine, and writes the
// frames of several together when it can: a frame is appended to a
// pending buffer, and one writer at a time (the flusher) writes what is
// pending, again and again until nothing is. A frame appended while the
// flusher writes goes out with its next write, so its caller does not
// wait: each write to the other process is a system call and, when that
// process sleeps, a wake-up of it, which cost more than a call's own work.
type frameWriter struct {
	conn io.Writer
	// yield, if set, is called by the flusher before it writes, without
	// the lock: the plugin's end, which runs on one thread, lets the
	// other calls under way run there, so that the replies of calls
	// read together go together; the host's lets its other sessions
	// run, so that the calls they make meanwhile go with its own.
	yield func()
	// fail, if set, is told of a write that failed: it carried frames of
	// callers who were told nothing (nil = the caller who flushed is
	// told, and the channel's reader finds it closed).
	fail func(error)

	mu       sync.Mutex
	pending  []byte // frames appended, not yet written
	spare    []byte // the buffer last written, for reuse
	flushing bool   // a goroutine writes pending
}

// write sends a frame whose payload is m marshalled (nil = none).
func (w *frameWriter) write(kind byte, id uint64, deadline int64, m proto.Message) error {
	return w.writeWith(kind, id, deadline, func(b []byte) ([]byte, error) {
		if m == nil {
			return b, nil
		}
		return (proto.MarshalOptions{}).MarshalAppend(b, m)
	})
}

// writeRequest sends call id's frame: r in the lean codec
// (calls_codec.go), or marshalled by the generated code when it has a
// message.
func (w *frameWriter) writeRequest(id uint64, deadline int64, r *Request) error {
	return w.writeWith(frameCall, id, deadline, func(b []byte) ([]byte, error) {
		if out, ok := appendRequest(b, r); ok {
			return out, nil
		}
		return (proto.MarshalOptions{}).MarshalAppend(b, toPBRequest(r))
	})
}

// writeWith sends a frame whose payload appendPayload appends. It
// returns once the frame is written, or is pending while another
// goroutine writes (which writes it next).
func (w *frameWriter) writeWith(kind byte, id uint64, deadline int64, appendPayload func([]byte) ([]byte, error)) error {
	w.mu.Lock()
	start := len(w.pending)
	var zero [frameHeader]byte
	b, err := appendPayload(append(w.pending, zero[:]...))
	if err != nil {
		w.mu.Unlock()
		return fmt.Errorf("sdk: call channel: %v: %w", err, ErrInternal)
	}
	n := len(b) - start - frameHeader
	if n > MaxWireMessage {
		w.pending = b[:start]
		w.mu.Unlock()
		return fmt.Errorf("sdk: call channel: a frame of %d bytes, over %d: %w", n, MaxWireMessage, ErrProtocol)
	}
	h := b[start:]
	binary.BigEndian.PutUint32(h[0:], uint32(n))
	h[4] = kind
	binary.BigEndian.PutUint64(h[5:], id)
	binary.BigEndian.PutUint64(h[13:], uint64(deadline))
	w.pending = b
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	if w.yield != nil {
		w.mu.Unlock()
		w.yield()
		w.mu.Lock()
	}
	return w.flushLocked()
}

// flushLocked writes what is pending until nothing is, then unlocks.
func (w *frameWriter) flushLocked() error {
	for len(w.pending) > 0 {
		b := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		_, err := w.conn.Write(b)
		w.mu.Lock()
		if cap(b) <= callBuffer {
			w.spare = b // a large frame's buffer is not kept
		} else {
			w.spare = nil
		}
		if err != nil {
			w.pending = w.pending[:0]
			w.flushing = false
			w.mu.Unlock()
			if w.fail != nil {
				w.fail(err)
			}
			return err
		}
	}
	w.flushing = false
	w.mu.Unlock()
	return nil
}

// readFrame reads the next frame.
func readFrame(r *bufio.Reader) (frame, error) {
	// Peeked, not read into an array: io.ReadFull would move the array
	// to the heap (an allocation per frame).
	h, err := r.Peek(frameHeader)
	switch {
	case err == nil:
	case len(h) > 0 && err == io.EOF:
		return frame{}, io.ErrUnexpectedEOF // as io.ReadFull says it
	default:
		return frame{}, err
	}
	_, _ = r.Discard(frameHeader)
	n := binary.BigEndian.Uint32(h[0:])
	if n > MaxWireMessage {
		return frame{}, fmt.Errorf("sdk: call channel: a frame of %d bytes, over %d: %w", n, MaxWireMessage, ErrProtocol)
	}
	f := frame{
		kind:     h[4],
		id:       binary.BigEndian.Uint64(h[5:]),
		deadline: int64(binary.BigEndian.Uint64(h[13:])),
	}
	if f.kind == frameReply && n == uint32(len(continueReply)) {
		if b, err := r.Peek(int(n)); err == nil && string(b) == continueReply {
			_, _ = r.Discard(int(n))
			f.payload = continuePayload // the commonest reply, without a copy
			return f, nil
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return frame{}, fmt.Errorf("sdk: call channel: %w", io.ErrUnexpectedEOF)
	}
	return f, nil
}

// continuePayload is the payload of every continueReply frame read:
// read-only, as every frame's payload is once read.
var continuePayload = []byte(continueReply)

// reply decodes the plugin's answer.
func reply(ctx context.Context, op callOp, f frame) (Decision, Effects, error) {
	if f.kind == frameFail {
		st := new(spb.Status)
		if err := proto.Unmarshal(f.payload, st); err != nil {
			return Decision{}, Effects{}, fmt.Errorf("sdk: %s: a failure that does not decode: %v: %w", op, err, ErrProtocol)
		}
		if st.GetCode() == int32(codes.OK) {
			st.Code = int32(codes.Unknown) // a failure is never OK
		}
		return Decision{}, Effects{}, errorFromStatus(ctx, op.String(), status.FromProto(st).Err())
	}
	if string(f.payload) == continueReply {
		return Decision{}, Effects{}, nil
	}
	resp := new(pb.HandleResponse)
	if err := proto.Unmarshal(f.payload, resp); err != nil {
		return Decision{}, Effects{}, fmt.Errorf("sdk: %s: a reply that does not decode: %v: %w", op, err, ErrProtocol)
	}
	return fromPBHandleResponse(resp)
}

// frameDeadline is a call's deadline as a time; ok is false for none.
func frameDeadline(ns int64) (t time.Time, ok bool) {
	if ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}
