//go:build linux

package sdk

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// The call channel's socket is kept out of the runtime's poller, and read
// and written with raw system calls.
//
// The poller watches every descriptor for writing as well as reading, so
// each time the plugin read a call, the kernel told the host's poller
// that its socket could be written again (a waiting epoll_wait returns),
// and the same on the plugin's side for each reply the host read: one
// wake-up of the other process for nothing on each side of every call.
// Instead the socket is watched by an epoll instance of the channel's
// own, for reading only, and the runtime's poller waits on that instance
// (an epoll descriptor is readable while one of its own is): a wake-up
// now means a frame came. A write that finds the socket full (the other
// end is not reading) watches it for writing in a second instance until
// it has written all.
//
// Raw system calls, not ordinary ones: the socket is non-blocking, so
// none of them blocks in the kernel; an ordinary one still tells the
// scheduler that it might, which wakes the runtime's monitor thread
// (sysmon) out of its deep sleep on each call to an otherwise idle
// process. Deadlines (SetReadDeadline) and Close work as on a net.Conn:
// the waits are the poller's.

// quietConn is a call channel's socket outside the poller, as above. One
// goroutine at a time reads it and one writes it.
type quietConn struct {
	fd    int             // the socket's descriptor
	sock  *os.File        // the socket, non-blocking, outside the poller
	sockc syscall.RawConn // sock's descriptor, held open while in use
	rd    *os.File        // epoll: sock readable; in the poller
	rdc   syscall.RawConn
	wr    *os.File // epoll: sock writable, while a write waits; in the poller
	wrc   syscall.RawConn
	// The callbacks, made once (a method value per call is allocated),
	// and their arguments and results: one Read's, one Write's.
	readFn, readWaitFn, writeFn, writeWaitFn func(uintptr) bool
	rp, wp                                   []byte
	rn, wn                                   int
	rerr, werr                               error
	watching                                 bool // wr watches sock
}

// channelOf returns the channel over conn: a quietConn when conn is a
// socket, conn itself otherwise (net.Pipe in tests) or when the socket
// cannot be taken out of the poller. The result owns conn.
func channelOf(conn net.Conn) channel {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return conn
	}
	// A copy of the descriptor outlives conn, whose Close takes the
	// socket out of the poller.
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = dupCloexec(int(s)) }); cerr != nil || err != nil {
		return conn
	}
	q, err := newQuietConn(fd)
	if err != nil {
		return conn
	}
	conn.Close()
	return q
}

// newQuietConn makes a quietConn of socket fd, which it owns.
func newQuietConn(fd int) (*quietConn, error) {
	// Blocking while os.NewFile looks, so that it stays outside the
	// poller; non-blocking after.
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	q := &quietConn{fd: fd, sock: os.NewFile(uintptr(fd), "gateway-calls")}
	if err := syscall.SetNonblock(fd, true); err != nil {
		q.sock.Close()
		return nil, err
	}
	var err error
	if q.sockc, err = q.sock.SyscallConn(); err != nil {
		q.sock.Close()
		return nil, err
	}
	if q.rd, q.rdc, err = newEpoll(); err == nil {
		if err = epollCtl(q.rd, syscall.EPOLL_CTL_ADD, fd, syscall.EPOLLIN|syscall.EPOLLRDHUP); err == nil {
			q.wr, q.wrc, err = newEpoll()
		}
	}
	if err != nil {
		q.Close()
		return nil, err
	}
	q.readFn, q.readWaitFn = q.read, q.readWait
	q.writeFn, q.writeWaitFn = q.write, q.writeWait
	return q, nil
}

// newEpoll returns a new epoll instance, in the runtime's poller.
func newEpoll() (*os.File, syscall.RawConn, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "gateway-calls-epoll") // non-blocking: in the poller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

// epollCtl is epoll_ctl(op) of socket fd with events on ep.
func epollCtl(ep *os.File, op, fd int, events uint32) error {
	rc, err := ep.SyscallConn()
	if err != nil {
		return err
	}
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	var cerr error
	if err := rc.Control(func(e uintptr) { cerr = syscall.EpollCtl(int(e), op, fd, &ev) }); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("epoll_ctl: %w", cerr)
	}
	return nil
}

// Read reads what the socket has, waiting for it in the poller.
func (q *quietConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	q.rp, q.rn, q.rerr = p, 0, nil
	err := q.rdc.Read(q.readWaitFn)
	n, rerr := q.rn, q.rerr
	q.rp = nil
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readWait is one attempt to read; false = nothing yet, wait for rd.
func (q *quietConn) readWait(uintptr) bool {
	if err := q.sockc.Read(q.readFn); err != nil {
		q.rerr = err
		return true
	}
	return q.rerr != syscall.EAGAIN
}

// read reads the socket once.
func (q *quietConn) read(fd uintptr) bool {
	for {
		q.rn, q.rerr = rawSyscall(syscall.SYS_READ, fd, q.rp)
		if q.rerr != syscall.EINTR {
			return true
		}
	}
}

// Write writes all of p, waiting in the poller while the socket is full.
func (q *quietConn) Write(p []byte) (int, error) {
	q.wp, q.wn, q.werr = p, 0, nil
	err := q.sockc.Write(q.writeFn)
	if err == nil && q.werr == syscall.EAGAIN {
		err = q.awaitWritten()
	}
	n, werr := q.wn, q.werr
	q.wp = nil
	if err != nil {
		return n, err
	}
	return n, werr
}

// awaitWritten writes the rest of a write that found the socket full,
// watching it for writing meanwhile.
func (q *quietConn) awaitWritten() error {
	fd := q.fd
	op := syscall.EPOLL_CTL_ADD
	if q.watching {
		op = syscall.EPOLL_CTL_MOD
	}
	if err := epollCtl(q.wr, op, fd, syscall.EPOLLOUT); err != nil {
		return err
	}
	q.watching = true
	err := q.wrc.Read(q.writeWaitFn)
	// Watching a socket that can be written wakes the poller each
	// time the other end reads.
	if derr := epollCtl(q.wr, syscall.EPOLL_CTL_MOD, fd, 0); err == nil {
		err = derr
	}
	return err
}

// writeWait is one more attempt to write; false = still full.
func (q *quietConn) writeWait(uintptr) bool {
	q.werr = nil
	if err := q.sockc.Write(q.writeFn); err != nil {
		q.werr = err
		return true
	}
	return q.werr != syscall.EAGAIN
}

// write writes as much as the socket takes.
func (q *quietConn) write(fd uintptr) bool {
	for q.wn < len(q.wp) {
		m, err := rawSyscall(syscall.SYS_WRITE, fd, q.wp[q.wn:])
		switch err {
		case nil:
			q.wn += m
		case syscall.EINTR:
		default:
			q.werr = err
			return true
		}
	}
	return true
}

// SetReadDeadline sets the deadline of the reads' waits.
func (q *quietConn) SetReadDeadline(t time.Time) error { return q.rd.SetReadDeadline(t) }

// Close closes the socket, ending the waits.
func (q *quietConn) Close() error {
	var err error
	for _, f := range []*os.File{q.rd, q.wr, q.sock} {
		if f != nil {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	return err
}

// dupCloexec duplicates fd, close-on-exec.
func dupCloexec(fd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// rawSyscall is read or write (trap) of p on fd without the scheduler's
// bookkeeping for a call that may block: fd is non-blocking.
func rawSyscall(trap, fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
