package smtp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// binaryContent is a BINARYMIME message: NUL bytes, bare CR, bare LF,
// lines far longer than 998 bytes, a lone "." line, no final line end.
func binaryContent() []byte {
	var b bytes.Buffer
	b.WriteString("Subject: binary\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\n")
	for i := range 40 {
		b.WriteString("\x00bare CR\rbare LF\n.\r\n")
		b.Write(bytes.Repeat([]byte{byte(i), 0xff, '\r'}, 1500))
	}
	b.WriteString("the end")
	return b.Bytes()
}

// TestClientBDATToServer sends through our client to our server and
// compares what the server stored, byte for byte.
func TestClientBDATToServer(t *testing.T) {
	content := binaryContent()
	for _, tc := range []struct {
		name string
		opt  smtp.ClientOptions
		body envelope.Body
		in   []byte
		want []byte
	}{
		{"binary pipelined", smtp.ClientOptions{}, envelope.BodyBinaryMIME, content, content},
		{"binary small chunks", smtp.ClientOptions{ChunkSize: 1000}, envelope.BodyBinaryMIME, content, content},
		{"binary step by step", smtp.ClientOptions{ChunkSize: 1000, NoPipelining: true}, envelope.BodyBinaryMIME, content, content},
		{"binary one chunk per byte", smtp.ClientOptions{ChunkSize: 1}, envelope.BodyBinaryMIME, content[:300], content[:300]},
		{"always", smtp.ClientOptions{AlwaysBDAT: true, ChunkSize: 7}, envelope.Body8BitMIME,
			[]byte("Subject: x\n\n.\nline\rend"), []byte("Subject: x\r\n\r\n.\r\nline\r\nend\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.MaxMessageSize = 1 << 20 })
			opt := tc.opt
			opt.LocalName, opt.Timeout = "client.test", 5*time.Second
			c, err := smtp.Dial(context.Background(), addr, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			e := &envelope.Envelope{
				Sender:     envelope.Address{Local: "a", Domain: "x.test"},
				Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "b", Domain: "example.org"}}},
				Body:       tc.body,
			}
			res, err := c.Send(context.Background(), e, bytes.NewReader(tc.in))
			if err != nil || res.Data.Code != 250 {
				t.Fatalf("Send: %v, %v; want 250", res.Data, err)
			}
			msgs := wantMessages(t, spool, 1)
			if got := msgs[0].Body; !bytes.Equal(got, tc.want) {
				t.Errorf("stored %d bytes, want %d: %q…", len(got), len(tc.want), got[:min(len(got), 80)])
			}
			if msgs[0].Envelope.Body != tc.body {
				t.Errorf("stored BODY %v, want %v", msgs[0].Envelope.Body, tc.body)
			}
		})
	}
}

// TestClientBDATServerRefusesChunk: our server refuses the chunk that
// takes the message past its size limit; the client sends no more chunks,
// resets, and its next transaction on the same connection goes through.
func TestClientBDATServerRefusesChunk(t *testing.T) {
	addr, spool, _ := start(t, nil) // MaxMessageSize 10240
	c, err := smtp.Dial(context.Background(), addr, smtp.ClientOptions{LocalName: "client.test", Timeout: 5 * time.Second, ChunkSize: 4000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := &envelope.Envelope{
		Sender:     envelope.Address{Local: "a", Domain: "x.test"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "b", Domain: "example.org"}}},
		Body:       envelope.BodyBinaryMIME,
	}
	// A reader without Len: MAIL goes without SIZE, and the limit is
	// found at the chunk that passes it.
	res, err := c.Send(context.Background(), e, io.MultiReader(bytes.NewReader(binaryContent())))
	var r smtp.Reply
	if !errors.As(err, &r) || r.Code != 552 || r.Enhanced != (sdk.EnhancedCode{5, 3, 4}) || res.Data.Code != 552 {
		t.Fatalf("Send: Data %v, err %v; want 552 5.3.4", res.Data, err)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err() = %v, want a usable client", err)
	}
	if _, err := c.Send(context.Background(), e, strings.NewReader("small\x00")); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if got := wantMessages(t, spool, 1)[0].Body; string(got) != "small\x00" {
		t.Errorf("stored %q, want %q", got, "small\x00")
	}
}

// BenchmarkClientSend measures one 1 MiB message through our client to our
// server on loopback, with DATA and with BDAT (binary, and text with
// AlwaysBDAT).
func BenchmarkClientSend(b *testing.B) {
	text := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte(strings.Repeat("x", 76)+"\r\n"), (1<<20)/78)...)
	for _, bc := range []struct {
		name   string
		opt    smtp.ClientOptions
		body   envelope.Body
		binary bool
	}{
		{"DATA", smtp.ClientOptions{}, envelope.Body8BitMIME, false},
		{"BDAT text", smtp.ClientOptions{AlwaysBDAT: true}, envelope.Body8BitMIME, false},
		{"BDAT binary", smtp.ClientOptions{}, envelope.BodyBinaryMIME, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opt := baseOptions()
			opt.Listener.MaxMessageSize = 2 << 20
			opt.Spool = &smtptest.DiscardSpool{}
			opt.Log = slog.New(slog.DiscardHandler)
			addr, _ := smtptest.StartServer(b, opt)
			copt := bc.opt
			copt.LocalName = "client.test"
			c, err := smtp.Dial(context.Background(), addr, copt)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			e := &envelope.Envelope{
				Sender:     envelope.Address{Local: "a", Domain: "x.test"},
				Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "b", Domain: "example.org"}}},
				Body:       bc.body,
			}
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if _, err := c.Send(context.Background(), e, bytes.NewReader(text)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
