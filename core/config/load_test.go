package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current results")

// goldenHostname is the machine's name as the golden tests see it, so that
// minimal.golden does not depend on the machine.
const goldenHostname = "default-hostname.test"

// TestGolden loads every testdata/*.hcl and compares the result with the
// matching .golden file: the Config as indented JSON, or the exact text of
// the *Error. Run with -update to rewrite the golden files.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.hcl")
	}
	p := parser{hostname: func() (string, error) { return goldenHostname, nil }}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".hcl")
		t.Run(name, func(t *testing.T) {
			var got string
			cfg, err := p.load(in)
			if err != nil {
				var cerr *Error
				if !errors.As(err, &cerr) {
					t.Fatalf("load(%q) error is a %T, want *config.Error: %v", in, err, err)
				}
				got = err.Error() + "\n"
			} else {
				b, err := json.MarshalIndent(cfg, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got = string(b) + "\n"
			}
			golden := strings.TrimSuffix(in, ".hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("load(%q) differs from %s (-want +got):\n%s", in, golden, diff)
			}
		})
	}
}

// TestLoadExample loads the issue's example through the public API and
// checks the values the other packages read first.
func TestLoadExample(t *testing.T) {
	cfg, err := Load("testdata/example.hcl")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Hostname: "mx.example.test",
		DataDir:  "/tmp/gw-data",
		Log:      Log{Level: "info", Format: "text"},
		Listeners: []Listener{{
			Name:                "mx",
			Address:             "127.0.0.1:2525",
			MaxMessageSize:      25 << 20,
			MaxRecipients:       100,
			MaxLineLength:       2048,
			MaxHeaderSize:       256 << 10,
			MaxConnections:      1000,
			MaxConnectionsPerIP: 50,
			MaxErrors:           20,
			BareLineEndings:     "reject",
			MaxHops:             50,
			Timeouts:            Timeouts{Command: 5 * time.Minute, DataBlock: 3 * time.Minute, Message: 10 * time.Minute},
		}},
		Domains: []string{"example.test"},
		Relay:   Relay{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Authenticated: true},
		Auth:    Auth{Users: map[string]string{"alice": "$2a$10$…"}, FailureLimit: 5, Lockout: 15 * time.Minute, FailureDelay: 2 * time.Second},
		Delivery: Delivery{
			Routes: []Route{{Domain: "example.test", Via: "127.0.0.1:2626", Transport: "smtp",
				TransportRange: Range{Filename: "testdata/example.hcl", Line: 24}}},
			Port:                    25,
			TLS:                     "opportunistic",
			Chunking:                "binarymime",
			MaxConnections:          100,
			MaxConnectionsPerDomain: 20,
			Retry:                   []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour},
			MaxLifetime:             5 * 24 * time.Hour,
			DelayWarning:            4 * time.Hour,
			ConnectTimeout:          30 * time.Second,
			CommandTimeout:          5 * time.Minute,
			DeadHostTTL:             30 * time.Second,
			TLSSessions:             1000,
			MTASTS:                  true,
			DANE:                    true,
		},
		Admin:           Admin{Address: "127.0.0.1:8025"},
		ShutdownTimeout: 30 * time.Second,
		File:            "testdata/example.hcl",
	}
	if diff := cmp.Diff(want, cfg, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Load(testdata/example.hcl) (-want +got):\n%s", diff)
	}
}

// TestRootGatewayHCL loads the gateway.hcl a newcomer runs with and checks
// what its comments promise rather than its values, which they invite a
// reader to change: it runs without root (every address on loopback, on a
// port above 1024), it is not an open relay, and mail to each local domain
// lands in a Maildir under the data folder, where the reader can see it.
func TestRootGatewayHCL(t *testing.T) {
	path := filepath.Join("..", "..", "gateway.hcl")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%q): %v", path, err)
	}
	addrs := map[string]string{"admin": cfg.Admin.Address, "inject": cfg.Inject.Address}
	for _, l := range cfg.Listeners {
		addrs["listener "+l.Name] = l.Address
	}
	for name, addr := range addrs {
		if addr == "" && !strings.HasPrefix(name, "listener") {
			continue // off
		}
		if err := unprivilegedLoopback(addr); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, n := range cfg.Relay.Networks {
		if !slices.ContainsFunc(loopback, func(l netip.Prefix) bool { return l.Contains(n.Addr()) && n.Bits() >= l.Bits() }) {
			t.Errorf("relay network %s: want only loopback networks, so that the gateway is not an open relay", n)
		}
	}
	if len(cfg.Domains) == 0 {
		t.Error("no local domains: a first message has nowhere to go")
	}
	for _, domain := range cfg.Domains {
		i := slices.IndexFunc(cfg.Delivery.Routes, func(r Route) bool { return r.Domain == domain })
		if i < 0 {
			t.Errorf("local domain %q: no route, so its mail goes to DNS", domain)
			continue
		}
		r := cfg.Delivery.Routes[i]
		if rel, err := filepath.Rel(cfg.DataDir, r.Path); r.Transport != "maildir" || err != nil || !filepath.IsLocal(rel) {
			t.Errorf("local domain %q: route %+v; want a Maildir under the data folder %s", domain, r, cfg.DataDir)
		}
	}
}

