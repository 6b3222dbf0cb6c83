package tlsrpt

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// day is the day the tests count in; now is a moment in it.
var (
	day = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	now = day.Add(15*time.Hour + 4*time.Minute)
)

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// mailbox records what Options.Mail was given; fail makes it fail.
type mailbox struct {
	mu    sync.Mutex
	fail  error
	tries int
	sent  []sentMail
}

type sentMail struct {
	from string
	to   []string
	msg  []byte
}

func (m *mailbox) Mail(ctx context.Context, from string, to []string, msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tries++
	if m.fail != nil {
		return m.fail
	}
	m.sent = append(m.sent, sentMail{from, to, msg})
	return nil
}

func (m *mailbox) Sent() []sentMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]sentMail(nil), m.sent...)
}

// newResolver serves zone on loopback and returns a Resolver asking it,
// without a cache so that a changed zone is seen at once.
func newResolver(t *testing.T, zone string) (*resolver.Resolver, *resolvertest.Server) {
	t.Helper()
	srv := resolvertest.Start(t, zone)
	res, err := resolver.New(resolver.Options{Servers: []string{srv.Addr()}, CacheSize: -1, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res, srv
}

// httpsServer serves h over TLS on 127.0.0.1:0 with cert; it returns its
// port. The test's Cleanup stops it.
func httpsServer(t *testing.T, cert tls.Certificate, h http.Handler) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	return n
}

func (m *mailbox) Tries() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tries
}

func (m *mailbox) SetFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}
