// Package mailauthtest signs test messages with an independent DKIM
// implementation, Debian's dkimpy (python3-dkim, with python3-nacl for
// Ed25519), run as /usr/bin/python3, and makes the keys and the DNS
// records (zone-file lines for core/resolver/resolvertest) that go with
// them.
package mailauthtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

//go:embed dkimpy_sign.py
var signScript []byte

// Python is the interpreter that sees Debian's python3-dkim.
const Python = "/usr/bin/python3"

// NeedDkimpy skips the test when dkimpy (python3-dkim, python3-nacl) is
// missing.
func NeedDkimpy(t testing.TB) {
	t.Helper()
	if err := exec.Command(Python, "-c", "import dkim, nacl").Run(); err != nil {
		t.Skip("needs /usr/bin/python3 with python3-dkim and python3-nacl (Debian packages): ", err)
	}
}

// Signer is a DKIM key of Domain under Selector, for dkimpy.
type Signer struct {
	Domain, Selector string
	// Record is the key's zone-file line, in 255-octet strings.
	Record  string
	keyFile string
	alg     string
}

// RSA makes a 2048-bit RSA key (rsa-sha256).
func RSA(t testing.TB, selector, domain string) Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return Signer{Domain: domain, Selector: selector, Record: record(selector, domain, "rsa", pub),
		keyFile: write(t, "rsa.pem", pemKey), alg: "rsa-sha256"}
}

// Ed25519 makes an Ed25519 key (ed25519-sha256, RFC 8463).
func Ed25519(t testing.TB, selector, domain string) Signer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seed := []byte(base64.StdEncoding.EncodeToString(priv.Seed())) // as dkimpy reads it
	return Signer{Domain: domain, Selector: selector, Record: record(selector, domain, "ed25519", pub),
		keyFile: write(t, "ed25519.key", seed), alg: "ed25519-sha256"}
}

func write(t testing.TB, name string, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// record is the zone line of a DKIM key record.
func record(selector, domain, k string, pub []byte) string {
	v := "v=DKIM1; k=" + k + "; p=" + base64.StdEncoding.EncodeToString(pub)
	var parts []string
	for len(v) > 255 {
		parts, v = append(parts, `"`+v[:255]+`"`), v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	return fmt.Sprintf("%s._domainkey.%s. 300 IN TXT %s\n", selector, domain, strings.Join(parts, " "))
}

// Sign has dkimpy sign msg (relaxed/relaxed, From, To, Subject and Date;
// LF line ends become CRLF) and returns the signed message.
func (s Signer) Sign(t testing.TB, msg string) string {
	t.Helper()
	script := write(t, "dkimpy_sign.py", signScript)
	cmd := exec.Command(Python, script, s.Selector, s.Domain, s.keyFile, s.alg)
	cmd.Stdin = strings.NewReader(CRLF(msg))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.Bytes())
	}
	return string(out)
}

// CRLF makes every line end of s CRLF.
func CRLF(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// HeaderB is header.b (RFC 6008) of the first signature in a signed
// message: the first 8 characters of its b= tag.
func HeaderB(signed string) string {
	_, after, _ := strings.Cut(signed, " b=")
	b := strings.NewReplacer(" ", "", "\t", "", "\r", "", "\n", "").Replace(after)
	return b[:min(len(b), 8)]
}
