// Package smtptest holds test doubles for the SMTP server: a transcript
// runner that plays the client side of a scripted conversation, an
// in-memory Spool, a discarding Spool for benchmarks, a helper that runs a
// real smtp.Server on 127.0.0.1:0, and a self-signed certificate for TLS,
// as tls.Configs or as PEM files for a listener's tls block.
package smtptest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultTimeout bounds every read of a server reply in a transcript.
const DefaultTimeout = 5 * time.Second

// Run dials addr and plays script as the client (see Conn.Run), then
// closes the connection.
func Run(t testing.TB, addr, script string) {
	t.Helper()
	c := Dial(t, addr)
	defer c.Close()
	c.Run(script)
}

// Conn is the client side of a transcript.
type Conn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader

	// Timeout bounds each read of a server line (DefaultTimeout if zero).
	Timeout time.Duration
	// TLS is used by the TLS directive; nil: InsecureSkipVerify.
	TLS *tls.Config

	pending []byte          // client bytes not sent yet
	log     strings.Builder // the transcript so far, for failure messages
}

// Dial connects to addr; the connection is closed at the end of the test.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("smtptest: dial %s: %v", addr, err)
	}
	c := &Conn{t: t, conn: conn, br: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	return c
}

// Close closes the connection.
func (c *Conn) Close() error { return c.conn.Close() }

// NetConn returns the connection (after a TLS directive, the *tls.Conn).
func (c *Conn) NetConn() net.Conn { return c.conn }

// Run plays script, one directive a line (leading blanks ignored):
//
//	C: text     send text and CRLF
//	B: text     send text with Go escapes (\r \n \t \\ \xHH), nothing added
//	S: text     expect this reply line; a "*" in text matches any run of
//	            characters (e.g. "S: 250 2.0.0 Ok: queued as *")
//	S~ regexp   expect a reply line matching regexp (anchored)
//	TLS         start TLS as the client (after the server's 220 to STARTTLS)
//	EOF         expect the server to close the connection
//	# comment   and blank lines are ignored
//
// Client lines are buffered until the next S, S~, TLS or EOF directive (or
// the end of the script) and then sent in one write: consecutive C lines
// are a pipelined batch. Trailing blanks of expected and received lines are
// ignored. The first mismatch fails the test with the transcript.
func (c *Conn) Run(script string) {
	c.t.Helper()
	for i, raw := range strings.Split(script, "\n") {
		line := strings.TrimLeft(strings.TrimSuffix(raw, "\r"), " \t")
		n := i + 1
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "C:"):
			text := strings.TrimPrefix(strings.TrimPrefix(line, "C:"), " ")
			c.pending = append(append(c.pending, text...), '\r', '\n')
			fmt.Fprintf(&c.log, "C: %s\n", text)
		case strings.HasPrefix(line, "B:"):
			text := strings.TrimPrefix(strings.TrimPrefix(line, "B:"), " ")
			b, err := unescape(text)
			if err != nil {
				c.t.Fatalf("smtptest: script line %d: %v", n, err)
			}
			c.pending = append(c.pending, b...)
			fmt.Fprintf(&c.log, "B: %q\n", b)
		case strings.HasPrefix(line, "S:"):
			c.expect(n, strings.TrimPrefix(strings.TrimPrefix(line, "S:"), " "), nil)
		case strings.HasPrefix(line, "S~"):
			pat := strings.TrimSpace(strings.TrimPrefix(line, "S~"))
			re, err := regexp.Compile("^(?:" + pat + ")$")
			if err != nil {
				c.t.Fatalf("smtptest: script line %d: %v", n, err)
			}
			c.expect(n, pat, re)
		case line == "TLS":
			c.flush(n)
			c.StartTLS()
		case line == "EOF":
			c.flush(n)
			c.ExpectEOF()
		default:
			c.t.Fatalf("smtptest: script line %d: unknown directive %q", n, line)
		}
	}
	c.flush(0)
}

// Send writes raw bytes at once (after any pending script lines).
func (c *Conn) Send(b []byte) {
	c.t.Helper()
	c.pending = append(c.pending, b...)
	fmt.Fprintf(&c.log, "B: %q\n", b)
	c.flush(0)
}

// ReadLine reads one server line without its CRLF.
func (c *Conn) ReadLine() (string, error) {
	c.flush(0)
	c.conn.SetReadDeadline(time.Now().Add(c.timeout()))
	s, err := c.br.ReadString('\n')
	if err != nil {
		return s, err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return s, fmt.Errorf("smtptest: server line %q does not end in CRLF", s)
	}
	s = strings.TrimSuffix(s, "\r\n")
	fmt.Fprintf(&c.log, "S: %s\n", s)
	return s, nil
}

// StartTLS runs the client side of the TLS handshake.
func (c *Conn) StartTLS() {
	c.t.Helper()
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		c.fail(0, "unexpected server data before TLS handshake: %q", b)
	}
	cfg := c.TLS
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true}
	}
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(c.timeout()))
	if err := tc.Handshake(); err != nil {
		c.fail(0, "TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.br = bufio.NewReader(tc)
	c.log.WriteString("-- TLS established\n")
}

// ExpectEOF checks that the server closes the connection without sending
// anything more.
func (c *Conn) ExpectEOF() {
	c.t.Helper()
	s, err := c.ReadLine()
	if err == nil || (!errors.Is(err, io.EOF) && !isReset(err)) {
		c.fail(0, "want the connection closed, got %q (err %v)", s, err)
	}
	c.log.WriteString("-- closed\n")
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func (c *Conn) expect(n int, want string, re *regexp.Regexp) {
	c.t.Helper()
	got, err := c.ReadLine()
	if err != nil {
		c.fail(n, "want %q, read error %v", want, err)
	}
	got = strings.TrimRight(got, " ")
	if re != nil {
		if !re.MatchString(got) {
			c.fail(n, "want a match for %q, got %q", want, got)
		}
		return
	}
	if !Match(strings.TrimRight(want, " "), got) {
		c.fail(n, "want %q, got %q", want, got)
	}
}

func (c *Conn) flush(n int) {
	c.t.Helper()
	if len(c.pending) == 0 {
		return
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout()))
	_, err := c.conn.Write(c.pending)
	c.pending = c.pending[:0]
	if err != nil {
		c.fail(n, "write: %v", err)
	}
}

func (c *Conn) fail(n int, format string, a ...any) {
	c.t.Helper()
	where := "smtptest"
	if n > 0 {
		where = fmt.Sprintf("smtptest: script line %d", n)
	}
	c.t.Fatalf("%s: %s\ntranscript:\n%s", where, fmt.Sprintf(format, a...), c.log.String())
}

func (c *Conn) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Match reports whether got matches pattern, in which "*" stands for any
// run of characters and everything else must be equal.
func Match(pattern, got string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == got
	}
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	got = got[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(got, p)
		if i < 0 {
			return false
		}
		got = got[i+len(p):]
	}
	return len(got) >= len(last) && strings.HasSuffix(got, last)
}

// unescape turns \r, \n, \t, \\, \0 and \xHH into bytes.
func unescape(s string) ([]byte, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("trailing backslash in %q", s)
		}
		i++
		switch s[i] {
		case 'r':
			b = append(b, '\r')
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case '0':
			b = append(b, 0)
		case '\\':
			b = append(b, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("short \\x escape in %q", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bad \\x escape in %q", s)
			}
			b = append(b, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c in %q", s[i], s)
		}
	}
	return b, nil
}
