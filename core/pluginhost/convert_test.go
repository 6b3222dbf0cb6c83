package pluginhost

import (
	"net/netip"
	"testing"
	"unsafe"

	"github.com/mailgate/gateway/core/envelope"
)

// TestClientIP: the plugin sees the client's address unmapped, as text;
// the envelope's text is used when it is the same address.
func TestClientIP(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name   string
		ip     netip.Addr
		env    *envelope.Envelope
		want   string
		shared bool // the envelope's string itself
	}{
		{"none", netip.Addr{}, nil, "", false},
		{"v4 before MAIL", v4, nil, "192.0.2.1", false},
		{"mapped before MAIL", mapped, nil, "192.0.2.1", false},
		{"v6 before MAIL", v6, nil, "2001:db8::1", false},
		{"v4 with its envelope", v4, &envelope.Envelope{ClientIP: "192.0.2.1"}, "192.0.2.1", true},
		{"v6 with its envelope", v6, &envelope.Envelope{ClientIP: "2001:db8::1"}, "2001:db8::1", true},
		{"mapped, envelope as mapped", mapped, &envelope.Envelope{ClientIP: "::ffff:192.0.2.1"}, "192.0.2.1", false},
		{"envelope of another address", v4, &envelope.Envelope{ClientIP: "192.0.2.2"}, "192.0.2.1", false},
		{"envelope not an address", v4, &envelope.Envelope{ClientIP: "bad"}, "192.0.2.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clientIP(tt.ip, tt.env)
			if got != tt.want {
				t.Fatalf("clientIP = %q, want %q", got, tt.want)
			}
			if tt.shared && unsafe.StringData(got) != unsafe.StringData(tt.env.ClientIP) {
				t.Errorf("clientIP made a new string; want the envelope's")
			}
		})
	}
}
