package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/arc"
	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/mailauth/mailauthtest"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestARCForwarding: mail from outside that the gateway forwards to
// another system is sealed with arc_seal's key (i=1, cv=none, our
// results as its ARC-Authentication-Results); when that sealed message
// comes back in, its chain verifies (arc=pass in our results) and the
// next seal says i=2, cv=pass. Both chains verify with the ARC verifier
// against the DNS server; core/arc's own tests check it against dkimpy.
func TestARCForwarding(t *testing.T) {
	mailauthtest.NeedDkimpy(t)
	signer := mailauthtest.RSA(t, "s1", "signed.test")
	w := newARCWorld(t, 2048, signer.Record)
	key, keyFile, dns, spool := w.key, w.keyFile, w.dns, w.spool
	keysJSON, _ := json.Marshal(map[string]string{"arc._domainkey.fwd.test": key.Record(), "s2._domainkey.lists.test": key.Record()})
	keys := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(keys, keysJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, w.config(""))

	r, err := resolver.New(resolver.Options{Servers: []string{dns.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	signed := signer.Sign(t, "From: Alice <alice@signed.test>\nTo: bob@example.test\nSubject: minutes\n\nAttached.\n")
	forwarded := func(n int) string {
		t.Helper()
		if !gatewaytest.Eventually(10*time.Second, func() bool { return len(spool.Messages()) == n }) {
			t.Fatalf("the next hop has %d messages, want %d", len(spool.Messages()), n)
		}
		return string(spool.Messages()[n-1].Body)
	}
	check := func(msg string, sets int, cv string) {
		t.Helper()
		if want := fmt.Sprintf("ARC-Seal: i=%d; a=rsa-sha256; cv=%s; d=fwd.test; s=arc;", sets, cv); !strings.HasPrefix(msg, want) {
			t.Errorf("forwarded message starts %q, want %q", msg[:min(len(msg), 80)], want)
		}
		res, err := arc.Verify(context.Background(), []byte(msg), r.TXT)
		if err != nil || res.Status != arc.Pass || len(res.Sets) != sets {
			t.Fatalf("arc.Verify = %s (%s), %d sets, %v; want pass with %d", res.Status, res.Reason, len(res.Sets), err, sets)
		}
		if aar := res.Sets[sets-1].AuthResults; !strings.HasPrefix(aar, "mx.example.test; spf=") || !strings.Contains(aar, "dkim=pass") {
			t.Errorf("our set's ARC-Authentication-Results = %q, want our results", aar)
		}
	}

	if got := sendOutside(t, g, "bounce@fail.test", signed); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("reply %q", got)
	}
	first := forwarded(1)
	check(first, 1, "none")

	// The sealed message comes back (a list that forwards to us again).
	if got := sendOutside(t, g, "bounce@fail.test", strings.ReplaceAll(first, "\r\n", "\n")); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("reply %q", got)
	}
	second := forwarded(2)
	check(second, 2, "pass")
	if !strings.Contains(second, "arc=pass") {
		t.Errorf("our results on the second pass do not say arc=pass:\n%s", second)
	}
	if got := dkimpyARC(t, []string{"verify", keys}, []string{first, second}); got != `[{"cv": "pass", "reason": "success"}, {"cv": "pass", "reason": "success"}]` {
		t.Errorf("dkimpy's arc_verify of our seals: %s", got)
	}

	// A chain dkimpy sealed (a list at lists.test) passes here; the same
	// with its seal broken fails.
	theirs := dkimpyARC(t, []string{"sign", keys, "s2", "lists.test", keyFile, "lists.test"},
		[]string{"Authentication-Results: lists.test; spf=pass smtp.mailfrom=alice@signed.test\r\n" + signed})
	seal := strings.Index(theirs, "ARC-Seal: ")
	b := strings.Index(theirs[max(seal, 0):], " b=")
	if seal < 0 || b < 0 {
		t.Fatalf("dkimpy's message has no ARC-Seal with b=:\n%s", theirs)
	}
	at := seal + b + len(" b=")
	broken := theirs[:at] + "AAAA" + theirs[at:] // its signature, changed

	for i, tt := range []struct{ msg, want string }{{theirs, "arc=pass"}, {broken, "arc=fail"}} {
		if got := sendOutside(t, g, "bounce@fail.test", strings.ReplaceAll(tt.msg, "\r\n", "\n")); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("reply %q", got)
		}
		if out := forwarded(3 + i); !strings.Contains(out, tt.want) {
			t.Errorf("our results for dkimpy's chain (%s) do not say %s:\n%s", []string{"intact", "broken"}[i], tt.want, out[:min(len(out), 600)])
		}
	}
}

