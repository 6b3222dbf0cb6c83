package sdk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// CallConn is the host's end of a plugin's call channel. It has no reader
// goroutine of its own: one waiting call at a time reads the connection
// (the reader), handing each reply it finds to its call, and passes the
// reading on to another waiting call when its own reply has come. A
// reply so reaches its caller without a hand-over between goroutines,
// whose wake-up of another thread cost more than the call's own work.
type CallConn struct {
	conn channel
	r    *bufio.Reader // read only by the reader
	w    frameWriter

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan frame // each waiting call's: buffered 1, its reply or its turn
	reading bool                  // a call is the reader, or has been given the turn
	err     error                 // why the connection is no longer usable; nil = usable
	failed  chan struct{}
}

// turn is what a waiting call receives instead of its reply when it is to
// become the reader. A call never has both waiting: only the reader
// hands out replies, and a call is given the turn only when there is no
// reader.
var turn = frame{}

// NewCallConn serves the host's end of a call channel. The caller owns it
// and must Close it.
func NewCallConn(conn net.Conn) *CallConn {
	ch := channelOf(conn)
	c := &CallConn{
		conn:    ch,
		r:       bufio.NewReaderSize(ch, callBuffer),
		pending: make(map[uint64]chan frame),
		failed:  make(chan struct{}),
	}
	c.w = frameWriter{conn: ch, fail: c.writeFailed}
	return c
}

// writeFailed ends the connection after a write that failed: the frames
// of other calls may have been in it, and the stream may have a frame cut
// short. Closing it ends the reader's wait too.
func (c *CallConn) writeFailed(err error) {
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
	_ = c.conn.Close()
}

// Close closes the connection; calls waiting fail with ErrUnavailable.
func (c *CallConn) Close() error {
	err := c.conn.Close()
	c.mu.Lock()
	c.failLocked(net.ErrClosed)
	c.mu.Unlock()
	return err
}

// failLocked marks the connection unusable and wakes every waiting call.
func (c *CallConn) failLocked(err error) {
	if c.err == nil {
		c.err = err
		close(c.failed)
	}
}

// Handle is Remote.Handle over the channel.
func (c *CallConn) Handle(ctx context.Context, r *Request) (Decision, Effects, error) {
	op := callOp(r.Stage)
	if err := ctx.Err(); err != nil {
		return Decision{}, Effects{}, fmt.Errorf("sdk: %s: %w", op, err)
	}
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	me := make(chan frame, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return Decision{}, Effects{}, c.lost(op, nil)
	}
	c.next++
	id := c.next
	c.pending[id] = me
	if !c.reading {
		c.reading = true
		me <- turn
	}
	c.mu.Unlock()
	if err := c.w.writeRequest(id, deadline, r); err != nil {
		c.leave(id, me)
		return Decision{}, Effects{}, c.lost(op, err)
	}
	f, err := c.wait(ctx, id, me)
	if err != nil {
		if ctx.Err() != nil {
			_ = c.w.write(frameCancel, id, 0, nil) // best effort: the plugin's ctx has the deadline too
			return Decision{}, Effects{}, fmt.Errorf("sdk: %s: %w", op, ctx.Err())
		}
		return Decision{}, Effects{}, c.lost(op, err)
	}
	return reply(ctx, op, f)
}

// wait returns the reply to call id, reading the connection whenever it
// is given the turn. On an error it has left the pending calls.
func (c *CallConn) wait(ctx context.Context, id uint64, me chan frame) (frame, error) {
	for {
		select {
		case f := <-me:
			if f.kind != turn.kind {
				return f, nil
			}
			f, mine, err := c.read(ctx, id)
			if mine {
				return f, nil
			}
			if err != nil {
				c.leave(id, me)
				return frame{}, err
			}
		case <-ctx.Done():
			c.leave(id, me)
			return frame{}, ctx.Err()
		case <-c.failed:
			select {
			case f := <-me: // answered just before the end
				if f.kind != turn.kind {
					return f, nil
				}
			default:
			}
			c.leave(id, me)
			return frame{}, net.ErrClosed
		}
	}
}

// read is wait's turn as the reader: it reads replies, handing each to
// its call, until call id's own comes (mine), ctx ends, or the connection
// fails. It passes the turn on before it returns.
func (c *CallConn) read(ctx context.Context, id uint64) (f frame, mine bool, err error) {
	for {
		if err := c.awaitFrame(ctx); err != nil {
			c.mu.Lock()
			delete(c.pending, id)
			if ctx.Err() != nil {
				c.passTurnLocked()
			} else {
				c.failLocked(err)
			}
			c.mu.Unlock()
			return frame{}, false, err
		}
		f, err := readFrame(c.r)
		if err == nil && f.kind != frameReply && f.kind != frameFail {
			err = fmt.Errorf("sdk: call channel: frame kind %d from the plugin: %w", f.kind, ErrProtocol)
		}
		c.mu.Lock()
		if err != nil {
			delete(c.pending, id)
			c.failLocked(err)
			c.mu.Unlock()
			return frame{}, false, err
		}
		to := c.pending[f.id]
		delete(c.pending, f.id)
		if f.id == id {
			c.passTurnLocked()
			c.mu.Unlock()
			return f, true, nil
		}
		c.mu.Unlock()
		if to != nil {
			to <- f // buffered, and it waits for nothing else: never blocks
		}
	}
}

// awaitFrame waits until a frame's header is there to read, or ctx ends:
// only the wait is interrupted, never a frame half read.
func (c *CallConn) awaitFrame(ctx context.Context) error {
	if c.r.Buffered() >= frameHeader || ctx.Done() == nil {
		_, err := c.r.Peek(frameHeader)
		return err
	}
	var (
		mu      sync.Mutex
		armed   = true
		expired bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if armed {
			expired = true
			_ = c.conn.SetReadDeadline(time.Unix(1, 0))
		}
	})
	_, err := c.r.Peek(frameHeader)
	stop()
	mu.Lock()
	armed = false
	if expired {
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	mu.Unlock()
	if err != nil && expired {
		return ctx.Err() // the deadline was ours
	}
	return err
}

// passTurnLocked gives the reading to a waiting call, if any.
func (c *CallConn) passTurnLocked() {
	for _, w := range c.pending {
		w <- turn // buffered, and it waits for nothing else: never blocks
		return
	}
	c.reading = false
}

// leave takes call id out of the pending calls, passing on the turn if
// it was given one meanwhile.
func (c *CallConn) leave(id uint64, me chan frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, id)
	select {
	case f := <-me:
		if f.kind == turn.kind {
			c.passTurnLocked()
		}
	default:
	}
}

// callOp names a call of stage in errors; made only when one is, as
// fmt formats it (the concatenation would be an allocation per call).
type callOp Stage

func (op callOp) String() string { return "plugin " + string(op) }

// lost is the error of a call the channel could not carry.
func (c *CallConn) lost(op callOp, err error) error {
	c.mu.Lock()
	if c.err != nil {
		err = c.err
	}
	c.mu.Unlock()
	if errors.Is(err, ErrInternal) || errors.Is(err, ErrProtocol) {
		return fmt.Errorf("sdk: %s: %w", op, err)
	}
	return fmt.Errorf("sdk: %s: the call channel is closed (%v): %w", op, err, ErrUnavailable)
}
