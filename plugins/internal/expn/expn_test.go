package expn

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/sdk"
)

func TestAllows(t *testing.T) {
	on := sdk.Config{"expn": true, "expn_networks": []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"}}
	off := sdk.Config{"expn": false, "expn_networks": []string{"10.0.0.0/8"}}
	tests := []struct {
		name string
		cfg  sdk.Config
		s    *sdk.Session
		want bool
	}{
		{"anonymous outside the networks", on, &sdk.Session{ClientIP: "127.0.0.1"}, false},
		{"authenticated", on, &sdk.Session{ClientIP: "127.0.0.1", AuthUser: "bob"}, true},
		{"in a network", on, &sdk.Session{ClientIP: "10.1.2.3"}, true},
		{"a single IP", on, &sdk.Session{ClientIP: "192.0.2.7"}, true},
		{"next to the single IP", on, &sdk.Session{ClientIP: "192.0.2.8"}, false},
		{"IPv4-mapped IPv6", on, &sdk.Session{ClientIP: "::ffff:10.0.0.1"}, true},
		{"IPv6 network", on, &sdk.Session{ClientIP: "2001:db8::25"}, true},
		{"no IP", on, &sdk.Session{}, false},
		{"no session", on, nil, false},
		{"off: authenticated", off, &sdk.Session{AuthUser: "bob"}, false},
		{"off: in a network", off, &sdk.Session{ClientIP: "10.1.2.3"}, false},
		{"not configured", sdk.Config{}, &sdk.Session{AuthUser: "bob"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errs sdk.ConfigErrors
			p := Parse(tt.cfg, &errs)
			if err := errs.Err(); err != nil {
				t.Fatal(err)
			}
			if got := p.Allows(tt.s); got != tt.want {
				t.Errorf("Allows(%+v) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	var errs sdk.ConfigErrors
	Parse(sdk.Config{"expn": true, "expn_networks": []string{"10.0.0.0/8", "10.0.0.0/33", "intranet"}}, &errs)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		`config: expn_networks: "10.0.0.0/33" is not a network such as "10.0.0.0/8" or an IP`,
		`config: expn_networks: "intranet" is not a network such as "10.0.0.0/8" or an IP`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestAddress(t *testing.T) {
	tests := []struct{ arg, domain, want string }{
		{"team@example.test", "", "team@example.test"},
		{"  <team@example.test>  ", "", "team@example.test"},
		{"Team <team@example.test>", "", "team@example.test"},
		{"team", "example.test", "team@example.test"},
		{"<team>", "example.test", "team@example.test"},
		{"team", "", "team"},
		{"team@other.test", "example.test", "team@other.test"},
		{"", "example.test", ""},
		{"<", "", "<"},
	}
	for _, tt := range tests {
		if got := Address(tt.arg, tt.domain); got != tt.want {
			t.Errorf("Address(%q, %q) = %q, want %q", tt.arg, tt.domain, got, tt.want)
		}
	}
}
