package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "100B", "512KB", "25MB", "1GiB", "25 mb", "1.5MB", "-1", "9223372036854775807", "8589934592GB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Errorf("ParseSize(%q) = %d, want >= 0", s, n)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "30s", "1h30m", "-5m", "5d", "1d12h", "-1d", "1.5d", "12h1d", "106751d23h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDuration(s)
		if strings.Contains(s, "d") {
			return
		}
		// Without days it is time.ParseDuration.
		want, werr := time.ParseDuration(s)
		if (err == nil) != (werr == nil) || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; time.ParseDuration gives %v, %v", s, got, err, want, werr)
		}
	})
}

// FuzzParse checks that any input gives a Config or an *Error, never a
// panic or another error type.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`listener "mx" { address = "127.0.0.1:0" }`,
		"listener \"mx\" {\n  address = \"127.0.0.1:0\"\n  max_recipients = \"many\"\n}\n",
		"domains = [\"a.test\", 1]\nrelay { networks = [\"::1\"] }\nauth { users = { a = \"$2a$\" } }\n",
		"delivery {\n route \"*\" { via = \"h:25\" }\n}\nadmin { address = \":0\" }\n",
		"listener \"mx\" {\n",
		"pipeline = [\"lua.a\"]\nlua \"a\" {\n path = \"x.lua\"\n params = { n = 1.5, l = [1, {a = null}] }\n match { stage = [\"rcpt\"] }\n}\n",
		"cluster {\n node = \"gw1\"\n nats_urls = [\"nats://127.0.0.1:4222\", \"tls://h\"]\n replicas = 3\n takeover_after = \"30s\"\n tls { ca = \"c\" }\n}\n",
	} {
		f.Add([]byte(s))
	}
	p := parser{hostname: func() (string, error) { return goldenHostname, nil }}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := p.parse(src, "fuzz.hcl")
		var cerr *Error
		switch {
		case err == nil && (cfg == nil || len(cfg.Listeners) == 0):
			t.Errorf("Parse(%q): no error and no listener", src)
		case err != nil && !errors.As(err, &cerr):
			t.Errorf("Parse(%q): error %T, want *config.Error: %v", src, err, err)
		}
	})
}
