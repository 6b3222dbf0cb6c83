package config

import (
	"strings"
	"testing"
)

func TestNormalizeDomain(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "example.test", want: "example.test"},
		{in: "Example.TEST.", want: "example.test"},
		{in: "localhost", want: "localhost"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "a-b.c1", want: "a-b.c1"},
		{in: "", err: "empty"},
		{in: ".", err: "empty"},
		{in: "a..b", err: "empty label"},
		{in: "-a.test", err: "hyphen"},
		{in: "a-.test", err: "hyphen"},
		{in: "a_b.test", err: `character '_'`},
		{in: "bücher.example", err: "xn--"},
		{in: "192.0.2.1", err: "IP address"},
		{in: "::1", err: "IP address"},
		{in: strings.Repeat("a", 64) + ".test", err: "longer than 63"},
		{in: strings.Repeat("a.", 127) + "ab", err: "longer than 253"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeDomain(tt.in)
			switch {
			case tt.err == "" && (err != nil || got != tt.want):
				t.Errorf("normalizeDomain(%q): got %q, %v; want %q, nil", tt.in, got, err, tt.want)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("normalizeDomain(%q): got %q, %v; want an error about %q", tt.in, got, err, tt.err)
			}
		})
	}
}

func TestCheckHostPort(t *testing.T) {
	tests := []struct {
		in     string
		listen bool
		err    string // "" for valid
	}{
		{"127.0.0.1:25", false, ""},
		{"[::1]:25", false, ""},
		{"mx.example.test:2525", false, ""},
		{"127.0.0.1:0", true, ""},
		{":2525", true, ""},
		{"127.0.0.1:0", false, "port 0"},
		{":25", false, "host is empty"},
		{"127.0.0.1", true, "want host:port"},
		{"::1:25", true, "want host:port"},
		{"127.0.0.1:smtp", true, `port "smtp"`},
		{"127.0.0.1:65536", true, `port "65536"`},
		{"mx_1.test:25", true, "neither an IP address nor a domain name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := checkHostPort(tt.in, tt.listen)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("checkHostPort(%q, %v): got %v, want nil", tt.in, tt.listen, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("checkHostPort(%q, %v): got %v, want an error about %q", tt.in, tt.listen, err, tt.err)
			}
		})
	}
}

func TestParseNetwork(t *testing.T) {
	good := map[string]string{
		"127.0.0.0/8":   "127.0.0.0/8",
		"10.1.2.3/8":    "10.0.0.0/8",
		"192.0.2.7":     "192.0.2.7/32",
		"::1":           "::1/128",
		"2001:db8::/32": "2001:db8::/32",
		"0.0.0.0/0":     "0.0.0.0/0",
	}
	for in, want := range good {
		p, err := parseNetwork(in)
		if err != nil || p.String() != want {
			t.Errorf("parseNetwork(%q): got %v, %v; want %s, nil", in, p, err, want)
		}
	}
	for _, in := range []string{"", "localhost", "10.0.0.0/33", "10.0.0/8", "fe80::1%eth0", "1.2.3.4/-1"} {
		if p, err := parseNetwork(in); err == nil {
			t.Errorf("parseNetwork(%q): got %v, nil; want an error", in, p)
		}
	}
}

func TestResolverAddress(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "192.0.2.53", want: "192.0.2.53:53"},
		{in: "127.0.0.1:5353", want: "127.0.0.1:5353"},
		{in: "::1", want: "[::1]:53"},
		{in: "[2001:DB8::53]:053", want: "[2001:db8::53]:53"},
		{in: "dns.example.test:53", err: "not an IP address"},
		{in: "127.0.0.1:0", err: "from 1 to 65535"},
		{in: "127.0.0.1:dns", err: "from 1 to 65535"},
		{in: "[::1]", err: "want an IP address or ip:port"},
		{in: "", err: "want an IP address or ip:port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := resolverAddress(tt.in)
			switch {
			case tt.err == "" && (err != nil || got != tt.want):
				t.Errorf("resolverAddress(%q): got %q, %v; want %q, nil", tt.in, got, err, tt.want)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("resolverAddress(%q): got %q, %v; want an error about %q", tt.in, got, err, tt.err)
			}
		})
	}
}

func TestNormalizeMailbox(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "postmaster@example.test", want: "postmaster@example.test"},
		{in: "Bounces+x@Mail.Example.TEST", want: "Bounces+x@mail.example.test"},
		{in: `"a b"@example.test`, want: `"a b"@example.test`},
		{in: "postmaster", err: `"@"`},
		{in: "@example.test", err: ""},
		{in: "a@[192.0.2.1]", err: "address literal"},
		{in: "zoë@example.test", err: "not ASCII"},
		{in: "a@exa_mple.test", err: ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeMailbox(tt.in)
			wantErr := tt.want == ""
			switch {
			case !wantErr && (err != nil || got != tt.want):
				t.Errorf("normalizeMailbox(%q): got %q, %v; want %q, nil", tt.in, got, err, tt.want)
			case wantErr && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("normalizeMailbox(%q): got %q, %v; want an error about %q", tt.in, got, err, tt.err)
			}
		})
	}
}
