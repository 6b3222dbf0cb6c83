package sdk

import (
	"io"
	"syscall"
	"testing"
)

// TestQuietConnWakesOnlyForData: the epoll instance the poller waits on
// for a call channel reports the socket when a frame comes, and not when
// the other end reads what this end wrote (which the poller's own
// registration, for writing too, reported: a wake-up of the process for
// nothing on every call).
func TestQuietConnWakesOnlyForData(t *testing.T) {
	host, plug := unixPair(t)
	defer plug.Close()
	ch := channelOf(host)
	defer ch.Close()
	q, ok := ch.(*quietConn)
	if !ok {
		t.Fatalf("channelOf(a Unix socket) = %T, want a *quietConn", ch)
	}
	ready := func() int {
		t.Helper()
		var n int
		var werr error
		rc, err := q.rd.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		events := make([]syscall.EpollEvent, 4)
		if err := rc.Control(func(fd uintptr) { n, werr = syscall.EpollWait(int(fd), events, 0) }); err != nil || werr != nil {
			t.Fatal(err, werr)
		}
		return n
	}
	if n := ready(); n != 0 {
		t.Fatalf("%d events before anything was sent, want 0", n)
	}
	if _, err := q.Write([]byte("call")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(plug, buf); err != nil {
		t.Fatal(err)
	}
	if n := ready(); n != 0 {
		t.Errorf("%d events after the other end read, want 0", n)
	}
	if _, err := plug.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if n := ready(); n != 1 {
		t.Errorf("%d events after the other end wrote, want 1", n)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(q, got); err != nil || string(got) != "reply" {
		t.Errorf("read %q, %v; want \"reply\"", got, err)
	}
}
