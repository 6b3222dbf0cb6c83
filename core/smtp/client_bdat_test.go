package smtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

const ehloChunking = `
S: 220 mx.test ESMTP fake
C: EHLO client.test
S: 250-mx.test greets client.test
S: 250-PIPELINING
S: 250-8BITMIME
S: 250-CHUNKING
S: 250-BINARYMIME
S: 250 ENHANCEDSTATUSCODES`

// binaryBody has what only BDAT carries: NUL, a bare CR, a bare LF, a
// line starting with a dot, and no line end at the end.
const binaryBody = "\x00\r\n.x\ry\nz"

func binaryEnv() *envelope.Envelope {
	e := env("a@x.test", "b@y.test")
	e.Body = envelope.BodyBinaryMIME
	return e
}

// TestClientBDATBinary: a BINARYMIME message goes in one pipelined write
// with MAIL and RCPT, as BDAT LAST with its bytes untouched.
func TestClientBDATBinary(t *testing.T) {
	addr, done := fakeServer(t, ehloChunking+`
C: MAIL FROM:<a@x.test> BODY=BINARYMIME
C: RCPT TO:<b@y.test>
C: BDAT 9 LAST
D: "\x00\r\n.x\ry\nz"
S: 250 2.1.0 Sender ok
S: 250 2.1.5 Recipient ok
S: 250 2.0.0 Ok: queued as Q1
C: QUIT
S: 221 2.0.0 Bye`, nil)
	c := dialFake(t, addr, testOptions())
	res, err := c.Send(context.Background(), binaryEnv(), strings.NewReader(binaryBody))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := Result{
		Mail:  R(250, sdk.EnhancedCode{2, 1, 0}, "Sender ok"),
		Rcpts: []Reply{R(250, sdk.EnhancedCode{2, 1, 5}, "Recipient ok")},
		Data:  R(250, sdk.EnhancedCode{2, 0, 0}, "Ok: queued as Q1"),
		ID:    "Q1",
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("Send result:\n got %+v\nwant %+v", res, want)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestClientBDATChunksPipelined: with PIPELINING a chunk goes out before
// the previous one is answered (the script answers chunk 1 only after
// chunk 2 has arrived), and LAST only once every chunk is answered.
func TestClientBDATChunksPipelined(t *testing.T) {
	addr, done := fakeServer(t, ehloChunking+`
C: MAIL FROM:<a@x.test> BODY=BINARYMIME
C: RCPT TO:<b@y.test>
C: BDAT 5
D: "\x00\r\n.x"
S: 250 2.1.0 Sender ok
S: 250 2.1.5 Recipient ok
C: BDAT 5
D: "\ry\nz1"
S: 250 2.0.0 5 octets received
S: 250 2.0.0 5 octets received
C: BDAT 2 LAST
D: "23"
S: 250 2.0.0 Ok: queued as Q2
C: QUIT
S: 221 2.0.0 Bye`, nil)
	opt := testOptions()
	opt.ChunkSize = 5
	c := dialFake(t, addr, opt)
	res, err := c.Send(context.Background(), binaryEnv(), strings.NewReader(binaryBody+"123"))
	if err != nil || res.ID != "Q2" {
		t.Fatalf("Send: ID %q, err %v; want Q2, nil", res.ID, err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestClientBDATStepByStep: without PIPELINING every command waits for its
// reply, and a message of a whole number of chunks ends with BDAT 0 LAST.
func TestClientBDATStepByStep(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 mx.test ESMTP
C: EHLO client.test
S: 250-mx.test
S: 250-CHUNKING
S: 250 BINARYMIME
C: MAIL FROM:<a@x.test> BODY=BINARYMIME
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: BDAT 6
D: "\x00\r\n.x\r"
S: 250 6 octets
C: BDAT 6
D: "y\nz123"
S: 250 6 octets
C: BDAT 0 LAST
S: 250 queued as Q3
C: QUIT
S: 221 bye`, nil)
	opt := testOptions()
	opt.ChunkSize = 6
	c := dialFake(t, addr, opt)
	res, err := c.Send(context.Background(), binaryEnv(), strings.NewReader(binaryBody+"123"))
	if err != nil || res.ID != "Q3" {
		t.Fatalf("Send: ID %q, err %v; want Q3, nil", res.ID, err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestClientBDATChunkRefused: after a refused chunk nothing more is sent
// (RFC 3030 §4.2); the reply to the chunk already in the pipeline is read,
// RSET follows, and the client stays usable for the next transaction.
func TestClientBDATChunkRefused(t *testing.T) {
	addr, done := fakeServer(t, ehloChunking+`
C: MAIL FROM:<a@x.test> BODY=BINARYMIME
C: RCPT TO:<b@y.test>
C: BDAT 4
D: "\x00\r\n."
S: 250 2.1.0 Sender ok
S: 250 2.1.5 Recipient ok
C: BDAT 4
D: "x\ry\n"
S: 552 5.3.4 Message too big
S: 503 5.5.1 Need MAIL command
C: RSET
S: 250 2.0.0 Ok
C: QUIT
S: 221 2.0.0 Bye`, nil)
	opt := testOptions()
	opt.ChunkSize = 4
	c := dialFake(t, addr, opt)
	res, err := c.Send(context.Background(), binaryEnv(), strings.NewReader(binaryBody+strings.Repeat("x", 100)))
	want := R(552, sdk.EnhancedCode{5, 3, 4}, "Message too big")
	var r Reply
	if !errors.As(err, &r) || !reflect.DeepEqual(r, want) || !reflect.DeepEqual(res.Data, want) {
		t.Errorf("Send: Data %v, err %v; want %v for both", res.Data, err, want)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err() = %v after a refused chunk, want nil", err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestClientBDATNoRecipients: when every RCPT is refused, the pipelined
// chunk gets the server's error, RSET follows, and Send returns nil with
// the refusals in Rcpts.
func TestClientBDATNoRecipients(t *testing.T) {
	addr, done := fakeServer(t, ehloChunking+`
C: MAIL FROM:<a@x.test> BODY=BINARYMIME
C: RCPT TO:<b@y.test>
C: BDAT 9 LAST
D: "\x00\r\n.x\ry\nz"
S: 250 2.1.0 Sender ok
S: 550 5.1.1 No such user
S: 503 5.5.1 No valid recipients
C: RSET
S: 250 2.0.0 Ok
C: QUIT
S: 221 2.0.0 Bye`, nil)
	c := dialFake(t, addr, testOptions())
	res, err := c.Send(context.Background(), binaryEnv(), strings.NewReader(binaryBody))
	if err != nil || res.Rcpts[0].Code != 550 || res.Data.Code != 503 {
		t.Errorf("Send: Rcpts %v, Data %v, err %v; want 550, 503, nil", res.Rcpts, res.Data, err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestClientBinaryMIMEUnsupported: without CHUNKING and BINARYMIME a
// binary message is refused before anything is sent, with an error that
// is both ErrBinaryMIMEUnsupported and a permanent 554 5.6.3.
func TestClientBinaryMIMEUnsupported(t *testing.T) {
	for _, offer := range []string{"S: 250 8BITMIME", "S: 250 CHUNKING", "S: 250 BINARYMIME"} {
		t.Run(strings.TrimPrefix(offer, "S: 250 "), func(t *testing.T) {
			addr, done := fakeServer(t, `
S: 220 mx.test ESMTP
C: EHLO client.test
S: 250-mx.test
`+offer+`
C: QUIT
S: 221 bye`, nil)
			c := dialFake(t, addr, testOptions())
			_, err := c.Send(context.Background(), binaryEnv(), strings.NewReader(binaryBody))
			var r Reply
			if !errors.Is(err, ErrBinaryMIMEUnsupported) || !errors.As(err, &r) || r.Code != 554 || r.Enhanced != (sdk.EnhancedCode{5, 6, 3}) || !r.Permanent() {
				t.Errorf("Send = %v (reply %v), want ErrBinaryMIMEUnsupported and 554 5.6.3", err, r)
			}
			if err := c.Quit(context.Background()); err != nil {
				t.Errorf("Quit: %v", err)
			}
			<-done
		})
	}
}

// TestClientAlwaysBDAT: with AlwaysBDAT a message that is not binary goes
// with BDAT too, its lines ending in CRLF and not dot-stuffed; a server
// without CHUNKING gets DATA.
func TestClientAlwaysBDAT(t *testing.T) {
	opt := testOptions()
	opt.AlwaysBDAT = true
	addr, done := fakeServer(t, ehloChunking+`
C: MAIL FROM:<a@x.test> BODY=8BITMIME
C: RCPT TO:<b@y.test>
C: BDAT 36 LAST
D: "Subject: t\r\n\r\n.\r\n.leading dot\r\nend\r\n"
S: 250 2.1.0 Sender ok
S: 250 2.1.5 Recipient ok
S: 250 2.0.0 Ok
C: QUIT
S: 221 2.0.0 Bye`, nil)
	c := dialFake(t, addr, opt)
	e := env("a@x.test", "b@y.test")
	e.Body = envelope.Body8BitMIME
	if _, err := c.Send(context.Background(), e, strings.NewReader("Subject: t\n\n.\r.leading dot\nend")); err != nil {
		t.Errorf("Send: %v", err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done

	addr, done = fakeServer(t, ehloFull+`
C: MAIL FROM:<a@x.test> SIZE=1
C: RCPT TO:<b@y.test>
C: DATA
S: 250 ok
S: 250 ok
S: 354 go
C: x
C: .
S: 250 ok`, nil)
	c = dialFake(t, addr, opt)
	if _, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), strings.NewReader("x")); err != nil {
		t.Errorf("Send without CHUNKING: %v", err)
	}
	c.Close()
	<-done
}

// TestClientLMTPBDAT: LMTP over BDAT reads one reply per accepted
// recipient after LAST, and a single reply after each earlier chunk.
func TestClientLMTPBDAT(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 lmtp.test LMTP ready
C: LHLO client.test
S: 250-lmtp.test
S: 250-PIPELINING
S: 250-CHUNKING
S: 250-BINARYMIME
S: 250 ENHANCEDSTATUSCODES
C: MAIL FROM:<a@x.test> BODY=BINARYMIME
C: RCPT TO:<b@y.test>
C: RCPT TO:<nobody@y.test>
C: RCPT TO:<c@y.test>
C: BDAT 8
D: "\x00\r\n.x\ry\n"
S: 250 2.1.0 Sender ok
S: 250 2.1.5 Recipient ok
S: 550 5.1.1 No such user
S: 250 2.1.5 Recipient ok
S: 250 2.0.0 8 octets received
C: BDAT 1 LAST
D: "z"
S: 250 2.0.0 <b@y.test> Saved as 17
S: 452 4.2.2 <c@y.test> Mailbox full
C: QUIT
S: 221 2.0.0 Bye`, nil)
	opt := lmtpOptions()
	opt.ChunkSize = 8
	c := dialFake(t, addr, opt)
	e := env("a@x.test", "b@y.test", "nobody@y.test", "c@y.test")
	e.Body = envelope.BodyBinaryMIME
	res, err := c.Send(context.Background(), e, strings.NewReader(binaryBody))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	wantPer := []Reply{
		R(250, sdk.EnhancedCode{2, 0, 0}, "<b@y.test> Saved as 17"),
		{},
		R(452, sdk.EnhancedCode{4, 2, 2}, "<c@y.test> Mailbox full"),
	}
	if !reflect.DeepEqual(res.DataPerRcpt, wantPer) || res.ID != "" {
		t.Errorf("DataPerRcpt = %v, ID %q; want %v and no ID", res.DataPerRcpt, res.ID, wantPer)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestCRLFReader: line endings as dotWriter makes them, no dot-stuffing,
// whatever sizes the source reads in.
func TestCRLFReader(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a", "a\r\n"},
		{"a\r\n", "a\r\n"},
		{"a\n", "a\r\n"},
		{"a\r", "a\r\n"},
		{"a\r\rb", "a\r\n\r\nb\r\n"},
		{"a\n\rb\r\n", "a\r\n\r\nb\r\n"},
		{".\n..x\r\n", ".\r\n..x\r\n"},
		{"\r\n\r\n", "\r\n\r\n"},
	} {
		for name, src := range map[string]func(io.Reader) io.Reader{
			"whole":    func(r io.Reader) io.Reader { return r },
			"one byte": iotest.OneByteReader,
			"half":     iotest.HalfReader,
		} {
			got, err := io.ReadAll(&crlfReader{r: src(strings.NewReader(tc.in))})
			if err != nil || string(got) != tc.want {
				t.Errorf("%s: crlfReader(%q) = %q, %v; want %q", name, tc.in, got, err, tc.want)
			}
		}
	}
	boom := errors.New("boom")
	if _, err := io.ReadAll(&crlfReader{r: iotest.ErrReader(boom)}); !errors.Is(err, boom) {
		t.Errorf("crlfReader of a failing reader: %v, want boom", err)
	}
}

// FuzzCRLFReader checks crlfReader against dotWriter: the same content
// less the dot-stuffing and the final ".", however the source is split.
func FuzzCRLFReader(f *testing.F) {
	for _, s := range []string{"", "a", "a\r", "a\r\n.b\n\r.", "\n\n\r\r", "x\r\ny"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var want bytes.Buffer
		bw := bufio.NewWriter(&want)
		dw := dotWriter{w: bw}
		dw.Write(in)
		dw.close()
		bw.Flush()
		var unstuffed []byte
		for _, line := range bytes.SplitAfter(bytes.TrimSuffix(want.Bytes(), []byte(".\r\n")), []byte("\r\n")) {
			unstuffed = append(unstuffed, bytes.TrimPrefix(line, []byte("."))...)
		}
		got, err := io.ReadAll(&crlfReader{r: &splitReader{p: in, n: int(split%7) + 1}})
		if err != nil || !bytes.Equal(got, unstuffed) {
			t.Errorf("crlfReader(%q) = %q, %v; want %q", in, got, err, unstuffed)
		}
	})
}

// splitReader returns p n bytes at a time.
type splitReader struct {
	p []byte
	n int
}

func (s *splitReader) Read(b []byte) (int, error) {
	if len(s.p) == 0 {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), s.n)], s.p)
	s.p = s.p[k:]
	return k, nil
}
