package sdk

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// benchRcptRequest is the rcpt request of core/pluginhost's benchmarks:
// a session, a sender and the recipient being decided.
func benchRcptRequest() *Request {
	return &Request{
		Stage:   StageRcpt,
		Session: &Session{ID: "s1", ClientIP: "192.0.2.7", Port: 4000, HELO: "client.test", ESMTP: true},
		Txn:     &Txn{Sender: Address{Local: "a", Domain: "client.test"}},
		Rcpt:    &Recipient{Address: Address{Local: "user42", Domain: "example.test"}},
	}
}

// BenchmarkCallServerRun is the plugin's own work for one rcpt call that
// has arrived: decoding, the call's context, the hook, and the reply's
// encoding, without the system calls (the reply goes to io.Discard).
func BenchmarkCallServerRun(b *testing.B) {
	payload, err := proto.Marshal(toPBRequest(benchRcptRequest()))
	if err != nil {
		b.Fatal(err)
	}
	s := &callServer{
		srv:     &grpcServer{impl: callsPlugin{}},
		w:       frameWriter{conn: io.Discard},
		running: make(map[uint64]*callCtx),
	}
	f := frame{kind: frameCall, id: 1, deadline: time.Now().Add(time.Hour).UnixNano(), payload: payload}
	b.ReportAllocs()
	for b.Loop() {
		s.run(f)
	}
}

// BenchmarkCallConnHandle is one rcpt call across a call channel in this
// process under a caller's deadline, as the hook chain gives one: both
// ends' work, the hand-overs and the waits included.
func BenchmarkCallConnHandle(b *testing.B) {
	host, plug := unixPair(b)
	served := make(chan error, 1)
	go func() { served <- serveCalls(plug, callsPlugin{}) }()
	c := NewCallConn(host)
	defer func() { c.Close(); <-served }()
	ctx, cancel := context.WithTimeout(b.Context(), time.Hour)
	defer cancel()
	r := benchRcptRequest()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Handle(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}