// unprivilegedLoopback checks that addr is a loopback host:port that needs
// no root: a port above 1024 and below 65536.
func unprivilegedLoopback(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want a loopback IP and port: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() || ap.Port() <= 1024 {
		return fmt.Errorf("address %q: want loopback and a port above 1024", addr)
	}
	return nil
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing file): got %v, want an error wrapping fs.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("Load(missing file): got %q, want the config: prefix", err)
	}
}

// TestParseRelativePaths checks that Parse resolves data_dir and TLS files
// against the folder of the file name it is given, and leaves File empty.
func TestParseRelativePaths(t *testing.T) {
	src := []byte(`
hostname = "mx.example.test"
listener "mx" {
  address = "127.0.0.1:0"
  tls {
    cert = "tls/cert.pem"
    key  = "` + mustAbs(t, "testdata/tls/key.pem") + `"
  }
}
`)
	cfg, err := Parse(src, "testdata/in-memory.hcl")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.File != "" {
		t.Errorf("File: got %q, want empty", cfg.File)
	}
	if got, want := cfg.DataDir, filepath.Join("testdata", "data"); got != want {
		t.Errorf("DataDir: got %q, want %q", got, want)
	}
	if got, want := cfg.Listeners[0].TLS.Cert, filepath.Join("testdata", "tls", "cert.pem"); got != want {
		t.Errorf("TLS.Cert: got %q, want %q", got, want)
	}
	if got, want := cfg.Listeners[0].TLS.Key, mustAbs(t, "testdata/tls/key.pem"); got != want {
		t.Errorf("TLS.Key (absolute): got %q, want %q", got, want)
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestErrorDiagnostics checks that callers can reach the positions.
func TestErrorDiagnostics(t *testing.T) {
	_, err := Parse([]byte("listener \"mx\" {\n  adress = \"127.0.0.1:25\"\n}\n"), "gateway.hcl")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Parse: got %v (%T), want a *config.Error", err, err)
	}
	want := `gateway.hcl:2:3: Unsupported argument; An argument named "adress" is not expected here. Did you mean "address"?`
	if got := err.Error(); got != want {
		t.Errorf("Error():\ngot  %s\nwant %s", got, want)
	}
	if n := len(cerr.Diagnostics); n != 1 {
		t.Fatalf("got %d diagnostics, want 1", n)
	}
	if got := cerr.Diagnostics[0].Subject.Start; got.Line != 2 || got.Column != 3 {
		t.Errorf("diagnostic position: got %d:%d, want 2:3", got.Line, got.Column)
	}
}

func TestErrorFormat(t *testing.T) {
	at := &hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: 3, Column: 7}, End: hcl.Pos{Line: 3, Column: 9}}
	tests := []struct {
		name string
		diag *hcl.Diagnostic
		want string
	}{
		{"summary and detail", &hcl.Diagnostic{Summary: "Bad", Detail: "Why.", Subject: at}, "f.hcl:3:7: Bad; Why."},
		{"no detail", &hcl.Diagnostic{Summary: "Bad", Subject: at}, "f.hcl:3:7: Bad"},
		{"no position", &hcl.Diagnostic{Summary: "Bad", Detail: "Why."}, "Bad; Why."},
		{"detail on lines", &hcl.Diagnostic{Summary: "Bad", Detail: "One\ntwo.", Subject: at}, "f.hcl:3:7: Bad; One two."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := (&Error{Diagnostics: hcl.Diagnostics{tt.diag}}).Error()
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefaultHostname(t *testing.T) {
	tests := []struct {
		name string
		host string
		err  error
		want string
	}{
		{"machine name", "Mail.Example.TEST.", nil, "mail.example.test"},
		{"single label", "box", nil, "box"},
		{"not a domain name", "my_box", nil, "localhost"},
		{"empty", "", nil, "localhost"},
		{"error", "box", errors.New("no name"), "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := defaultHostname(tt.host, tt.err); got != tt.want {
				t.Errorf("defaultHostname(%q, %v): got %q, want %q", tt.host, tt.err, got, tt.want)
			}
		})
	}
}

