package resolver_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// TestDialFunc: names are looked up with the Resolver (a name the test's
// DNS server does not know fails), IP addresses are dialled as they are,
// and a port given replaces the address's.
func TestDialFunc(t *testing.T) {
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
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	srv := resolvertest.Start(t, "test. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\nhost.test. IN A 127.0.0.1\n")
	r, err := resolver.New(resolver.Options{Servers: []string{srv.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		port int
		ok   bool
	}{
		{"host.test:" + strconv.Itoa(port), 0, true},
		{"host.test:443", port, true},
		{"127.0.0.1:443", port, true},
		{"unknown.test:443", port, false},
	} {
		conn, err := r.DialFunc(tc.port)(t.Context(), "tcp", tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("dial %s (port %d): %v, want ok %v", tc.addr, tc.port, err, tc.ok)
		}
		if conn != nil {
			conn.Close()
		}
	}
}
