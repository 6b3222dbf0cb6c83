package arc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// testKey is a signing key from testdata with the DNS record that
// publishes it.
type testKey struct {
	file   string // PEM path
	signer crypto.Signer
	record string // v=DKIM1; k=…; p=…
}

func loadKey(t testing.TB, name string) testKey {
	t.Helper()
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	var signer crypto.Signer
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		signer = k
	} else if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		signer = k.(crypto.Signer)
	} else {
		t.Fatalf("%s: %v", path, err)
	}
	abs, _ := filepath.Abs(path)
	return testKey{file: abs, signer: signer, record: keyRecord(t, signer.Public())}
}

func keyRecord(t testing.TB, pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k)
	}
	t.Fatalf("key type %T", pub)
	return ""
}

// world is a DNS server on loopback publishing key records, and a resolver
// that asks it.
type world struct {
	dns     *resolvertest.Server
	res     *resolver.Resolver
	records map[string]string // name (no trailing dot) → TXT text
}

func newWorld(t testing.TB, records map[string]string) *world {
	t.Helper()
	var zone strings.Builder
	for name, txt := range records {
		zone.WriteString(name + ". 300 IN TXT")
		for len(txt) > 0 {
			n := min(255, len(txt))
			zone.WriteString(` "` + txt[:n] + `"`)
			txt = txt[n:]
		}
		zone.WriteString("\n")
	}
	srv := resolvertest.Start(t, zone.String())
	res, err := resolver.New(resolver.Options{Servers: []string{srv.Addr()}, Timeout: 500 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &world{dns: srv, res: res, records: records}
}

// keysJSON writes the records for dkimpy's dnsfunc.
func (w *world) keysJSON(t testing.TB) string {
	t.Helper()
	data, err := json.Marshal(w.records)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fixedTime is the sealing clock of the tests.
func fixedTime() time.Time { return time.Unix(1700000000, 0) }

const testMessage = "From: Alice <alice@origin.test>\r\n" +
	"To: list@lists.test\r\n" +
	"Subject: ARC  test\r\n" +
	"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@origin.test>\r\n" +
	"\r\n" +
	"Hello,\r\n" +
	"  a body   with spaces  \r\n" +
	"\r\n\r\n"
