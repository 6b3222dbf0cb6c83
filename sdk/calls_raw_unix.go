//go:build unix

package sdk

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// The call channel's socket is read and written with raw system calls
// inside the runtime's poller (syscall.RawConn), where net.Conn's Read
// and Write make ordinary ones. The socket is non-blocking, so none of
// them blocks in the kernel; an ordinary one still tells the scheduler
// that it might, which wakes the runtime's monitor thread (sysmon) out
// of its deep sleep on each call to an otherwise idle process: about
// two more system calls and a context switch per hook call on each
// side, several microseconds each on a virtual machine. Deadlines and
// Close work as on the net.Conn: the waits are the poller's.

// channelIO returns conn's reader and writer: raw ones when conn is a
// socket, conn itself otherwise (net.Pipe in tests). The reader is for
// one goroutine at a time, and so is the writer.
func channelIO(conn net.Conn) (io.Reader, io.Writer) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn, conn
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return conn, conn
	}
	r, w := &rawReader{rc: rc}, &rawWriter{rc: rc}
	r.fn, w.fn = r.read, w.write // made once: a func value per call would be allocated
	return r, w
}

// rawReader reads the socket; its fields are one Read's.
type rawReader struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	p   []byte
	n   int
	err error
}

// Read reads what the socket has, waiting for it in the poller.
func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.err = p, 0, nil
	rerr := r.rc.Read(r.fn)
	n, err := r.n, r.err
	r.p = nil
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is one attempt; false = nothing yet, wait in the poller.
func (r *rawReader) read(fd uintptr) bool {
	for {
		r.n, r.err = rawSyscall(syscall.SYS_READ, fd, r.p)
		if r.err != syscall.EINTR {
			return r.err != syscall.EAGAIN
		}
	}
}

// rawWriter writes the socket; its fields are one Write's.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	p   []byte
	n   int
	err error
}

// Write writes all of p, waiting in the poller while the socket is full.
func (w *rawWriter) Write(p []byte) (int, error) {
	w.p, w.n, w.err = p, 0, nil
	werr := w.rc.Write(w.fn)
	n, err := w.n, w.err
	w.p = nil
	if werr != nil {
		return n, werr
	}
	return n, err
}

// write writes as much as the socket takes; false = full, wait in the
// poller.
func (w *rawWriter) write(fd uintptr) bool {
	for w.n < len(w.p) {
		m, err := rawSyscall(syscall.SYS_WRITE, fd, w.p[w.n:])
		switch err {
		case nil:
			w.n += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			w.err = err
			return true
		}
	}
	return true
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
