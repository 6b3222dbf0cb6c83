package sdk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
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

	mu        sync.Mutex
	next      uint64
	pending   map[uint64]waiter // each waiting call
	reading   bool              // a call is the reader, or has been given the turn
	overlapAt uint64            // the last call that found another waiting (busyYield)
	err       error             // why the connection is no longer usable; nil = usable
	failed    chan struct{}
	chans     sync.Pool // chan frame, buffered 1: a waiter's, for reuse once answered

	// The deadlines of the calls whose context has a CancelParent
	// (core/hook's handler timeouts): one timer for all of them, armed
	// for the earliest (see expire).
	timer *time.Timer
	armed time.Time // when timer fires; zero = stopped
	// The reader's wait for a frame (awaitFrame), which the timer or
	// the reader's cancellation interrupts by a read deadline in the
	// past.
	peeking     bool   // the reader waits for a frame
	peekID      uint64 // whose wait it is
	interrupted bool   // the wait was interrupted
}

// waiter is a waiting call.
type waiter struct {
	ch chan frame // buffered 1: its reply, its turn, or expired
	// deadline is the call's deadline when the channel's timer watches
	// it (its context has a CancelParent); zero otherwise.
	deadline time.Time
}

// CancelParent is implemented by a context that ends at its deadline or
// when the context it returns ends, whichever comes first: core/hook's
// per-call timeouts. A hook call on the call channel then waits on the
// parent's Done, made once for a session, and on one timer of the
// channel's for the deadlines of all its calls, instead of its context's
// Done, which such a context makes (a timer, a place among the parent's
// children) on every call; it watches its context's Done otherwise.
type CancelParent interface {
	CancelParent() context.Context
}

// expired is what the channel's timer sends a waiting call whose
// deadline has passed (a kind no frame has).
var expired = frame{kind: 0xff}

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
		pending: make(map[uint64]waiter),
		failed:  make(chan struct{}),
	}
	c.w = frameWriter{conn: ch, fail: c.writeFailed, yield: c.busyYield}
	c.timer = time.AfterFunc(time.Hour, c.expire)
	c.timer.Stop()
	return c
}

// busyYield is the writer's yield: while the channel is busy (one of its
// last busyCalls calls found another waiting for its reply), it lets the
// other sessions run before it writes a call, so that the calls they
// make meanwhile go in the same write, one wake-up of the plugin for
// all. On a quiet channel it writes at once: with nothing else to run, a
// yield would only wake an idle thread (about 9 µs of CPU a call in
// BenchmarkPluginRcptCall).
func (c *CallConn) busyYield() {
	if c.busy() {
		runtime.Gosched()
	}
}

// busy reports whether one of the last busyCalls calls found another
// waiting for its reply.
func (c *CallConn) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.overlapAt != 0 && c.next-c.overlapAt < busyCalls
}

// busyCalls is how many calls the channel stays busy after one found
// another waiting.
const busyCalls = 64

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
	c.timer.Stop()
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
	w := waiter{ch: c.waitChan()}
	watch := ctx // what the wait watches: its Done, and its Err once done
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
		if cp, ok := ctx.(CancelParent); ok {
			watch, w.deadline = cp.CancelParent(), d
		}
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return Decision{}, Effects{}, c.lost(op, nil)
	}
	c.next++
	id := c.next
	c.pending[id] = w
	if len(c.pending) > 1 {
		c.overlapAt = id
	}
	if !w.deadline.IsZero() && (c.armed.IsZero() || w.deadline.Before(c.armed)) {
		c.armed = w.deadline
		c.timer.Reset(time.Until(w.deadline))
	}
	if !c.reading {
		c.reading = true
		w.ch <- turn
	}
	c.mu.Unlock()
	if err := c.w.writeRequest(id, deadline, r); err != nil {
		c.leave(id, w.ch)
		return Decision{}, Effects{}, c.lost(op, err)
	}
	f, err := c.wait(watch, id, w)
	if err == nil && len(w.ch) == 0 {
		// Answered: out of the pending calls, so nothing sends to it
		// now (and it is empty: the timer may have expired it while it
		// took its own reply as the reader).
		c.chans.Put(w.ch)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			_ = c.w.write(frameCancel, id, 0, nil) // best effort: the plugin's ctx has the deadline too
			return Decision{}, Effects{}, fmt.Errorf("sdk: %s: %w", op, cerr)
		}
		return Decision{}, Effects{}, c.lost(op, err)
	}
	return reply(ctx, op, f)
}

