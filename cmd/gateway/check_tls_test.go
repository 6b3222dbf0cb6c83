package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestCheckECDSACertNamesItsLine: check prints "every problem ... each as
// file:line:column" (runCheck's doc), and a listener's ecdsa_cert that is
// not an ECDSA pair (an Ed25519 one here) is a problem of the file that
// only check finds: the decoder has only made sure the files can be read.
// Its diagnostic names the config file but not where ecdsa_cert is in it
// ("gateway.hcl: listener "mx": tls: ecdsa_cert ...: its key is
// ed25519.PrivateKey, not an ECDSA key"), unlike every other problem of
// the file. (cert and key, which came before, are checked the same way.)
func TestCheckECDSACertNamesItsLine(t *testing.T) {
	dir := t.TempDir()
	cert, key := smtptest.WriteCertificate(t, dir)
	edCert, edKey := writeEd25519Certificate(t, dir)
	config, src := writeECDSAListenerConfig(t, dir, cert, key, edCert, edKey)
	code, _, errOut := runCLI(t, "check", "-config", config)
	line := 1 + strings.Count(src[:strings.Index(src, "ecdsa_cert")], "\n")
	if want := fmt.Sprintf("%s:%d:", config, line); code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "not an ECDSA key") {
		t.Errorf("check: code %d, stderr %q; want 1, the key's type, at %s", code, errOut, want)
	}
}

// writeEd25519Certificate writes a self-signed Ed25519 certificate and its
// key as ed-cert.pem and ed-key.pem in dir.
func writeEd25519Certificate(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return smtptest.WriteKeyPair(t, dir, "ed", priv)
}

// TestCheckMissingECDSAKeyOnce: an ecdsa_key that cannot be read is one
// problem, reported once, at its line. check reports it and then, as it
// loads the certificates of a listener whose cert and key exist (not
// minding the ECDSA pair's), a second one with no file name in it:
// "listener "mx": tls: ecdsa_cert: open : no such file or directory".
func TestCheckMissingECDSAKeyOnce(t *testing.T) {
	dir := t.TempDir()
	cert, key := smtptest.WriteCertificate(t, dir)
	config, src := writeECDSAListenerConfig(t, dir, cert, key, cert, "missing-key.pem")
	code, _, errOut := runCLI(t, "check", "-config", config)
	line := 1 + strings.Count(src[:strings.Index(src, "missing-key.pem")], "\n")
	if want := fmt.Sprintf("%s:%d:", config, line); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("check: code %d, stderr %q; want 1 and the problem at %s", code, errOut, want)
	}
	if n := strings.Count(strings.TrimSpace(errOut), "\n") + 1; n != 1 {
		t.Errorf("check printed %d problems, want 1:\n%s", n, errOut)
	}
}

// writeECDSAListenerConfig writes dir/gateway.hcl with one listener whose
// tls block names the four files, and returns its path and text.
func writeECDSAListenerConfig(t *testing.T, dir, cert, key, ecdsaCert, ecdsaKey string) (path, src string) {
	t.Helper()
	path = filepath.Join(dir, "gateway.hcl")
	src = fmt.Sprintf(`hostname = "mx.test"
data_dir = %q
listener "mx" {
  address = "127.0.0.1:0"
  tls {
    cert       = %q
    key        = %q
    ecdsa_cert = %q
    ecdsa_key  = %q
  }
}
domains = ["example.test"]
`, filepath.Join(dir, "data"), cert, key, ecdsaCert, ecdsaKey)
	writeFile(t, path, src)
	return path, src
}
