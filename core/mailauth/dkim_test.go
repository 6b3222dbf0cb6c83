package mailauth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/mailauth"
)

// needDkimpy skips a test when Debian's python3-dkim is missing.
func needDkimpy(t testing.TB) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		t.Skip("needs /usr/bin/python3 with python3-dkim and python3-nacl (Debian packages): ", err)
	}
}

// signer is a DKIM key for dkimpy, with its DNS record.
type signer struct {
	keyFile, alg, record string
}

// rsaSigner makes an RSA key and its record "<selector>._domainkey.<domain>".
func rsaSigner(t testing.TB, selector, domain string) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "rsa.pem")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(f, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	return signer{keyFile: f, alg: "rsa-sha256", record: txtRecord(selector, domain, "rsa", pub)}
}

// edSigner makes an Ed25519 key (RFC 8463) and its record.
func edSigner(t testing.TB, selector, domain string) signer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "ed.key")
	if err := os.WriteFile(f, []byte(base64.StdEncoding.EncodeToString(priv.Seed())), 0o600); err != nil {
		t.Fatal(err)
	}
	return signer{keyFile: f, alg: "ed25519-sha256", record: txtRecord(selector, domain, "ed25519", pub)}
}

// txtRecord is the zone line of a DKIM key record, in 255-octet strings.
func txtRecord(selector, domain, k string, pub []byte) string {
	v := "v=DKIM1; k=" + k + "; p=" + base64.StdEncoding.EncodeToString(pub)
	var parts []string
	for len(v) > 255 {
		parts, v = append(parts, `"`+v[:255]+`"`), v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	return fmt.Sprintf("%s._domainkey.%s. 300 IN TXT %s\n", selector, domain, strings.Join(parts, " "))
}

// sign has dkimpy sign msg (CRLF line ends) for domain with selector.
func (s signer) sign(t testing.TB, selector, domain, msg string) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "testdata/dkimpy_sign.py", selector, domain, s.keyFile, s.alg)
	cmd.Stdin = strings.NewReader(crlf(msg))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.Bytes())
	}
	return string(out)
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

const plain = `From: Alice <alice@signed.test>
To: bob@example.test
Subject: hello
Date: Sun, 06 Dec 2026 10:00:00 +0000

Hello Bob.
`

// headerB is header.b of the signature in a signed message.
func headerB(signed string) string {
	_, after, _ := strings.Cut(signed, " b=")
	b := strings.NewReplacer(" ", "", "\t", "", "\r", "", "\n", "").Replace(after)
	return b[:8]
}

// TestDKIMDkimpy verifies messages dkimpy signed with rsa-sha256 and
// ed25519-sha256, and fails them once the body changed.
func TestDKIMDkimpy(t *testing.T) {
	needDkimpy(t)
	rsaK, edK := rsaSigner(t, "r1", "signed.test"), edSigner(t, "e1", "signed.test")
	w := newWorld(t, rsaK.record+edK.record)
	c := w.checker(t, mailauth.DMARCEnforce, true)
	for _, tc := range []struct {
		name string
		k    signer
		sel  string
	}{{"rsa-sha256", rsaK, "r1"}, {"ed25519-sha256", edK, "e1"}} {
		t.Run(tc.name, func(t *testing.T) {
			signed := tc.k.sign(t, tc.sel, "signed.test", plain)
			// SPF fails (fail.test allows 192.0.2.1 only): DMARC passes by DKIM alone.
			v := check(t, c, input(t, "bounce@fail.test", "client.test", signed))
			want := "Authentication-Results: mx.example.test;\r\n" +
				"\tspf=fail smtp.mailfrom=bounce@fail.test;\r\n" +
				"\tdkim=pass header.b=" + headerB(signed) + " header.d=signed.test header.s=" + tc.sel + ";\r\n" +
				"\tdmarc=pass header.from=signed.test\r\n"
			if string(v.Header) != want {
				t.Errorf("header\n%s\nwant\n%s", v.Header, want)
			}
			if v.Action != mailauth.Accept || v.Results.DMARC.Result != "pass" || v.Results.DMARC.Policy != "reject" {
				t.Errorf("verdict %+v", v)
			}
			if got := v.Results.DKIM; len(got) != 1 || got[0].Result != "pass" || got[0].Domain != "signed.test" || got[0].Selector != tc.sel {
				t.Errorf("dkim results %+v", got)
			}

			changed := strings.Replace(signed, "Hello Bob.", "Hello Bob!", 1)
			v = check(t, c, input(t, "bounce@fail.test", "client.test", changed))
			want = "Authentication-Results: mx.example.test;\r\n" +
				"\tspf=fail smtp.mailfrom=bounce@fail.test;\r\n" +
				"\tdkim=fail reason=\"body hash did not verify\" header.b=" + headerB(signed) + " header.d=signed.test header.s=" + tc.sel + ";\r\n" +
				"\tdmarc=fail header.from=signed.test policy.dmarc=reject\r\n"
			if string(v.Header) != want {
				t.Errorf("header\n%s\nwant\n%s", v.Header, want)
			}
			if v.Action != mailauth.Reject || v.Reply != "DMARC policy of signed.test rejects this message (From: not aligned with a passing SPF or DKIM)" {
				t.Errorf("changed body: action %v reply %q", v.Action, v.Reply)
			}
		})
	}
}