// waitChan returns an empty channel for a waiter.
func (c *CallConn) waitChan() chan frame {
	if ch, ok := c.chans.Get().(chan frame); ok {
		return ch
	}
	return make(chan frame, 1)
}

// expire is the channel's timer: it ends the waits of the calls whose
// deadline has passed (the reader's by interrupting its read, the others'
// by sending them expired, which also takes them out of the pending
// calls), and arms the timer for the earliest deadline left.
func (c *CallConn) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = time.Time{}
	var next time.Time
	for id, w := range c.pending {
		switch {
		case w.deadline.IsZero():
		case time.Until(w.deadline) > 0:
			if next.IsZero() || w.deadline.Before(next) {
				next = w.deadline
			}
		case c.peeking && c.peekID == id:
			c.interruptLocked()
		case len(w.ch) == 0:
			delete(c.pending, id)
			w.ch <- expired
		}
		// A call with its turn in its channel is about to read, and
		// looks at its deadline before it waits (awaitFrame).
	}
	if !next.IsZero() && c.err == nil {
		c.armed = next
		c.timer.Reset(time.Until(next))
	}
}

// interruptLocked ends the reader's wait for a frame.
func (c *CallConn) interruptLocked() {
	if c.peeking && !c.interrupted {
		c.interrupted = true
		_ = c.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// wait returns the reply to call id, reading the connection whenever it
// is given the turn; it watches ctx's Done, and the channel's timer
// w.deadline. On an error it has left the pending calls.
func (c *CallConn) wait(ctx context.Context, id uint64, w waiter) (frame, error) {
	for {
		select {
		case f := <-w.ch:
			switch f.kind {
			case expired.kind:
				c.leave(id, w.ch)
				return frame{}, context.DeadlineExceeded
			case turn.kind:
			default:
				return f, nil
			}
			f, mine, err := c.read(ctx, id, w.deadline)
			if mine {
				return f, nil
			}
			if err != nil {
				c.leave(id, w.ch)
				return frame{}, err
			}
		case <-ctx.Done():
			c.leave(id, w.ch)
			return frame{}, ctx.Err()
		case <-c.failed:
			select {
			case f := <-w.ch: // answered just before the end
				if f.kind != turn.kind && f.kind != expired.kind {
					return f, nil
				}
			default:
			}
			c.leave(id, w.ch)
			return frame{}, net.ErrClosed
		}
	}
}

// read is wait's turn as the reader: it reads replies, handing each to
// its call, until call id's own comes (mine), ctx ends or its deadline
// passes, or the connection fails. It passes the turn on before it
// returns.
func (c *CallConn) read(ctx context.Context, id uint64, deadline time.Time) (f frame, mine bool, err error) {
	for {
		if err := c.awaitFrame(ctx, id, deadline); err != nil {
			c.mu.Lock()
			delete(c.pending, id)
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
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
		to, ok := c.pending[f.id]
		delete(c.pending, f.id)
		if f.id == id {
			c.passTurnLocked()
			c.mu.Unlock()
			return f, true, nil
		}
		c.mu.Unlock()
		if ok {
			to.ch <- f // buffered, and it waits for nothing else: never blocks
		}
	}
}

// awaitFrame waits until a frame's header is there to read, ctx ends, or
// deadline (the channel's timer's; zero = none) passes: only the wait is
// interrupted, never a frame half read.
func (c *CallConn) awaitFrame(ctx context.Context, id uint64, deadline time.Time) error {
	if c.r.Buffered() >= frameHeader || (ctx.Done() == nil && deadline.IsZero()) {
		_, err := c.r.Peek(frameHeader)
		return err
	}
	if !deadline.IsZero() && time.Until(deadline) <= 0 {
		return context.DeadlineExceeded
	}
	c.mu.Lock()
	c.peeking, c.peekID, c.interrupted = true, id, false
	c.mu.Unlock()
	stop := func() bool { return false }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() {
			c.mu.Lock()
			if c.peekID == id {
				c.interruptLocked()
			}
			c.mu.Unlock()
		})
	}
	_, err := c.r.Peek(frameHeader)
	stop()
	c.mu.Lock()
	c.peeking = false
	interrupted := c.interrupted
	if interrupted {
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	switch {
	case err == nil || !interrupted:
		return err
	case ctx.Err() != nil:
		return ctx.Err() // the interruption was ours
	}
	return context.DeadlineExceeded
}

// passTurnLocked gives the reading to a waiting call, if any.
func (c *CallConn) passTurnLocked() {
	for _, w := range c.pending {
		w.ch <- turn // buffered, and it waits for nothing else: never blocks
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