// dkimpyARC runs core/arc's dkimpy script: "sign" with the message as its
// input, or "verify" with the messages as a JSON list.
func dkimpyARC(t *testing.T, args []string, msgs []string) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{filepath.Join("..", "arc", "testdata", "dkimpy_arc.py")}, args...)...)
	if args[0] == "sign" {
		cmd.Stdin = strings.NewReader(msgs[0])
	} else {
		in, _ := json.Marshal(msgs)
		cmd.Stdin = bytes.NewReader(in)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy %s: %v\n%s", args[0], err, stderr.String())
	}
	if args[0] == "sign" {
		return string(out)
	}
	return strings.TrimSpace(string(out))
}

// TestARCSealAfterReload: a reload that changes authserv_id (applied only
// by a restart) does not make our key seal an outsider's results that
// carry the new id: the seal always carries the results our checks wrote
// (a review found a forged field sealed after such a reload).
func TestARCSealAfterReload(t *testing.T) {
	w := newARCWorld(t, 1024, "")
	spool, config := w.spool, w.config
	path := gatewaytest.WriteConfig(t, config(""))
	g := gatewaytest.StartFile(t, path)
	if err := os.WriteFile(path, []byte(config(`authserv_id = "mx2.example.test"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	forged := "Authentication-Results: mx2.example.test; spf=pass smtp.mailfrom=ceo@bank.test; dkim=pass header.d=bank.test; dmarc=pass header.from=bank.test; arc=none\n"
	if got := sendOutside(t, g, "x@pass.test", forged+"From: a@pass.test\nSubject: hi\n\nhello\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("reply %q", got)
	}
	if !gatewaytest.Eventually(10*time.Second, func() bool { return len(spool.Messages()) == 1 }) {
		t.Fatal("nothing forwarded")
	}
	out := string(spool.Messages()[0].Body)
	aar, _, _ := strings.Cut(out[strings.Index(out, "ARC-Authentication-Results:")+1:], "\r\nAuthentication-Results")
	if !strings.HasPrefix(out, "ARC-Seal: i=1;") || !strings.Contains(aar, "mx.example.test;") || strings.Contains(aar, "bank.test") {
		t.Errorf("forwarded with the seal over the wrong results:\n%s", out)
	}
}

// arcWorld is a gateway's surroundings for ARC: an RSA key sealing as
// fwd.test (selector arc, also published as s2._domainkey.lists.test), a
// DNS server with authZone and those records, and the next hop that
// example.test is routed to.
type arcWorld struct {
	key      *dkim.Key
	keyFile  string
	dns      *resolvertest.Server
	spool    *smtptest.MemorySpool
	sinkAddr string
}

func newARCWorld(t *testing.T, bits int, zone string) *arcWorld {
	t.Helper()
	key, err := dkim.GenerateKey("rsa", bits)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := key.PEM()
	if err != nil {
		t.Fatal(err)
	}
	w := &arcWorld{key: key, keyFile: filepath.Join(t.TempDir(), "fwd.pem"), spool: &smtptest.MemorySpool{}}
	if err := os.WriteFile(w.keyFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	w.dns = resolvertest.Start(t, authZone+zone+"\n"+key.TXT("arc", "fwd.test")+"\n"+key.TXT("s2", "lists.test")+"\n")
	w.sinkAddr, _ = smtptest.StartServer(t, smtp.Options{Spool: w.spool, RelayNetworks: []netip.Prefix{smtptest.Loopback()}})
	return w
}

// config is a gateway that checks mail from outside, seals with
// fwd.test's key and routes example.test to the next hop; extra goes
// into its authentication block.
func (w *arcWorld) config(extra string) string {
	return fmt.Sprintf(`
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
relay { networks = ["127.0.0.2/32"] }
dkim "fwd.test" {
  selector = "arc"
  key_file = %q
}
authentication {
  arc      = true
  arc_seal = "fwd.test"
  %s
}
delivery {
  resolver = %q
  route "example.test" {
    via = %q
    tls = "none"
  }
}
`, w.keyFile, extra, w.dns.Addr(), w.sinkAddr)
}
