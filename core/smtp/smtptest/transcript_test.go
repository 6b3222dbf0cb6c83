package smtptest

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, got string
		want         bool
	}{
		{"250 2.0.0 Ok", "250 2.0.0 Ok", true},
		{"250 2.0.0 Ok", "250 2.0.0 Okay", false},
		{"250 2.0.0 Ok: queued as *", "250 2.0.0 Ok: queued as M0001", true},
		{"250 2.0.0 Ok: queued as *", "250 2.0.0 Ok: queued as ", true},
		{"250 2.0.0 Ok: queued as *", "250 2.0.0 Ok: queue", false},
		{"250-*", "250 x", false},
		{"* Bye", "221 2.0.0 Bye", true},
		{"a*b*c", "a-x-b-y-c", true},
		{"a*b*c", "a-x-c-y-b", false},
		{"ab*ba", "aba", false},
	} {
		if got := Match(tc.pattern, tc.got); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.got, got, tc.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{`plain`, []byte("plain"), false},
		{`a\r\nb`, []byte("a\r\nb"), false},
		{`\t\\\0\x41\x7f`, []byte("\t\\\x00A\x7f"), false},
		{`bad\q`, nil, true},
		{`trailing\`, nil, true},
		{`\x4`, nil, true},
		{`\xzz`, nil, true},
	} {
		got, err := unescape(tc.in)
		if (err != nil) != tc.wantErr || !bytes.Equal(got, tc.want) {
			t.Errorf("unescape(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the failure and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, a ...any) {
	f.msg = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

func (f *fatalRecorder) Helper() {}

func TestRunFlagsMismatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 hello\r\n"))
			c.Close()
		}
	}()
	for _, tc := range []struct {
		script, wantMsg string
	}{
		{"S: 220 hello\nEOF", ""},
		{"S: 220 *\nEOF", ""},
		{"S~ 220 h.*o\nEOF", ""},
		{"S: 220 goodbye", `want "220 goodbye", got "220 hello"`},
		{"S: 220 hello\nS: 250 more", `want "250 more", read error`},
		{"S: 220 hello\nX: nonsense", `unknown directive`},
	} {
		rec := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(rec, ln.Addr().String(), tc.script)
		}()
		<-done
		if tc.wantMsg == "" && rec.msg != "" || !strings.Contains(rec.msg, tc.wantMsg) {
			t.Errorf("script %q: failure %q, want one containing %q", tc.script, rec.msg, tc.wantMsg)
		}
	}
}