func TestMaxHops(t *testing.T) {
	tests := []struct {
		hops []int // each listener's max_hops
		want int
	}{
		{nil, defaultMaxHops},
		{[]int{10}, 10},
		{[]int{10, 80, 30}, 80},
	}
	for _, tt := range tests {
		var c Config
		for _, h := range tt.hops {
			l := DefaultListener("l")
			l.MaxHops = h
			c.Listeners = append(c.Listeners, l)
		}
		if got := c.MaxHops(); got != tt.want {
			t.Errorf("MaxHops with listeners %v = %d; want %d", tt.hops, got, tt.want)
		}
	}
}

// TestLoadSettings: LoadSettings (gateway sendmail, run by any user)
// opens none of the files the configuration names, which may be the
// server's alone, and still gives the settings; Load refuses them.
func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	src := `hostname = "mx.test"
data_dir = "data"
listener "mx" {
  address          = "127.0.0.1:25"
  max_message_size = "1MB"
  tls {
    cert = "cert.pem"
    key  = "key.pem"
  }
}
delivery {
  route "*" {
    via = "smtp.provider.example:587"
    auth {
      username      = "gw"
      password_file = "smarthost.pass"
    }
  }
}
dkim "example.test" {
  selector = "s1"
  key_file = "dkim.pem"
}
admin { address = "127.0.0.1:8025" }
inject {
  address    = "127.0.0.1:8026"
  token_file = "inject.token"
}
plugin "aliases" { path = "bin/aliases" }
lua "relay" { path = "relay.lua" }
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("Load: %v, want the missing files named", err)
	}
	cfg, err := LoadSettings(path)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if cfg.Hostname != "mx.test" || cfg.DataDir != filepath.Join(dir, "data") || l.MaxMessageSize != 1<<20 ||
		cfg.Admin.Address != "127.0.0.1:8025" || l.TLS == nil || l.TLS.Key != filepath.Join(dir, "key.pem") {
		t.Errorf("settings: hostname %q data_dir %q size %d admin %q tls %+v", cfg.Hostname, cfg.DataDir,
			l.MaxMessageSize, cfg.Admin.Address, l.TLS)
	}
	if cfg.Inject.Token != "" || cfg.DKIM[0].Key != nil {
		t.Errorf("a secret was read: token %q, DKIM key %v", cfg.Inject.Token, cfg.DKIM[0].Key)
	}
}

// TestIssueListeners loads the issue's listener blocks as written, in a
// folder with cert.pem and key.pem: the tls block of the issue has three
// arguments on one line, which HCL refuses (a one-line block holds one
// argument) with a diagnostic at its position; on several lines it loads.
func TestIssueListeners(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, err := os.ReadFile(filepath.Join("testdata", "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const mx = `listener "mx" {
  address        = "0.0.0.0:25"
  proxy_protocol = ["10.0.0.5/32"]
}
`
	oneLine := mx + `listener "smtps" {
  address = "0.0.0.0:465"
  tls { cert = "cert.pem"  key = "key.pem"  implicit = true }
  auth_required = true
}
`
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(oneLine), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + ":7:28: Invalid single-argument block definition"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load(one-line tls block) = %v, want an error starting %q", err, want)
	}

	severalLines := strings.Replace(oneLine, `tls { cert = "cert.pem"  key = "key.pem"  implicit = true }`,
		"tls {\n    cert = \"cert.pem\"\n    key = \"key.pem\"\n    implicit = true\n  }", 1)
	if err := os.WriteFile(path, []byte(severalLines), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(cfg.Listeners) != 2 {
		t.Fatalf("%d listeners, want 2", len(cfg.Listeners))
	}
	if got, want := cfg.Listeners[0].ProxyProtocol, []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32")}; !slices.Equal(got, want) {
		t.Errorf("mx proxy_protocol = %v, want %v", got, want)
	}
	if cfg.Listeners[0].TLS != nil {
		t.Errorf("mx tls = %+v, want none", cfg.Listeners[0].TLS)
	}
	smtps := cfg.Listeners[1]
	wantTLS := &TLS{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Implicit: true}
	if diff := cmp.Diff(wantTLS, smtps.TLS); diff != "" || !smtps.AuthRequired || smtps.ProxyProtocol != nil {
		t.Errorf("smtps: tls (-want +got):\n%s auth_required %v, proxy_protocol %v", diff, smtps.AuthRequired, smtps.ProxyProtocol)
	}
}
